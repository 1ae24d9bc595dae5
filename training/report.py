"""FEDN vs the baseline on held-out SynthME test identities, offline and through the live path.

    python -m training.report --weights engine/weights/fedn_default.pt \\
        --val data/synthme/val --test data/synthme/test --out data/runs/default/report

* **FEDN offline**: whole-video detector pass, one global soft-NMS
  (``training.infer.predict``), threshold = the checkpoint's ``score_thresh``
  (chosen on validation during training).
* **FEDN streaming**: what ``run_live`` does — ``Engine`` (ONNX Runtime by
  default) + ``engine.streaming.StreamingDetector`` + ``stream.interval_tracker.IntervalTracker``
  fed the same flow frames; final events only.
* **Baseline**: ``training.baseline`` tuned on validation, run on test.

All three are scored by the same code (``training.evaluate.evaluate``: MEGC
spotting P/R/F1 per kind, STRS with UF1, mAP over tIoU 0.3:0.7). Writes
``results.json`` and ``results.md`` into ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from stream import metrics


def agreement(a: Sequence, b: Sequence, threshold: float = 0.5) -> dict:
    """How many of ``a`` have a same-kind match (tIoU ≥ threshold) in ``b``, and back."""
    res = metrics.megc_spotting(b, a, threshold)  # b plays ground truth
    tp = res["overall"].tp
    return {"a": len(a), "b": len(b), "matched": tp,
            "a_in_b": tp / len(a) if a else 1.0, "b_in_a": tp / len(b) if b else 1.0}


def per_subject(gt: Sequence, pred: Sequence) -> dict:
    """Overall MEGC counts and F1 per subject (identity)."""
    out = {}
    for subject in sorted({g.subject for g in gt} | {p.subject for p in pred}):
        c = metrics.megc_spotting([g for g in gt if g.subject == subject],
                                  [p for p in pred if p.subject == subject])["overall"]
        out[subject] = {"tp": c.tp, "fp": c.fp, "fn": c.fn, "f1": round(c.f1, 3)}
    return out


def row(name: str, r: dict) -> str:
    s = r["spotting"]
    cells = [name]
    for kind in ("micro", "macro", "overall"):
        c = s[kind]
        cells += [f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}"]
    a = r["strs"]["analysis"]
    cells += [f"{a['uf1']:.3f}", f"{r['strs']['strs']:.3f}",
              f"{r['map']['map']:.3f}" if r["map"] else "n/a"]
    return "| " + " | ".join(cells) + " |"


def table(results: dict) -> str:
    head = ("| method | micro P | micro R | micro F1 | macro P | macro R | macro F1 | "
            "overall P | overall R | overall F1 | UF1 | STRS | mAP |")
    lines = [head, "|" + "---|" * 13]
    for name, r in results.items():
        lines.append(row(name, r))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.report", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="engine/weights/fedn_default.pt")
    ap.add_argument("--val", default="data/synthme/val", help="tunes the baseline")
    ap.add_argument("--test", nargs="+", default=["data/synthme/test"],
                    help="held-out identities: one folder, or several scored as their union")
    ap.add_argument("--cache", default="data/features")
    ap.add_argument("--out", default="data/runs/report")
    ap.add_argument("--engine", default="onnxruntime", help="backend of the streaming run")
    ap.add_argument("--no-streaming", action="store_true")
    ap.add_argument("--limit", type=int, default=None, help="first N videos per split")
    ap.add_argument("--negatives", default=None,
                    help="SynthME folder without expressions (distractors only): false alarms/min")
    a = ap.parse_args(argv)
    try:
        import torch

        from engine.runtime import Engine, load_model
        from training import baseline
        from training.evaluate import evaluate
        from training.features import load_split, load_union, summarize
        from training.infer import conversion, ground_truth, predict, streaming_spots

        torch.set_num_threads(1)
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        test = load_union(a.test, a.cache, a.limit)
        val = load_split(a.val, a.cache, workers=2, limit=a.limit)
        model = load_model(a.weights)
        gt = ground_truth(test)
        results, extra = {}, {"data": {"test": summarize(test), "val": summarize(val)},
                              "weights": a.weights, "score_thresh": model.cfg.score_thresh}
        t0 = time.perf_counter()
        offline = predict(model, test)
        results["FEDN (offline)"] = evaluate(gt, offline)
        extra["offline_s"] = round(time.perf_counter() - t0, 1)
        extra["per_subject_offline"] = per_subject(gt, offline)
        if not a.no_streaming:
            t0 = time.perf_counter()
            provisional: dict[str, int] = {}
            with Engine.load(a.engine, weights=a.weights, log=lambda s: None) as eng:
                live = streaming_spots(eng, test, provisional=provisional)
            results["FEDN (streaming)"] = evaluate(gt, live)
            # issue 15: back-to-back expressions should give one event each, not churn
            extra["provisional"] = {**provisional, "conversion": conversion(provisional)}
            extra["streaming_s"] = round(time.perf_counter() - t0, 1)
            extra["streaming_engine"] = a.engine
            extra["agreement"] = agreement(live, offline)
        t0 = time.perf_counter()
        params, val_f1 = baseline.tune(val, baseline.most_common_emotion(val))
        base = baseline.predict(test, params)
        results["Baseline (flow curves + peaks)"] = evaluate(gt, base)
        extra["baseline"] = {"params": baseline.params_dict(params), "val_f1": val_f1,
                             "seconds": round(time.perf_counter() - t0, 1)}
        if a.negatives:
            neg = load_split(a.negatives, a.cache, workers=2)
            minutes = sum(v.n_frames / v.fps for v in neg) / 60
            fa = {"minutes": round(minutes, 2), "labelled_events": len(ground_truth(neg)),
                  "fedn_offline": len(predict(model, neg)),
                  "baseline": len(baseline.predict(neg, params))}
            if not a.no_streaming:
                with Engine.load(a.engine, weights=a.weights, log=lambda s: None) as eng:
                    fa["fedn_streaming"] = len(streaming_spots(eng, neg))
            extra["false_alarms"] = fa
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    md = table(results)
    (out / "results.json").write_text(json.dumps({"results": results, **extra}, indent=1,
                                                 default=str))
    (out / "results.md").write_text(md + "\n")
    print(md)
    print(json.dumps({k: v for k, v in extra.items() if k != "data"}, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
