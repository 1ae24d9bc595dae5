"""Measure what SynthME expressions look like in the pipeline's features.

    python -m training.synth.calibrate [--amplitude 1.0]

For every face asset (placed as the generator places it, no distractors)
renders the neutral frame and the apex of a few AU combinations, aligns both
to the 128-px crop of DESIGN.md §8 (eyes at 25 % / 75 % width, 38 % height),
runs DIS (medium) flow between them and prints the mean flow magnitude in the
mouth, eye and brow regions. DESIGN.md §8's real posed smile: mouth ≈ 4.5 px,
eyes ≈ 1.7 px, brows ≈ 1.0 px (brows partly head motion); still face 0.2-0.3.
"""
from __future__ import annotations

import argparse

import numpy as np

from .aus import AUS, FaceFrame, region_masks
from .config import SynthConfig
from .faces import load, photos
from .render import build_scene, render_frame
from .timeline import AU_COLUMN, Timeline

COMBOS: dict[str, tuple[str, ...]] = {
    "smile AU6+12": ("6", "12"), "smile+lips AU6+12+25": ("6", "12", "25"),
    "brows AU1+2": ("1", "2"), "frown AU4+7": ("4", "7"), "disgust AU9+10": ("9", "10"),
    "sad AU15+17": ("15", "17"), "jaw AU25+26": ("25", "26"), "dimpler AU14": ("14",),
    "chin AU17": ("17",), "blink AU43": ("43",),
    "surprise AU1+2+5+26": ("1", "2", "5", "26"), "anger/sad AU4+7+15+17": ("4", "7", "15", "17"),
    "disgust AU4+7+9+10+17": ("4", "7", "9", "10", "17"),
}
#: DESIGN.md §8's real posed smile (mean DIS flow, px, 128-px crop) and the tolerance the
#: tests hold SynthME's smile (AU6+12 at amplitude 1, mean over the faces) to.
REAL_SMILE: dict[str, float] = {"mouth": 4.5, "eyes": 1.7}
SMILE_TOLERANCE: dict[str, float] = {"mouth": 0.5, "eyes": 0.3}


def still_timeline(aus: tuple[str, ...], amplitude: float) -> Timeline:
    """A one-frame timeline with ``aus`` at ``amplitude`` and nothing else."""
    tl = Timeline(n_frames=1, fps=30.0)
    tl.amp = np.zeros((1, len(AUS)), np.float32)
    for au in aus:
        tl.amp[0, AU_COLUMN[au]] = amplitude
    tl.pose = np.array([[0, 0, 0, 1]], np.float32)
    tl.light = np.array([[1, 0]], np.float32)
    tl.jpeg_q = np.zeros(1, np.int16)
    tl.occluder = np.zeros(1, np.float32)
    tl.occluder_side = np.zeros(1, np.int8)
    return tl


def align_128(landmarks: np.ndarray) -> np.ndarray:
    """2x3 affine to DESIGN.md §8's 128-px crop (eyes at 25 %/75 % width, 38 % height)."""
    import cv2

    ff = FaceFrame.from_landmarks(landmarks.astype(np.float64))
    angle = float(np.degrees(np.arctan2(ff.ex[1], ff.ex[0])))
    m = cv2.getRotationMatrix2D((float(ff.centre[0]), float(ff.centre[1])), angle, 64 / ff.iod)
    m[:, 2] += np.array([64.0, 0.38 * 128]) - ff.centre
    return m


def measure(amplitude: float = 1.0, seed: int = 3,
            combos: dict[str, tuple[str, ...]] | None = None) -> dict[str, np.ndarray]:
    """{combo: (faces, 4) mean flow px in mouth, eyes, brows, whole crop} over every face
    asset, for ``combos`` (default :data:`COMBOS`)."""
    import cv2

    combos = COMBOS if combos is None else combos
    cfg = SynthConfig().without_distractors()
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out: dict[str, list] = {k: [] for k in combos}
    for pid in photos(None):
        scene = build_scene(load(pid), cfg, np.random.default_rng(seed))
        m = align_128(scene.landmarks)
        lm = scene.landmarks @ m[:, :2].T + m[:, 2]
        masks = region_masks(lm.astype(np.float64), (128, 128))

        def crop(tl: Timeline) -> np.ndarray:
            return cv2.cvtColor(cv2.warpAffine(render_frame(scene, tl, 0), m, (128, 128)),
                                cv2.COLOR_BGR2GRAY)

        g0 = crop(still_timeline((), 0.0))
        for name, aus in combos.items():
            f = dis.calc(g0, crop(still_timeline(aus, amplitude)), None)
            mag = np.hypot(f[..., 0], f[..., 1])
            out[name].append([mag[masks[r]].mean() if masks[r].any() else np.nan
                              for r in ("mouth", "eyes", "brows")] + [mag.mean()])
    return {k: np.array(v) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--amplitude", type=float, default=1.0)
    a = ap.parse_args(argv)
    res = measure(a.amplitude)
    print(f"mean DIS flow (px, 128-px crop), amplitude {a.amplitude}, "
          f"{len(next(iter(res.values())))} faces")
    print(f"{'combo':24s} {'mouth':>6s} {'eyes':>6s} {'brows':>6s} {'crop':>6s}")
    for k, v in res.items():
        mean = np.nanmean(v, 0)
        print(f"{k:24s} " + " ".join(f"{x:6.2f}" for x in mean))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
