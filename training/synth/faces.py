"""The face photographs SynthME animates, their landmarks and identity splits.

Assets live in ``training/synth/faces/``: one 256x256 JPEG per photo, the
478 MediaPipe face-mesh landmarks of each (``landmarks.npz``) and
``faces.json`` (identity, split, source package, file, licence), built by
:mod:`training.synth.build_faces`. Splits are by identity, so no face of the
test split is ever seen in training.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

FACES_DIR = Path(__file__).resolve().parent / "faces"
SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class FacePhoto:
    """One face photo.

    Attributes:
        id: asset id (file stem).
        identity: person id (several photos may share one).
        split: train | val | test.
        image: (256, 256, 3) uint8 BGR.
        landmarks: (478, 2) float32, pixels in ``image``.
    """

    id: str
    identity: str
    split: str
    image: np.ndarray
    landmarks: np.ndarray


@lru_cache(maxsize=1)
def manifest(folder: str = str(FACES_DIR)) -> tuple[dict, ...]:
    """Rows of ``faces.json``."""
    path = Path(folder) / "faces.json"
    if not path.is_file():
        raise ValueError(f"face manifest not found: {path} (run training.synth.build_faces)")
    return tuple(json.loads(path.read_text()))


def photos(split: str | None = None, folder: str | Path = FACES_DIR) -> list[str]:
    """Asset ids of ``split`` (all when None), in manifest order."""
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [r["id"] for r in manifest(str(folder)) if split is None or r["split"] == split]


def identities(split: str, folder: str | Path = FACES_DIR) -> list[str]:
    """Distinct identities of ``split``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return sorted({r["identity"] for r in manifest(str(folder)) if r["split"] == split})


@lru_cache(maxsize=64)
def load(photo_id: str, folder: str = str(FACES_DIR)) -> FacePhoto:
    """Load one photo with its landmarks."""
    import cv2

    rows = {r["id"]: r for r in manifest(folder)}
    if photo_id not in rows:
        raise ValueError(f"unknown face {photo_id!r}; known: {sorted(rows)}")
    image = cv2.imread(str(Path(folder) / f"{photo_id}.jpg"), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read face image {Path(folder) / (photo_id + '.jpg')}")
    with np.load(Path(folder) / "landmarks.npz") as z:
        lm = z[photo_id].astype(np.float32)
    r = rows[photo_id]
    image.setflags(write=False)
    lm.setflags(write=False)
    return FacePhoto(id=photo_id, identity=r["identity"], split=r["split"], image=image,
                     landmarks=lm)
