"""Fake cached features with planted expressions (no MediaPipe, no video): training tests."""
from __future__ import annotations

import numpy as np

from stream.align import region_slices
from training.features import VideoFeatures


def planted_video(name: str, n: int = 480, seed: int = 0, size: int = 16,
                  events: tuple = ((100, 108, "micro", "positive"), (250, 290, "macro", "negative"),
                                   (400, 420, "macro", "surprise")),
                  amp: float = 3.0, invalid: tuple[int, int] | None = (20, 30),
                  appearance: float | None = None) -> VideoFeatures:
    """A video of noise with motion bumps: micro in the mouth, macro in the brows.

    ``appearance``: also an (N, 14) appearance input (probabilities ‖ baseline delta, as
    ``stream.appearance`` makes) in which each event's emotion class rises by this much
    from onset to offset, held (what a real-face classifier sees of a held expression).
    """
    rng = np.random.default_rng(seed)
    events = tuple(e for e in events if e[1] < n)
    flow = (0.1 * rng.standard_normal((n, 3, size, size))).astype(np.float16)
    for on, off, kind, _ in events:
        rows, cols = region_slices("mouth" if kind == "micro" else "brows", size)
        for t in range(on, off + 1):
            flow[t, 1, rows, cols] += np.float16(amp)
    valid = np.ones(n, bool)
    if invalid:
        valid[invalid[0]:invalid[1]] = False
        flow[invalid[0]:invalid[1]] = 0
    app = None
    if appearance is not None:
        cls = {"negative": 4, "positive": 3, "surprise": 5, "others": 1}  # fer's class order
        probs = np.tile(np.float32([.05, .02, .05, .15, .2, .03, .5]), (n, 1))
        probs += (0.02 * rng.standard_normal((n, 7))).astype(np.float32)
        for on, off, _, emotion in events:
            probs[on:off + 1, cls[emotion]] += appearance
        probs = np.clip(probs, 1e-3, None)
        probs /= probs.sum(1, keepdims=True)
        app = np.concatenate([probs, probs - probs[:on_first(events)].mean(0)], 1)
        app[~valid] = 0
    return VideoFeatures(subject=name.split("_")[0], video=name, flow=flow, valid=valid,
                         fps=30.0, intervals=tuple(events), appearance=app)


def on_first(events: tuple) -> int:
    """Frames before the first event (the resting baseline of a planted video)."""
    return min((e[0] for e in events), default=10) or 1
