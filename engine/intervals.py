"""Temporal IoU of inclusive frame intervals and 1D soft-NMS: one module for decode,
the interval tracker and the MEGC metrics.

An interval ``(on, off)`` covers frames ``on .. off`` inclusive (length
``off - on + 1``); one with ``off < on`` is empty and has IoU 0 with anything.
Bounds may be floats (the tracker merges score-weighted means).
"""
from __future__ import annotations

import numpy as np


def tiou(a_on: float, a_off: float, b_on: float, b_off: float) -> float:
    """IoU of two inclusive intervals (plain floats: the tracker calls it per candidate)."""
    len_a, len_b = max(0.0, a_off - a_on + 1), max(0.0, b_off - b_on + 1)
    inter = max(0.0, min(a_off, b_off) - max(a_on, b_on) + 1) if len_a and len_b else 0.0
    union = len_a + len_b - inter
    return float(inter / union) if union else 0.0


def tiou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) IoU of every interval of ``a`` (N, 2) against every one of ``b`` (M, 2)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 2)  # (N, 2)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 2)  # (M, 2)
    len_a = np.maximum(0, a[:, 1] - a[:, 0] + 1)[:, None]  # (N, 1)
    len_b = np.maximum(0, b[:, 1] - b[:, 0] + 1)[None, :]  # (1, M)
    inter = np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    inter = np.where((len_a > 0) & (len_b > 0), np.maximum(inter, 0), 0)  # (N, M)
    union = len_a + len_b - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def soft_nms_1d(intervals: np.ndarray, scores: np.ndarray, sigma: float, min_score: float,
                max_keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian soft-NMS on (N, 2) intervals: returns (kept indices, their decayed scores).

    Repeatedly keeps the best remaining interval and multiplies every other
    score by ``exp(-IoU² / sigma)``; stops below ``min_score`` or at ``max_keep``.
    Ties keep the earlier row.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    scores = np.asarray(scores, dtype=np.float64).copy()
    rest = np.arange(len(scores))
    keep: list[int] = []
    while rest.size and len(keep) < max_keep:
        i = rest[int(np.argmax(scores[rest]))]
        if scores[i] < min_score:
            break
        keep.append(int(i))
        rest = rest[rest != i]
        if rest.size:
            iou = tiou_matrix(intervals[i], intervals[rest])[0]  # (1, R) -> (R,)
            scores[rest] *= np.exp(-(iou ** 2) / sigma)
    idx = np.asarray(keep, dtype=np.int64)
    return idx, scores[idx]
