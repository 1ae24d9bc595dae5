"""Evaluate predictions against ground truth: MEGC spotting, STRS, mAP.

    python -m training.evaluate --gt GT --pred PRED [--json] [--clean-strs]

GT: a real label file (.xlsx/.xls: CAS(ME)^2, SAMM-LV or CAS(ME)^3 part A,
recognised by its sheets) or a MEGC CSV. PRED: a MEGC CSV or a fedn-live
JSONL file (``"type": "event"`` lines; give ``--video SUBJECT/VIDEO`` and
``--first-frame`` when the events carry no subject/video). Prints a table
(P/R/F1 per kind, UF1, UAR, STRS, mAP) or, with ``--json``, one JSON object.
Bad input: one-line error on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from stream import metrics
from stream.megc_csv import Spot, read_jsonl_events, read_megc_csv
from training.datasets.records import spot_from_annotation


def load_gt(path: str | Path) -> list[Spot]:
    """Ground truth from a real label file or a MEGC CSV (blinks never included)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--gt file not found: {path} (check the path)")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_megc_csv(path)
    if suffix not in (".xlsx", ".xls"):
        raise ValueError(f"--gt must be .xlsx/.xls (a real label file) or .csv (MEGC), got {path}")
    import pandas as pd

    from training.datasets import readers

    try:
        sheets = set(pd.ExcelFile(path).sheet_names)
    except Exception as exc:  # noqa: BLE001 - not an Excel file
        raise ValueError(f"--gt {path}: cannot read as Excel ({type(exc).__name__})") from None
    if readers.CASME2_SHEET in sheets or readers.CASME2_SUBJECTS_SHEET in sheets:
        records = readers.read_casme2(path)
    elif readers.SAMMLV_SHEET in sheets:
        records = readers.read_sammlv(path)
    elif readers.CASME3_SHEET in sheets:
        records = readers.read_casme3(path)
    elif readers.CASME3_MICRO_SHEET in sheets:
        records = readers.read_casme3_micro(path)
    else:
        raise ValueError(f"--gt {path}: sheets {sorted(sheets)} match no known label file "
                         f"(CAS(ME)^2, SAMM-LV, CAS(ME)^3)")
    for a in records:
        if a.onset > a.offset:
            raise ValueError(f"--gt {path.name} row {a.row}: onset {a.onset} > offset "
                             f"{a.offset} (fix the row)")
    return [spot_from_annotation(a) for a in records if a.kind != "blink"]


def load_pred(path: str | Path, video: str = "", first_frame: int = 0) -> list[Spot]:
    """Predictions from a MEGC CSV or a JSONL events file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--pred file not found: {path} (check the path)")
    if path.suffix.lower() == ".csv":
        return read_megc_csv(path)
    subject, _, vid = video.partition("/")
    spots = read_jsonl_events(path, subject, vid, first_frame)
    if any(not s.subject or not s.video for s in spots):
        raise ValueError(f"--pred {path}: events carry no subject/video; pass "
                         f"--video SUBJECT/VIDEO")
    return spots


def check_videos_match(gt: Sequence[Any], pred: Sequence[Any]) -> list[tuple[str, str]]:
    """The predicted (subject, video) keys that are not in the ground truth.

    Raises:
        ValueError: there are predictions but none of their videos is in the
            ground truth — every score would be 0 for a naming mismatch, not
            for the detector (e.g. ``stream.analyze`` without ``--labels``
            writes the folder name as the subject).
    """
    gt_keys = {(g.subject, g.video) for g in gt}
    pred_keys = sorted({(p.subject, p.video) for p in pred})
    unknown = [k for k in pred_keys if k not in gt_keys]
    if pred_keys and len(unknown) == len(pred_keys):
        def show(keys):
            keys = sorted(keys)
            text = ", ".join(f"{s}/{v}" for s, v in keys[:3])
            return text + (f" ... ({len(keys)} in all)" if len(keys) > 3 else "")
        raise ValueError(f"no predicted (subject, video) is in the ground truth: predictions "
                         f"name {show(pred_keys)}, the ground truth {show(gt_keys)} (for "
                         f"stream.analyze output, pass --labels so subjects match)")
    return unknown


def evaluate(gt: Sequence[Any], pred: Sequence[Any], threshold: float = 0.5,
             official_strs: bool = True) -> dict:
    """All metrics as one JSON-ready dict (``unmatched_videos``: predicted videos not in
    the ground truth, whose spots all count as false positives)."""
    unmatched = check_videos_match(gt, pred)
    spotting = {k: v.as_dict() for k, v in metrics.megc_spotting(gt, pred, threshold).items()}
    strs = metrics.strs(gt, pred, threshold, official=official_strs)
    has_scores = bool(pred) and all(p.score is not None for p in pred)
    mAP = metrics.map_tiou(gt, pred) if has_scores else None
    return {"n_gt": len(gt), "n_pred": len(pred), "iou_threshold": threshold,
            "spotting": spotting, "strs": strs, "map": mAP,
            "unmatched_videos": [f"{s}/{v}" for s, v in unmatched]}


def format_table(result: dict) -> str:
    """The human-readable report."""
    lines = [f"ground truth {result['n_gt']}, predictions {result['n_pred']}, "
             f"IoU >= {result['iou_threshold']}",
             f"{'spotting':10} {'TP':>5} {'FP':>5} {'FN':>5} {'P':>7} {'R':>7} {'F1':>7}"]
    for kind, c in result["spotting"].items():
        lines.append(f"{kind:10} {c['tp']:5d} {c['fp']:5d} {c['fn']:5d} {c['precision']:7.4f} "
                     f"{c['recall']:7.4f} {c['f1']:7.4f}")
    s, a = result["strs"], result["strs"]["analysis"]
    mode = "official STRS code" if s["official"] else "clean variant"
    lines.append(f"analysis on spotted TPs ({mode}): classes {s['labels']}")
    for label, c in a["per_class"].items():
        lines.append(f"  {label:10} F1 {c['f1']:.4f}  (TP {c['tp']}, FP {c['fp']}, FN {c['fn']})")
    lines.append(f"UF1 {a['uf1']:.4f}  UAR {a['uar']:.4f}  analysis F1 {a['f1']:.4f}")
    lines.append(f"STRS {s['strs']:.4f}  (spotting F1 {s['spotting']['f1']:.4f} x analysis F1 "
                 f"{a['f1']:.4f})")
    if result["map"] is None:
        lines.append("mAP@tIoU[0.3:0.7] n/a (predictions carry no score)")
    else:
        per = "  ".join(f"{t}: {v:.4f}" for t, v in result["map"]["per_threshold"].items())
        lines.append(f"mAP@tIoU[0.3:0.7] {result['map']['map']:.4f}  ({per})")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, help="label file (.xlsx/.xls) or MEGC CSV")
    parser.add_argument("--pred", required=True, help="MEGC CSV or JSONL events")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.add_argument("--iou", type=float, default=0.5, help="spotting IoU threshold")
    parser.add_argument("--clean-strs", action="store_true",
                        help="clean STRS variant instead of the official code's quirks")
    parser.add_argument("--video", default="", help="SUBJECT/VIDEO of a JSONL stream")
    parser.add_argument("--first-frame", type=int, default=0,
                        help="label frame number of stream index 0 (JSONL only)")
    args = parser.parse_args(argv)
    try:
        if not 0 < args.iou <= 1:
            raise ValueError(f"--iou must be in (0, 1], got {args.iou}")
        gt = load_gt(args.gt)
        pred = load_pred(args.pred, args.video, args.first_frame)
        result = evaluate(gt, pred, args.iou, official_strs=not args.clean_strs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if result["unmatched_videos"]:
        names = result["unmatched_videos"]
        print(f"note: {len(names)} predicted video(s) not in the ground truth, their spots "
              f"count as false positives: {', '.join(names[:5])}"
              f"{' ...' if len(names) > 5 else ''}", file=sys.stderr)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
