"""Per-track input gain: scale down the flow of faces whose motion-noise floor is high.

Flow noise depends on the face, not only on what it does: a small, blurred,
side-on or low-light face gives a higher floor of spurious flow than a sharp
frontal one. SynthME's held-out test set showed the detector firing on such a
face (``t1_e``, a 3/4-profile face from a low-resolution group photo: a still-face
flow floor about 2.5× that of a frontal face) at its noise alone.

The floor is the running **median** of the frame-mean |(u, v)| over the last
``gain_window`` valid frames of the track (an expression is short next to that,
so it barely moves a median), and the gain is ``min(1, gain_ref / floor)``:
faces at or below the reference floor are untouched, noisier ones are scaled
down to it. It is causal (frame t's gain uses frames ≤ t) and identical in
training (:func:`video_gains`) and live (:class:`FlowGain`, one per track):
both run the same update. ``ModelConfig.gain_ref = 0`` switches it off.
"""
from __future__ import annotations

from collections import deque

import numpy as np

from engine.config import ModelConfig


def frame_motion(flow: np.ndarray) -> np.ndarray:
    """Frame-mean |(u, v)| of (..., 3, S, S) flow maps → (...) float32, px per Δ."""
    f = np.asarray(flow, np.float32)
    return np.hypot(f[..., 0, :, :], f[..., 1, :, :]).mean(axis=(-2, -1))


class FlowGain:
    """Running gain of one face track.

    Args:
        cfg: ``gain_ref`` (0: always 1), ``gain_window``, ``gain_min_frames``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        self._motion: deque[float] = deque(maxlen=cfg.gain_window)
        self.gain = 1.0  # gain of the last frame

    def update(self, flow: np.ndarray, valid: bool) -> float:
        """Gain for this frame's (3, S, S) flow map (the map itself is not changed)."""
        if self.cfg.gain_ref <= 0:
            return 1.0
        return self.push_motion(float(frame_motion(flow)) if valid else 0.0, valid)

    def push_motion(self, motion: float, valid: bool) -> float:
        """Same as :meth:`update`, from the frame's precomputed :func:`frame_motion`."""
        if self.cfg.gain_ref <= 0:
            return 1.0
        if valid:
            self._motion.append(motion)
        if len(self._motion) >= self.cfg.gain_min_frames:
            floor = float(np.median(np.asarray(self._motion, np.float32)))
            self.gain = min(1.0, self.cfg.gain_ref / max(floor, 1e-6))
        return self.gain


def video_gains(flow: np.ndarray, valid: np.ndarray, cfg: ModelConfig,
                chunk: int = 2048) -> np.ndarray:
    """(N,) float32 gain of every frame of one track's (N, 3, S, S) flow, as live."""
    n = len(valid)
    if cfg.gain_ref <= 0:
        return np.ones(n, np.float32)
    motion = np.concatenate([frame_motion(flow[s:s + chunk]) for s in range(0, n, chunk)]
                            or [np.zeros(0, np.float32)])
    track = FlowGain(cfg)
    return np.array([track.push_motion(float(m), bool(v)) for m, v in zip(motion, valid)],
                    np.float32)
