"""Where each dataset keeps its frames on disk: annotations -> :class:`Video` records.

Layouts tried, in order, under the dataset root (the first that exists wins):

* CAS(ME)^2: ``rawpic/s15/15_0101*/img<N>.jpg`` (also ``s15/15_0101*`` if the
  root is ``rawpic`` itself); the folder's suffix (``disgustingteeth``) is
  not in the labels, so the folder is found by its ``15_0101`` prefix.
* SAMM-LV: ``SAMM_longvideos/006_1/006_1_0001.jpg`` or ``006_1/``.
* CAS(ME)^3 part A: ``part_A/data/part_A/spNO.1/a/color``, ``data/part_A/...``,
  ``spNO.1/a/color``, ``spNO.1/a`` (the video letter also lower-cased).
* SynthME: ``<subject>/<video>/``, ``<video>/``, ``<video>.mp4``,
  ``<subject>/<video>.mp4``.

``first_frame`` is read from the first frame's file number when the folder
exists, else the dataset default (CAS(ME)^2 and SAMM-LV 1; CAS(ME)^3 0, an
assumption from its "JpgIndex" labels, unverified without the frames;
SynthME 0 for video files).
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from .records import DATASET_FPS, Annotation, Video

DEFAULT_FIRST_FRAME: dict[str, int] = {"casme2": 1, "sammlv": 1, "casme3": 0, "synthme": 0}
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def _candidates(dataset: str, root: Path, subject: str, video: str) -> list[Path]:
    if dataset == "casme2":
        out = []
        for base in (root / "rawpic" / subject, root / subject):
            if base.is_dir():
                out += sorted(p for p in base.iterdir() if p.is_dir()
                              and (p.name == video or p.name.startswith(video)))
        return out
    if dataset == "sammlv":
        return [root / "SAMM_longvideos" / video, root / video]
    if dataset == "casme3":
        out = []
        for v in dict.fromkeys((video, video.lower())):
            for base in (root / "part_A" / "data" / "part_A", root / "data" / "part_A", root):
                out += [base / subject / v / "color", base / subject / v]
        return out
    out = [root / subject / video, root / video]
    for suffix in VIDEO_SUFFIXES:
        out += [root / f"{video}{suffix}", root / subject / f"{video}{suffix}"]
    return out


def _first_number(folder: Path) -> int | None:
    numbers = []
    for p in folder.iterdir():
        if p.suffix.lower() in IMAGE_SUFFIXES:
            found = re.findall(r"(\d+)", p.stem)
            if found:
                numbers.append(int(found[-1]))
    return min(numbers) if numbers else None


def resolve(dataset: str, root: str | Path | None, subject: str, video: str
            ) -> tuple[Path | None, int]:
    """(frame folder or video file, first frame number) of one video; (None, default) if absent."""
    default = DEFAULT_FIRST_FRAME.get(dataset, 0)
    if root is None:
        return None, default
    for path in _candidates(dataset, Path(root), subject, video):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
            return path, 0
        if path.is_dir():
            first = _first_number(path)
            if first is not None:
                return path, first
    return None, default


def videos(annotations: Iterable[Annotation], root: str | Path | None = None) -> list[Video]:
    """One :class:`Video` per (dataset, subject, video) of ``annotations``, in first-seen order.

    Args:
        annotations: records from any reader.
        root: dataset root; None (label file only) leaves ``Video.path`` None.
    """
    annotations = list(annotations)
    if root is not None and not Path(root).is_dir():
        raise ValueError(f"dataset root not found: {root} (pass the folder holding the frames)")
    counts = Counter((a.dataset, a.subject, a.video) for a in annotations)
    fps = {(a.dataset, a.subject, a.video): a.fps for a in annotations}
    out = []
    for key, n in counts.items():
        dataset, subject, video = key
        path, first = resolve(dataset, root, subject, video)
        out.append(Video(dataset=dataset, subject=subject, video=video,
                         fps=fps.get(key, DATASET_FPS.get(dataset, 30.0)), path=path,
                         first_frame=first, n_annotations=n))
    return out
