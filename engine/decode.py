"""Network outputs → candidate intervals (pure numpy, so any backend's outputs decode the same).

Outputs of one window (see ``engine.model.fedn.OUTPUT_KEYS``), without a batch
dimension or with a batch of 1:

* ``cls_logits`` (P, K), ``emo_logits`` (P, E), ``reg`` (P, 2) — one row per
  pyramid point (:func:`pyramid_points`); ``reg`` = frames back to onset and to offset;
* ``act_logits`` (T, K), ``act_emo_logits`` (T, E), ``act_since`` (T,) — per frame.

A point decodes to the interval ``[frame - d_onset, frame - d_offset]`` (inclusive
frames) for each kind whose sigmoid probability reaches the threshold; the
candidates of one call then go through class-agnostic Gaussian 1D soft-NMS.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from engine.config import ModelConfig
from engine.contracts import ActiveFrames, Candidate
from engine.intervals import soft_nms_1d

#: Keys of the detector's output dict, in the order backends export them.
OUTPUT_KEYS: tuple[str, ...] = ("cls_logits", "emo_logits", "reg",
                                "act_logits", "act_emo_logits", "act_since")


def pyramid_points(length: int, levels: int) -> np.ndarray:
    """(P, 2) int64 rows (frame, level) for a window of ``length`` frames.

    Level ``l`` has ``length / 2**l`` points; point ``j`` sits at frame
    ``(j + 1) * 2**l - 1``. Level 0 comes first, as in the head outputs.
    """
    if length % 2 ** (levels - 1):
        raise ValueError(f"length={length} must be divisible by 2**(levels-1)={2 ** (levels - 1)}")
    rows = []
    for level in range(levels):
        stride = 2 ** level
        frames = np.arange(1, length // stride + 1, dtype=np.int64) * stride - 1
        rows.append(np.stack([frames, np.full_like(frames, level)], axis=1))  # (T_l,) -> (T_l, 2)
    return np.concatenate(rows, axis=0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _window_arrays(outputs: Mapping[str, np.ndarray], levels: int) -> dict[str, np.ndarray]:
    missing = [k for k in OUTPUT_KEYS if k not in outputs]
    if missing:
        raise ValueError(f"decode: outputs lack keys {missing}; expected {list(OUTPUT_KEYS)}")
    out = {}
    for key in OUTPUT_KEYS:
        arr = np.asarray(outputs[key], dtype=np.float64)
        want = 1 if key == "act_since" else 2
        if arr.ndim == want + 1:
            if arr.shape[0] != 1:
                raise ValueError(f"decode: outputs[{key!r}] has batch {arr.shape[0]}; "
                                 f"decode one window at a time")
            arr = arr[0]
        if arr.ndim != want:
            raise ValueError(f"decode: outputs[{key!r}] must have {want} dims (no batch), "
                             f"got shape {arr.shape}")
        out[key] = arr
    t = out["act_since"].shape[0]
    p = len(pyramid_points(t, levels))
    for key in ("cls_logits", "emo_logits", "reg"):
        if out[key].shape[0] != p:
            raise ValueError(f"decode: outputs[{key!r}] has {out[key].shape[0]} points, a "
                             f"{t}-frame window with {levels} levels has {p}")
    return out


def _frame_mask(frames: np.ndarray, frame_range: tuple[int, int] | None) -> np.ndarray:
    if frame_range is None:
        return np.ones(len(frames), dtype=bool)
    lo, hi = frame_range
    return (frames >= lo) & (frames < hi)


def decode_window(outputs: Mapping[str, np.ndarray], cfg: ModelConfig, *, frame_offset: int = 0,
                  frame_range: tuple[int, int] | None = None, score_thresh: float | None = None,
                  nms_sigma: float | None = None,
                  max_candidates: int | None = None) -> list[Candidate]:
    """Candidates of one window, best first.

    Args:
        outputs: the detector's outputs for one window (numpy, any backend).
        cfg: label sets, levels and decode defaults.
        frame_offset: stream index of window position 0 (added to every frame).
        frame_range: decode only points whose window position is in ``[lo, hi)``;
            a streaming hop passes ``(window - hop, window)``: the points it is
            responsible for.
        score_thresh, nms_sigma, max_candidates: override the cfg values.
    """
    thresh = cfg.score_thresh if score_thresh is None else score_thresh
    sigma = cfg.nms_sigma if nms_sigma is None else nms_sigma
    max_keep = cfg.max_candidates if max_candidates is None else max_candidates
    out = _window_arrays(outputs, cfg.levels)
    points = pyramid_points(out["act_since"].shape[0], cfg.levels)
    sel = np.flatnonzero(_frame_mask(points[:, 0], frame_range))
    probs = sigmoid(out["cls_logits"][sel])  # (n, K)
    p_idx, k_idx = np.nonzero(probs >= thresh)  # row-major: point order, then kind
    if p_idx.size == 0:
        return []
    rows = sel[p_idx]
    scores = probs[p_idx, k_idx]
    frames = points[rows, 0].astype(np.float64)
    d_on, d_off = out["reg"][rows, 0], out["reg"][rows, 1]
    intervals = np.stack([frames - d_on, frames - d_off], axis=1)  # (n,) ×2 -> (n, 2)
    order = np.argsort(-scores, kind="stable")
    keep, kept_scores = soft_nms_1d(intervals[order], scores[order], sigma, thresh, max_keep)
    emo = softmax(out["emo_logits"][rows])  # (n, E)
    result = []
    for i, score in zip(order[keep], kept_scores):
        onset = max(0, int(np.floor(intervals[i, 0] + 0.5)) + frame_offset)
        offset = max(onset, int(np.floor(intervals[i, 1] + 0.5)) + frame_offset)
        e = emo[i]
        result.append(Candidate(
            onset_frame=onset, offset_frame=offset, kind=cfg.kinds[k_idx[i]],
            emotion=cfg.emotions[int(np.argmax(e))],
            emotion_scores={name: float(v) for name, v in zip(cfg.emotions, e)},
            score=float(score), anchor_frame=int(points[rows[i], 0]) + frame_offset,
            level=int(points[rows[i], 1])))
    return result


def decode_active(outputs: Mapping[str, np.ndarray], cfg: ModelConfig, *, frame_offset: int = 0,
                  frame_range: tuple[int, int] | None = None) -> ActiveFrames:
    """The active head's per-frame readout for window positions in ``frame_range``."""
    out = _window_arrays(outputs, cfg.levels)
    frames = np.arange(out["act_since"].shape[0])
    sel = _frame_mask(frames, frame_range)
    return ActiveFrames(frames=frames[sel] + frame_offset,
                        kind_probs=sigmoid(out["act_logits"][sel]),
                        emotion_probs=softmax(out["act_emo_logits"][sel]),
                        since=out["act_since"][sel])
