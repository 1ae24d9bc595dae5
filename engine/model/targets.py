"""Target assignment: ground-truth intervals of a window → per-point and per-frame targets.

End-anchored rule (what makes detection causal): an interval with inclusive
frames [onset, offset] and duration d = offset - onset + 1 goes to the one
pyramid level whose range ``cfg.level_ranges[l]`` holds d; the positive points
of that level are those whose frame lies in [offset, offset + cfg.level_margin(l)]
(and inside the window). A point claimed by several intervals takes the
shortest (then the latest-ending) one. Regression targets are the frames back
to onset and to offset. Active targets: frame t is active for kind k when an
interval of kind k covers it; its emotion and "since" come from the covering
interval with the latest onset.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from engine.config import ModelConfig
from engine.decode import pyramid_points


@dataclass(frozen=True)
class GTInterval:
    """A labelled interval in window positions (inclusive). onset may be < 0, offset ≥ window."""

    onset: int
    offset: int
    kind: int  # index into cfg.kinds
    emotion: int  # index into cfg.emotions


@dataclass(frozen=True)
class Targets:
    """Batched targets (torch). P points (``pyramid_points`` order), T frames.

    Attributes:
        cls: (B, P, K) float 0/1 kind targets.
        pos: (B, P) bool, points with an assigned interval.
        reg: (B, P, 2) float frames back to (onset, offset); meaningful where ``pos``.
        emo: (B, P) int64 emotion index, -1 where not ``pos``.
        act: (B, T, K) float 0/1, an expression of kind k under way at t.
        act_emo: (B, T) int64 emotion of the interval under way, -1 where none.
        act_since: (B, T) float frames since its onset; meaningful where act_emo ≥ 0.
    """

    cls: torch.Tensor
    pos: torch.Tensor
    reg: torch.Tensor
    emo: torch.Tensor
    act: torch.Tensor
    act_emo: torch.Tensor
    act_since: torch.Tensor

    def to(self, device: torch.device | str) -> "Targets":
        return Targets(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})


def _as_interval(item: GTInterval | Sequence, cfg: ModelConfig, where: str) -> GTInterval:
    if not isinstance(item, GTInterval):
        if len(item) != 4:
            raise ValueError(f"{where} must be (onset, offset, kind, emotion), got {item!r}")
        onset, offset, kind, emotion = item
        kind = cfg.kinds.index(kind) if kind in cfg.kinds else kind
        emotion = cfg.emotions.index(emotion) if emotion in cfg.emotions else emotion
        item = GTInterval(int(onset), int(offset), kind, emotion)
    if not item.onset <= item.offset:
        raise ValueError(f"{where}: onset {item.onset} > offset {item.offset}")
    if not (isinstance(item.kind, (int, np.integer)) and 0 <= item.kind < len(cfg.kinds)):
        raise ValueError(f"{where}: kind {item.kind!r} is not an index or name in {cfg.kinds}")
    if not (isinstance(item.emotion, (int, np.integer)) and 0 <= item.emotion < len(cfg.emotions)):
        raise ValueError(f"{where}: emotion {item.emotion!r} is not an index or name in "
                         f"{cfg.emotions}")
    return item


def assign_window(intervals: Sequence[GTInterval | Sequence], cfg: ModelConfig,
                  length: int | None = None) -> dict[str, np.ndarray]:
    """Targets of one window as numpy arrays (same keys and shapes as ``Targets``, no batch)."""
    length = length or cfg.window
    gts = [_as_interval(g, cfg, f"intervals[{i}]") for i, g in enumerate(intervals)]
    points = pyramid_points(length, cfg.levels)  # (P, 2): frame, level
    n_pts, n_k = len(points), len(cfg.kinds)
    cls = np.zeros((n_pts, n_k), np.float32)
    reg = np.zeros((n_pts, 2), np.float32)
    emo = np.full(n_pts, -1, np.int64)
    best = np.full(n_pts, np.inf)  # duration of the interval holding each point
    ranges = cfg.level_ranges
    # shortest first, then latest offset: the first claim on a point wins
    for g in sorted(gts, key=lambda g: (g.offset - g.onset, -g.offset)):
        dur = g.offset - g.onset + 1
        level = next(l for l, (lo, hi) in enumerate(ranges) if lo <= dur < hi)
        f, lv = points[:, 0], points[:, 1]
        hit = (lv == level) & (f >= g.offset) & (f <= g.offset + cfg.level_margin(level))
        hit &= np.isinf(best)
        best[hit] = dur
        cls[hit, g.kind] = 1.0
        emo[hit] = g.emotion
        reg[hit, 0] = f[hit] - g.onset
        reg[hit, 1] = f[hit] - g.offset
    act = np.zeros((length, n_k), np.float32)
    act_emo = np.full(length, -1, np.int64)
    act_since = np.zeros(length, np.float32)
    latest = np.full(length, -np.inf)  # onset of the interval driving act_emo / act_since
    t = np.arange(length)
    for g in sorted(gts, key=lambda g: (g.onset, -(g.offset - g.onset))):
        on = (t >= g.onset) & (t <= g.offset)
        act[on, g.kind] = 1.0
        newer = on & (g.onset >= latest)
        latest[newer] = g.onset
        act_emo[newer] = g.emotion
        act_since[newer] = t[newer] - g.onset
    return {"cls": cls, "pos": emo >= 0, "reg": reg, "emo": emo, "act": act,
            "act_emo": act_emo, "act_since": act_since}


def assign_targets(batch: Sequence[Sequence[GTInterval | Sequence]], cfg: ModelConfig,
                   length: int | None = None) -> Targets:
    """Targets for a batch: one list of intervals (window positions) per window."""
    if isinstance(batch, GTInterval) or (len(batch) and isinstance(batch[0], GTInterval)):
        raise ValueError("assign_targets: batch must be a list of interval lists, one per window")
    if not len(batch):
        raise ValueError("assign_targets: batch must hold at least one window")
    per = [assign_window(items, cfg, length) for items in batch]
    return Targets(**{k: torch.from_numpy(np.stack([p[k] for p in per])) for k in per[0]})
