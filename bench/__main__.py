"""`make bench`: throughput and latency of each stage, printed and written as JSON.

    python -m bench [--out bench/results.json] [--frames N] [--png bench/latency.png]

Sections, in order: capture and ring (:mod:`bench.capture`), face and flow
(:mod:`bench.face`), engine backends (:mod:`bench.engine`), the whole pipeline
(:mod:`bench.pipeline`, which also draws the latency PNG) and the MEGC-style peer
next to it (:mod:`bench.peer`), then the budgets as ratios of this one run
(:mod:`bench.ratios`, with ``bench/ratios.png``).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import cv2

from bench import capture, engine, face, peer, pipeline, ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results.json", help="JSON report path")
    parser.add_argument("--frames", type=int, default=600, help="frames in the capture clip")
    parser.add_argument("--png", default="bench/latency.png", help="per-stage latency plot")
    parser.add_argument("--ratios-png", default="bench/ratios.png",
                        help="the budgets as ratios measured in this run")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames must be >= 1, got {args.frames}")

    report: dict = {"machine": {"python": platform.python_version(),
                                "cpu": platform.processor() or platform.machine(),
                                "cv2": cv2.__version__}}
    capture.run(report, args.frames)
    face.run(report)
    engine.run(report)
    pipeline.run(report, png=args.png)
    peer.run(report)
    ratios.run(report)
    ratios.save_png(report["ratios"], Path(args.ratios_png))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
