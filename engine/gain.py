"""Per-track input gain: scale down flow where a face's motion-noise floor is high.

Flow noise depends on the face, not only on what it does: a small, blurred,
side-on or low-light face gives a higher floor of spurious flow than a sharp
frontal one, and mostly in some regions (a 3/4-profile face brings hair and
background edges into the aligned crop). SynthME's held-out test set showed the
detector firing on such a face (``t1_e``, a 3/4-profile face from a
low-resolution group photo) at its noise alone.

The crop's flow map is cut into ``gain_grid`` × ``gain_grid`` cells. Each cell's
floor is the running **median** of its mean |(u, v)| over the last
``gain_window`` valid frames of the track (an expression is short next to that,
so it barely moves a median), and its gain is ``min(1, gain_ref / floor)``:
cells at or below the reference floor are untouched, noisier ones are scaled
down to it (u, v and strain alike). It is causal (frame t's gain uses frames
≤ t) and identical in training (:func:`video_gains`) and live (:class:`FlowGain`,
one per track): both run the same update. ``ModelConfig.gain_ref = 0`` switches
it off; ``gain_grid = 1`` gives one gain for the whole crop.
"""
from __future__ import annotations

import numpy as np

from engine.config import ModelConfig


def cell_motion(flow: np.ndarray, grid: int) -> np.ndarray:
    """Mean |(u, v)| per cell of (..., 3, S, S) flow → (..., grid, grid) float32, px per Δ."""
    f = np.asarray(flow, np.float32)
    s = f.shape[-1]
    if s % grid:
        raise ValueError(f"gain_grid={grid} must divide the flow map size {s}")
    b = s // grid
    mag = np.hypot(f[..., 0, :, :], f[..., 1, :, :])  # (..., S, S)
    return mag.reshape(*mag.shape[:-2], grid, b, grid, b).mean(axis=(-3, -1))


def apply_gain(flow: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """(..., 3, S, S) flow × (..., G, G) cell gains → float32 flow of the same shape."""
    f = np.asarray(flow, np.float32)
    g = np.asarray(gain, np.float32)
    s, grid = f.shape[-1], g.shape[-1]
    b = s // grid
    cells = f.reshape(*f.shape[:-2], grid, b, grid, b)  # (..., 3, G, b, G, b)
    out = cells * g[..., None, :, None, :, None]  # gain (..., G, G) -> (..., 1, G, 1, G, 1)
    return out.reshape(f.shape)  # (..., 3, S, S)


def gains_from_floor(floor: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Cell gains ``min(1, gain_ref / floor)`` of (..., G, G) noise floors, float32."""
    return np.minimum(1.0, cfg.gain_ref / np.maximum(floor, 1e-6)).astype(np.float32)


class FlowGain:
    """Running cell gains of one face track.

    Args:
        cfg: ``gain_ref`` (0: always 1), ``gain_grid``, ``gain_window``, ``gain_min_frames``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        self.cfg = cfg
        g = cfg.gain_grid
        # the last gain_window valid frames' cell motion, a preallocated ring (a median
        # does not care about order), so a frame costs no allocation but the median's;
        # cells x frames, so each cell's history is contiguous (the median is ~2x faster)
        self._motion = np.zeros((g * g, cfg.gain_window), np.float32)
        self._seen = 0  # valid frames pushed so far
        self.gain = np.ones((g, g), np.float32)  # last frame's gains

    @property
    def enabled(self) -> bool:
        return self.cfg.gain_ref > 0

    def apply(self, flow: np.ndarray, valid: bool) -> np.ndarray:
        """This frame's (3, S, S) flow with its gains applied (float32); unchanged when off."""
        if not self.enabled:
            return flow
        f = np.asarray(flow, np.float32)  # once, not in each helper
        return apply_gain(f, self.update(f, valid))

    def update(self, flow: np.ndarray, valid: bool) -> np.ndarray:
        """(G, G) gains for this frame's (3, S, S) flow map (the map itself is not changed);
        a frame without a face leaves the gains as they were."""
        if self.enabled and valid:
            g = self.cfg.gain_grid
            slot = self._seen % self.cfg.gain_window
            self._motion[:, slot] = cell_motion(flow, g).reshape(-1)  # (G, G) -> (G*G,)
            self._seen += 1
            if self._seen >= self.cfg.gain_min_frames:
                filled = self._motion[:, :min(self._seen, self.cfg.gain_window)]
                floor = np.median(filled, axis=1).reshape(g, g)  # (G*G,) -> (G, G)
                self.gain = gains_from_floor(floor, self.cfg)
        return self.gain


def video_gains(flow: np.ndarray, valid: np.ndarray, cfg: ModelConfig,
                chunk: int = 512) -> np.ndarray:
    """(N, G, G) float32 gains of every frame of one track's (N, 3, S, S) flow, as live.

    The same medians as :class:`FlowGain` frame by frame, computed over sliding
    windows of the valid frames' cell motion at once (training and evaluation run
    this over hours of video).
    """
    n, grid = len(valid), cfg.gain_grid
    ones = np.ones((n, grid, grid), np.float32)
    if cfg.gain_ref <= 0 or n == 0:
        return ones
    valid = np.asarray(valid, bool)
    idx = np.flatnonzero(valid)
    motion = np.concatenate([cell_motion(flow[idx[s:s + chunk]], grid)
                             for s in range(0, len(idx), chunk)]
                            or [np.zeros((0, grid, grid), np.float32)])  # (K, G, G)
    k, span, first = len(idx), cfg.gain_window, cfg.gain_min_frames
    floors = np.ones((k, grid, grid), np.float32)  # floor after the j-th valid frame
    for j in range(first - 1, min(span - 1, k)):  # history still shorter than the window
        floors[j] = np.median(motion[:j + 1], axis=0)
    if k >= span:
        # (K, G, G) -> (K - span + 1, G, G, span) windows, a view
        full = np.lib.stride_tricks.sliding_window_view(motion, span, axis=0)
        for s in range(0, len(full), chunk):
            floors[span - 1 + s:span - 1 + s + chunk] = np.median(full[s:s + chunk], axis=-1)
    gains = gains_from_floor(floors, cfg)
    gains[:first - 1] = 1.0  # not enough history yet
    # every frame takes the gains of the last valid frame at or before it (1 before any)
    last = np.searchsorted(idx, np.arange(n), side="right") - 1
    out = ones
    seen = last >= 0
    out[seen] = gains[last[seen]]
    return out
