"""MEGC spotting, spot-then-recognize (STRS) and mAP metrics, pure numpy.

Inputs are sequences of interval records with attributes ``subject``,
``video``, ``onset``, ``offset`` (inclusive frames), ``kind`` (``micro`` /
``macro`` / ``""``), ``emotion`` and, for mAP, ``score``:
:class:`stream.megc_csv.Spot` and
:class:`training.datasets.records.Annotation` both fit.

* :func:`megc_spotting` — MEGC spotting: a prediction is a TP when its IoU
  (frames counted inclusively) with a not-yet-matched ground truth of the
  same video and kind is ≥ 0.5; counts pooled over videos; P/R/F1 for micro,
  macro and overall (overall = summed counts).
* :func:`strs` — analysis on the spotted TPs (per-class F1, UF1, UAR) and
  STRS = spotting F1 × analysis F1, reproducing the official code
  (genbing99/STRS-Metric ``strs_metric.py``) with its quirks by default
  (``official=True``); ``official=False`` is the clean variant. The quirks are
  listed in training/datasets/README.md and in :func:`strs`.
* :func:`average_precision` / :func:`map_tiou` — ActionFormer-style AP per
  kind and mAP over tIoU 0.3:0.1:0.7.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from engine.intervals import tiou_matrix

#: tIoU thresholds of the mAP (ActionFormer's THUMOS14 set).
TIOU_THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)


def _iou_matrix(pred: Sequence[Any], gt: Sequence[Any]) -> np.ndarray:
    """(P, G) IoU of every prediction against every ground truth, inclusive frames."""
    if not len(pred) or not len(gt):
        return np.zeros((len(pred), len(gt)))
    return tiou_matrix([[x.onset, x.offset] for x in pred], [[x.onset, x.offset] for x in gt])


@dataclass(frozen=True)
class Counts:
    """TP / FP / FN of a spotting evaluation, with precision, recall and F1 (0 where undefined)."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def as_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision,
                "recall": self.recall, "f1": self.f1}


def _by_video(records: Sequence[Any]) -> dict[tuple[str, str], list[int]]:
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[(str(r.subject), str(r.video))].append(i)
    return groups


def match(gt: Sequence[Any], pred: Sequence[Any], threshold: float = 0.5
          ) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """One-to-one MEGC matching, video by video.

    Predictions are taken in descending score when every one has a score,
    else in input order; each takes the not-yet-matched ground truth of its
    video with the highest IoU (first one on ties), if that IoU ≥ threshold.

    Returns:
        (pairs of (pred index, gt index), unmatched pred indices (FP),
        unmatched gt indices (FN)), indices into the inputs.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    gt_groups, pairs, fps = _by_video(gt), [], []
    matched_gt: set[int] = set()
    for key, p_idx in _by_video(pred).items():
        g_idx = gt_groups.get(key, [])
        scores = [getattr(pred[i], "score", None) for i in p_idx]
        if all(s is not None for s in scores) and p_idx:
            p_idx = [p_idx[j] for j in np.argsort(-np.asarray(scores, float), kind="stable")]
        ious = _iou_matrix([pred[i] for i in p_idx], [gt[j] for j in g_idx])  # (P, G)
        taken = np.zeros(len(g_idx), bool)
        for row, i in enumerate(p_idx):
            cand = np.where(taken, -1.0, ious[row]) if len(g_idx) else np.zeros(0)
            best = int(np.argmax(cand)) if len(cand) else -1
            if best >= 0 and cand[best] >= threshold:
                taken[best] = True
                pairs.append((i, g_idx[best]))
                matched_gt.add(g_idx[best])
            else:
                fps.append(i)
    fns = [j for j in range(len(gt)) if j not in matched_gt]
    return pairs, sorted(fps), fns


def megc_spotting(gt: Sequence[Any], pred: Sequence[Any], threshold: float = 0.5
                  ) -> dict[str, Counts]:
    """MEGC spotting counts: ``{"micro": Counts, "macro": Counts, "overall": Counts}``.

    Predictions are matched to ground truths of their own kind; overall sums
    the two. Records without a kind (``""``, e.g. a CSV without a type
    column) make the evaluation kind-agnostic: only ``overall`` is returned.
    """
    typed = all(getattr(r, "kind", "") in ("micro", "macro") for r in list(gt) + list(pred))
    if not typed:
        pairs, fp, fn = match(gt, pred, threshold)
        return {"overall": Counts(len(pairs), len(fp), len(fn))}
    out = {}
    for kind in ("micro", "macro"):
        g = [r for r in gt if r.kind == kind]
        p = [r for r in pred if r.kind == kind]
        pairs, fp, fn = match(g, p, threshold)
        out[kind] = Counts(len(pairs), len(fp), len(fn))
    out["overall"] = out["micro"] + out["macro"]
    return out


def _official_spotting(gt: Sequence[Any], pred: Sequence[Any], threshold: float
                       ) -> tuple[list[tuple[int, int]], int, int]:
    """Spotting exactly as STRS-Metric's ``evaluate_STRS``/``evaluate_spotting`` count it."""
    pairs, fp, fn = [], 0, 0
    gt_groups, pred_groups = _by_video(gt), _by_video(pred)
    pred_subjects = list(dict.fromkeys(str(p.subject) for p in pred))
    for subject in pred_subjects:  # quirk: only subjects that have predictions
        videos = [k for k in gt_groups if k[0] == subject]  # quirk: only videos with GT
        for key in videos:
            g_idx, p_idx = gt_groups[key], pred_groups.get(key, [])
            ious = _iou_matrix([pred[i] for i in p_idx], [gt[j] for j in g_idx])
            hit = set()
            for row, i in enumerate(p_idx):  # quirk: no one-to-one constraint
                cols = np.nonzero(ious[row] >= threshold)[0] if len(g_idx) else []
                pairs.extend((i, g_idx[c]) for c in cols)
                hit.update(int(c) for c in cols)
                fp += len(cols) == 0
            fn += len(g_idx) - len(hit)
    return pairs, fp, fn


def analysis(gt_emotions: Sequence[str], pred_emotions: Sequence[str],
             labels: Sequence[str], official: bool = True) -> dict:
    """Per-class and mean analysis metrics on spotted TP pairs.

    Per class c (one-vs-rest over the pairs): TP, FP, FN -> precision,
    recall, F1 (0 where undefined). ``uf1`` = mean F1; ``uar`` = mean recall
    (official: mean *precision*, the STRS code's ``uar = np.mean(precision_list)``);
    ``f1`` = harmonic mean of the mean precision and mean recall (the STRS
    code's analysis F1, used in STRS; 0 where both are 0).
    """
    g, p = np.asarray(list(gt_emotions), object), np.asarray(list(pred_emotions), object)
    if g.shape != p.shape:
        raise ValueError(f"gt_emotions and pred_emotions differ in length: {g.size} vs {p.size}")
    per_class, precisions, recalls, f1s = {}, [], [], []
    for c in labels:
        tp = int(np.sum((g == c) & (p == c)))
        fp = int(np.sum((g != c) & (p == c)))
        fn = int(np.sum((g == c) & (p != c)))
        counts = Counts(tp, fp, fn)
        per_class[c] = {"tp": tp, "fp": fp, "fn": fn, "support": tp + fn,
                        "precision": counts.precision, "recall": counts.recall, "f1": counts.f1}
        precisions.append(counts.precision)
        recalls.append(counts.recall)
        f1s.append(counts.f1)
    mean_p = float(np.mean(precisions)) if labels else 0.0
    mean_r = float(np.mean(recalls)) if labels else 0.0
    if official:
        uar = mean_p  # quirk: the official code averages precisions and calls it UAR
    else:  # clean: mean recall over classes that occur in the ground truth
        present = [per_class[c]["recall"] for c in labels if per_class[c]["support"]]
        uar = float(np.mean(present)) if present else 0.0
    return {"per_class": per_class, "precision": mean_p, "recall": mean_r,
            "f1": 2 * mean_p * mean_r / (mean_p + mean_r) if mean_p + mean_r else 0.0,
            "uf1": float(np.mean(f1s)) if labels else 0.0, "uar": uar}


def strs(gt: Sequence[Any], pred: Sequence[Any], threshold: float = 0.5,
         official: bool = True) -> dict:
    """Spot-then-recognize score and its parts.

    ``official=True`` reproduces genbing99/STRS-Metric ``strs_metric.py``:
      1. no one-to-one matching: a prediction is a TP once per ground truth it
         overlaps with IoU ≥ threshold (one prediction on two GTs = 2 TPs; two
         predictions on one GT = 2 TPs); it is an FP only if it matches none;
      2. only subjects that appear in the predictions are evaluated (GTs of a
         subject with no prediction are not FNs);
      3. only videos with ground truth are evaluated (predictions on a video
         without GT are not FPs);
      4. kinds are ignored (micro and macro pooled);
      5. the class set is every emotion in either file (not the fixed 4);
      6. UAR is the mean per-class *precision*;
      7. analysis F1 (in STRS) = harmonic mean of mean precision and mean
         recall, not UF1.
    Deviations kept in both modes: where the official code would crash
    (``confusion_matrix(...).ravel()`` unpacking 4 values when a class never or
    always occurs among the TPs) or divide 0/0 (NaN), we return what the 2×2
    matrix gives, or 0. TP pairs whose GT has no emotion (``""``) are left out
    of the analysis.

    ``official=False``: one-to-one :func:`match` over all GT and predicted
    videos (kind-agnostic), classes = emotions present in the ground truth,
    UAR = mean recall over those classes; STRS still = spotting F1 × analysis F1.
    """
    gt, pred = list(gt), list(pred)
    if official:
        pairs, fp, fn = _official_spotting(gt, pred, threshold)
        labels = sorted({str(r.emotion) for r in gt + pred if str(r.emotion)})
    else:
        pairs, fps, fns = match(gt, pred, threshold)
        fp, fn = len(fps), len(fns)
        labels = sorted({str(r.emotion) for r in gt if str(r.emotion)})
    spot = Counts(len(pairs), fp, fn)
    labelled = [(gt[j].emotion, pred[i].emotion) for i, j in pairs if str(gt[j].emotion)]
    result = analysis([a for a, _ in labelled], [b for _, b in labelled], labels, official)
    return {"strs": spot.f1 * result["f1"], "spotting": spot.as_dict(), "analysis": result,
            "labels": labels, "official": official}


def _interpolated_ap(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC/ActivityNet all-point interpolated AP (ActionFormer's ``interpolated_prec_rec``)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]  # monotone envelope from the right
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def average_precision(gt: Sequence[Any], pred: Sequence[Any],
                      thresholds: Sequence[float] = TIOU_THRESHOLDS) -> np.ndarray:
    """AP of one class at each tIoU threshold (ActionFormer's
    ``compute_average_precision_detection``).

    Predictions sorted by descending score (stable); each takes the highest-IoU
    unmatched GT of its video whose IoU ≥ threshold. IoU counts frames
    inclusively (ActionFormer uses continuous [start, end]). Returns (T,).

    Raises:
        ValueError: a prediction without a score.
    """
    thresholds = np.asarray(thresholds, float)
    ap = np.zeros(len(thresholds))
    if not gt or not pred:
        return ap
    if any(getattr(p, "score", None) is None for p in pred):
        raise ValueError("mAP needs a score on every prediction (CSV column 'score')")
    order = np.argsort(-np.asarray([p.score for p in pred], float), kind="stable")
    gt_groups = _by_video(gt)
    tp = np.zeros((len(thresholds), len(pred)))
    used = {key: np.zeros((len(thresholds), len(idx)), bool) for key, idx in gt_groups.items()}
    for rank, i in enumerate(order):
        key = (str(pred[i].subject), str(pred[i].video))
        if key not in gt_groups:
            continue
        ious = _iou_matrix([pred[i]], [gt[j] for j in gt_groups[key]])[0]  # (G,)
        by_iou = np.argsort(-ious, kind="stable")
        for t, thr in enumerate(thresholds):
            for g in by_iou:
                if ious[g] < thr:
                    break
                if used[key][t, g]:
                    continue
                used[key][t, g] = True
                tp[t, rank] = 1
                break
    cum_tp = np.cumsum(tp, axis=1)  # (T, P)
    cum_fp = np.cumsum(1 - tp, axis=1)
    recall = cum_tp / len(gt)
    precision = cum_tp / (cum_tp + cum_fp)
    for t in range(len(thresholds)):
        ap[t] = _interpolated_ap(precision[t], recall[t])
    return ap


def map_tiou(gt: Sequence[Any], pred: Sequence[Any],
             thresholds: Sequence[float] = TIOU_THRESHOLDS) -> dict:
    """mAP over tIoU thresholds, classes = kinds present in the ground truth.

    Untyped records (kind ``""``) form one class. Returns ``{"map": float,
    "per_threshold": {thr: mAP}, "per_class": {kind: [AP per thr]}}``.
    """
    gt, pred = list(gt), list(pred)
    classes = sorted({getattr(r, "kind", "") or "" for r in gt})
    per_class = {}
    for c in classes:
        per_class[c or "all"] = average_precision(
            [r for r in gt if (r.kind or "") == c], [p for p in pred if (p.kind or "") == c],
            thresholds)
    table = np.array(list(per_class.values())) if per_class else np.zeros((1, len(thresholds)))
    per_thr = table.mean(axis=0)  # mean over classes, (T,)
    return {"map": float(per_thr.mean()),
            "per_threshold": {round(float(t), 2): float(v) for t, v in zip(thresholds, per_thr)},
            "per_class": {k: [float(x) for x in v] for k, v in per_class.items()}}
