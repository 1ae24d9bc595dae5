"""Window sampling balanced between events and background, and batch assembly.

A window is ``(video index, start, length)``. With probability ``pos_frac`` the
window is placed so that a random labelled interval's *offset* (where the
end-anchored targets sit) falls inside it, at a uniformly random position;
otherwise the start is uniform over the video (mostly background, since
expressions are sparse). Windows may start before frame 0 or end after the
last frame: those positions are "no face", as at the start of a stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from engine.config import ModelConfig
from engine.gain import apply_gain
from engine.model.targets import GTInterval, Targets, assign_targets
from training.features import VideoFeatures


@dataclass(frozen=True)
class Window:
    """One training window: positions ``start .. start + length - 1`` of video ``video``."""

    video: int
    start: int
    length: int


class WindowSampler:
    """Seeded sampler of balanced windows.

    Args:
        items: training videos (cached features + labels).
        length: window length, frames (divisible by the coarsest stride).
        pos_frac: fraction of windows centred on an event offset, in [0, 1].
        seed: RNG seed.
        micro_frac: among event windows, the fraction placed on a micro-expression
            (None: as often as they occur; micro-expressions are rare, so oversample).
    """

    def __init__(self, items: Sequence[VideoFeatures], length: int, pos_frac: float = 0.5,
                 seed: int = 0, micro_frac: float | None = None) -> None:
        if not items:
            raise ValueError("WindowSampler: items is empty (no training videos)")
        if length <= 0:
            raise ValueError(f"WindowSampler: length must be > 0, got {length!r}")
        if not 0 <= pos_frac <= 1:
            raise ValueError(f"WindowSampler: pos_frac must be in [0, 1], got {pos_frac!r}")
        if micro_frac is not None and not 0 <= micro_frac <= 1:
            raise ValueError(f"WindowSampler: micro_frac must be in [0, 1] or None, "
                             f"got {micro_frac!r}")
        self.items, self.length, self.pos_frac = list(items), length, pos_frac
        self.rng = np.random.default_rng(seed)
        self.events = [(i, off) for i, v in enumerate(self.items) for _, off, _, _ in v.intervals]
        kinds = [k for v in self.items for _, _, k, _ in v.intervals]
        self.event_p = None
        n_micro = kinds.count("micro")
        if micro_frac is not None and 0 < n_micro < len(kinds):
            self.event_p = np.array([micro_frac / n_micro if k == "micro"
                                     else (1 - micro_frac) / (len(kinds) - n_micro)
                                     for k in kinds])
        sizes = np.array([max(v.n_frames - length + 1, 1) for v in self.items], float)
        self.video_p = sizes / sizes.sum()

    def sample(self) -> Window:
        rng = self.rng
        if self.events and rng.random() < self.pos_frac:
            vid, off = self.events[rng.choice(len(self.events), p=self.event_p)]
            start = off - int(rng.integers(0, self.length))
        else:
            vid = int(rng.choice(len(self.items), p=self.video_p))
            start = int(rng.integers(0, max(self.items[vid].n_frames - self.length + 1, 1)))
        return Window(int(vid), int(start), self.length)

    def batch(self, n: int) -> list[Window]:
        return [self.sample() for _ in range(n)]

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state


def window_intervals(item: VideoFeatures, win: Window, cfg: ModelConfig) -> list[GTInterval]:
    """Labels of ``item`` overlapping ``win``, in window positions."""
    out = []
    for on, off, kind, emo in item.intervals:
        if off >= win.start and on < win.start + win.length:
            out.append(GTInterval(on - win.start, off - win.start, cfg.kinds.index(kind),
                                  cfg.emotions.index(emo)))
    return out


def window_targets(items: Sequence[VideoFeatures], wins: Sequence[Window],
                   cfg: ModelConfig) -> Targets:
    """Batched targets of ``wins``."""
    return assign_targets([window_intervals(items[w.video], w, cfg) for w in wins], cfg,
                          wins[0].length)


def window_slice(n_frames: int, win: Window) -> tuple[slice, int, int]:
    """(frames slice inside the video, pad before, pad after) of ``win``."""
    lo, hi = max(win.start, 0), min(win.start + win.length, n_frames)
    lo = min(lo, hi)
    return slice(lo, hi), lo - win.start, win.start + win.length - hi


def window_flow(item: VideoFeatures, win: Window,
                gains: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(L, 3, S, S) float32 flow and (L,) float32 valid of ``win`` (outside the video: no face).

    ``gains``: (N, G, G) input gains of the whole video (``engine.gain.video_gains``,
    computed over the frames before the window too), applied to the flow.
    """
    sl, before, after = window_slice(item.n_frames, win)
    s = item.flow.shape[-1]
    flow = np.zeros((win.length, 3, s, s), np.float32)
    valid = np.zeros(win.length, np.float32)
    flow[before:win.length - after] = item.flow[sl] if gains is None else \
        apply_gain(item.flow[sl], gains[sl])
    valid[before:win.length - after] = item.valid[sl]
    return flow, valid


def window_appearance(item: VideoFeatures, win: Window, dim: int) -> np.ndarray:
    """(L, dim) float32 appearance input of ``win`` (outside the video: zeros, masked as
    "no face" there anyway)."""
    if item.appearance is None or item.appearance.shape[1:] != (dim,):
        got = None if item.appearance is None else item.appearance.shape
        raise ValueError(f"{item.video}: the model fuses appearance ({dim} values per frame) "
                         f"but the features have {got}; re-extract them with this code "
                         "(training.features, FEATURE_VERSION 2)")
    sl, before, after = window_slice(item.n_frames, win)
    app = np.zeros((win.length, dim), np.float32)
    app[before:win.length - after] = item.appearance[sl]
    return app
