"""Pick the interval tracker's settings on validation: the live schedule under a grid of them.

    python -m training.tracker_sweep --weights W --val data/synthme/val data/synthme/val_r \\
        --grid hold_frames=0,24,48 on_thresh=0.5,0.6 [--cache data/features] [--out F.json]

Every combination of the ``--grid`` values (``engine.config.TrackerConfig``
fields; the others keep their defaults) runs ``training.infer.streaming_spots``
— the ONNX Runtime engine, ``StreamingDetector`` and ``IntervalTracker`` as
``run_live`` runs them — over the cached features of the validation folders
(their union), and is scored with the MEGC metrics plus the ``event_start`` →
``event`` conversion. Prints one row per combination, best first (overall F1,
then conversion), and writes them to ``--out``. Validation folders only: the
test sets are for the report.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from engine.config import TrackerConfig, parse_grid


def combinations(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values (one empty dict for an empty grid)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*grid.values())]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.tracker_sweep",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="engine/weights/fedn_default.pt")
    ap.add_argument("--val", nargs="+", default=["data/synthme/val"])
    ap.add_argument("--cache", default="data/features")
    ap.add_argument("--grid", nargs="*", default=[], help="FIELD=V1,V2,... (TrackerConfig)")
    ap.add_argument("--engine", default="onnxruntime")
    ap.add_argument("--out", default=None, help="JSON of every row")
    a = ap.parse_args(argv)
    try:
        combos = combinations(parse_grid(a.grid))
        for combo in combos:  # out-of-range values fail here, before anything loads
            TrackerConfig(**combo)
        from engine.runtime import Engine
        from training.evaluate import evaluate
        from training.features import load_union
        from training.infer import conversion, ground_truth, streaming_spots

        val = load_union(a.val, a.cache)
        gt = ground_truth(val)
        rows = []
        with Engine.load(a.engine, weights=a.weights, log=lambda s: None) as eng:
            for combo in tqdm(combos, desc="tracker settings", unit="setting"):
                counts: dict[str, int] = {}
                spots = streaming_spots(eng, val, TrackerConfig(**combo), provisional=counts)
                sp = evaluate(gt, spots)["spotting"]
                rows.append({"settings": combo, **{k: round(sp[k]["f1"], 4) for k in sp},
                             "starts": counts.get("starts", 0),
                             "withdrawn": counts.get("withdrawn", 0),
                             "conversion": conversion(counts)})
    except ValueError as exc:
        print(f"training.tracker_sweep: {exc}", file=sys.stderr)
        return 2
    rows.sort(key=lambda r: (-r["overall"], -(r["conversion"] or 0)))
    print(f"{'settings':40} {'overall':>8} {'micro':>6} {'macro':>6} {'starts':>7} "
          f"{'withdrawn':>9} {'conversion':>10}")
    for r in rows:
        s = " ".join(f"{k}={v}" for k, v in r["settings"].items()) or "(defaults)"
        print(f"{s:40} {r['overall']:8.3f} {r.get('micro', 0):6.3f} {r.get('macro', 0):6.3f} "
              f"{r['starts']:7d} {r['withdrawn']:9d} {r['conversion']!s:>10}")
    if a.out:
        Path(a.out).write_text(json.dumps({"weights": a.weights, "val": a.val, "rows": rows},
                                          indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
