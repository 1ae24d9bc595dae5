"""Two-stage MEGC-style baseline on the same flow features: regional motion curves + peaks.

In the line of MDMD (He et al., "Spotting macro- and micro-expression
intervals in long video sequences", FG 2020) and "rethinking optical flow"
spotters: per frame, the mean flow magnitude in facial regions (brows, eyes,
mouth of the aligned crop, ``stream.align.REGIONS``); per video, each curve is
smoothed, its slow trend removed (running median) and divided by a robust
scale (MAD), so a threshold means "this many noise-widths above the
background". Frames where the best region exceeds the threshold form
segments; segments closer than ``merge`` frames are joined (an expression
moves at onset and again at offset), the flow's look-back Δ is undone at the
end, and each interval gets its kind from its duration (≤ 0.5 s: micro) and
the training set's most common emotion (the baseline does no recognition).
Every parameter is chosen on the validation split by grid search (best overall
spotting F1), never on test.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from typing import Sequence

import numpy as np

from engine.config import MICRO_MAX_S
from stream.align import region_slices
from training.features import VideoFeatures
from stream.megc_csv import Spot

#: Regions whose motion the curves measure.
BASE_REGIONS: tuple[str, ...] = ("brows", "eyes", "mouth")


@dataclass(frozen=True)
class BaselineParams:
    """Tuned settings of the baseline spotter."""

    regions: tuple[str, ...] = BASE_REGIONS  # which curves take part (max over them)
    smooth: int = 5  # moving-average width, frames
    detrend: int = 91  # running-median width for the slow trend, frames (odd)
    thresh: float = 6.0  # threshold, in robust noise widths (MAD·1.4826)
    merge: int = 15  # segments closer than this are one interval, frames
    min_len: int = 4  # shorter segments are dropped, frames
    shift: int = 5  # offset moved back by this many frames (flow at t still sees t − Δ)
    emotion: str = "negative"  # label given to every interval


def region_curves(flow: np.ndarray, valid: np.ndarray,
                  regions: Sequence[str] = BASE_REGIONS) -> np.ndarray:
    """(N, 3, S, S) flow → (N, R) mean |(u, v)| per region (0 where not valid)."""
    n, s = len(valid), flow.shape[-1]
    out = np.zeros((n, len(regions)), np.float32)
    sl = [region_slices(r, s) for r in regions]
    for lo in range(0, n, 2048):
        chunk = np.asarray(flow[lo:lo + 2048], np.float32)
        mag = np.sqrt(chunk[:, 0] ** 2 + chunk[:, 1] ** 2)  # (n, S, S)
        for j, (rows, cols) in enumerate(sl):
            out[lo:lo + len(chunk), j] = mag[:, rows, cols].mean(axis=(1, 2))
    out[~np.asarray(valid, bool)] = 0.0
    return out


def _running_median(x: np.ndarray, width: int) -> np.ndarray:
    from scipy.ndimage import median_filter

    return median_filter(x, size=(width, 1), mode="nearest")


def normalised(curves: np.ndarray, smooth: int, detrend: int) -> np.ndarray:
    """Smoothed, detrended, MAD-scaled curves (N, R)."""
    from scipy.ndimage import uniform_filter1d

    x = uniform_filter1d(curves, size=max(smooth, 1), axis=0, mode="nearest")
    x = x - _running_median(x, detrend)
    mad = np.median(np.abs(x - np.median(x, axis=0)), axis=0) * 1.4826 + 1e-6
    return x / mad


def spot_curve(score: np.ndarray, p: BaselineParams) -> list[tuple[int, int, float]]:
    """(onset, offset, peak score) intervals where ``score`` (N,) exceeds the threshold."""
    above = score >= p.thresh
    segs: list[list[int]] = []
    idx = np.flatnonzero(above)
    for i in idx:
        if segs and i - segs[-1][1] <= p.merge:
            segs[-1][1] = int(i)
        else:
            segs.append([int(i), int(i)])
    out = []
    for on, off in segs:
        if off - on + 1 < p.min_len:
            continue
        # flow at t compares t − Δ with t: it still sees a motion up to Δ after it ended
        out.append((on, max(on, off - p.shift), float(score[on:off + 1].max())))
    return out


def scores(items: Sequence[VideoFeatures], p: BaselineParams,
           curves: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Per video, the (N,) spotting score: max over the chosen regions' normalised curves."""
    out = []
    cols = [BASE_REGIONS.index(r) for r in p.regions]
    for i, v in enumerate(items):
        c = curves[i] if curves is not None else region_curves(v.flow, v.valid)
        out.append(normalised(c[:, cols], p.smooth, p.detrend).max(axis=1))
    return out


def predict(items: Sequence[VideoFeatures], p: BaselineParams,
            curves: Sequence[np.ndarray] | None = None,
            score: Sequence[np.ndarray] | None = None) -> list[Spot]:
    """Baseline spots for every video (``score`` from :func:`scores` skips recomputing it)."""
    score = score if score is not None else scores(items, p, curves)
    spots = []
    for v, sc in zip(items, score):
        for on, off, peak in spot_curve(sc, p):
            kind = "micro" if (off - on + 1) <= MICRO_MAX_S * v.fps else "macro"
            spots.append(Spot(subject=v.subject, video=v.video, onset=on, offset=off,
                              emotion=p.emotion, kind=kind, score=peak))
    return spots


GRID = {"regions": [BASE_REGIONS, ("brows", "mouth")], "smooth": [3, 7],
        "detrend": [61, 151], "thresh": [4.0, 6.0, 8.0, 11.0, 15.0, 20.0, 30.0, 45.0, 60.0],
        "merge": [6, 12, 24], "min_len": [3, 6], "shift": [0, 3, 5]}


def tune(items: Sequence[VideoFeatures], emotion: str = "negative",
         grid: dict | None = None) -> tuple[BaselineParams, float]:
    """Grid search on ``items`` (validation) for the best overall spotting F1.

    ``grid`` overrides some of :data:`GRID`'s value lists.
    """
    from stream import metrics
    from training.infer import ground_truth

    grid = {**GRID, **(grid or {})}
    curves = [region_curves(v.flow, v.valid) for v in items]
    gt = ground_truth(items)
    best, best_f1 = BaselineParams(emotion=emotion), -1.0
    outer = ("regions", "smooth", "detrend")  # these change the score curves
    inner = [k for k in grid if k not in outer]
    for o in itertools.product(*(grid[k] for k in outer)):
        base = BaselineParams(**dict(zip(outer, o)), emotion=emotion)
        sc = scores(items, base, curves)
        for values in itertools.product(*(grid[k] for k in inner)):
            p = replace(base, **dict(zip(inner, values)))
            f1 = metrics.megc_spotting(gt, predict(items, p, score=sc))["overall"].f1
            if f1 > best_f1:
                best, best_f1 = p, f1
    return best, best_f1


def most_common_emotion(items: Sequence[VideoFeatures]) -> str:
    """The most frequent emotion label in ``items`` (the baseline's only 'recognition')."""
    labels = [emo for v in items for *_, emo in v.intervals]
    return max(set(labels), key=labels.count) if labels else "others"


def params_dict(p: BaselineParams) -> dict:
    d = asdict(p)
    d["regions"] = list(p.regions)
    return d
