"""Whole-pipeline section of ``make bench``: fps, per-stage latency, emission delay.

    python -m bench.pipeline [--clip PATH] [--png bench/latency.png]

On a 640×360 clip (the SynthME demo clip by default), with the engine loaded once:

* file mode (``block``, every frame): whole-pipeline fps and per-stage
  p50 / p95 / p99 from the run's own summary;
* ``--realtime`` mode (the file paced like a camera): the emission delay of
  every final event after its offset frame arrived (``latency_ms``).

A PNG of the per-stage latency distributions (file mode) is written next to the
JSON. The MEGC-style peer on the same clip is :mod:`bench.peer`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from engine.contracts import Event, Summary
from engine.runtime import ENGINE_CHOICES, Engine
from stream.latency import LatencyStats
from stream.pipeline import Pipeline
from stream.sources import DEMO_CLIP, VideoFileSource


def run_pipeline(path: Path, engine: Engine, realtime: bool = False,
                 max_frames: int | None = None) -> tuple[Summary, list[Event], LatencyStats]:
    """Summary, final events and per-stage samples of one ``run_live``-equivalent run."""
    records: list = []
    latency = LatencyStats()
    summary = Pipeline(VideoFileSource(path), records.append, engine, realtime=realtime,
                       max_frames=max_frames, latency=latency).run()
    return summary, [r for r in records if isinstance(r, Event)], latency


def save_latency_png(latency: LatencyStats, path: Path) -> None:
    """Box plot of per-stage latency samples."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = {k: v for k, v in latency.samples().items() if v.size}
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.boxplot(list(samples.values()), whis=(1, 99), showfliers=False)
    ax.set_xticks(range(1, len(samples) + 1), list(samples))
    ax.set_ylabel("ms per call (whiskers p1–p99)")
    ax.set_title("fedn-live per-stage latency, file mode")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def emission_delays(events: list[Event]) -> dict:
    """p50 / max emission delay (ms) of all final events, and the max of the micro ones."""
    delays = [e.latency_ms for e in events]
    micro = [e.latency_ms for e in events if e.kind == "micro"]
    return {"all_p50": round(float(np.median(delays)), 1) if delays else None,
            "all_max": round(float(np.max(delays)), 1) if delays else None,
            "micro_max": round(float(np.max(micro)), 1) if micro else None}


def run(report: dict, clip: str | Path | None = None, png: str | Path = "bench/latency.png",
        backend: str = "auto", max_frames: int | None = None) -> None:
    """Add the ``pipeline`` section to ``report`` (and print it).

    Args:
        report: the benchmark report (updated in place).
        clip: the video (default: the demo clip).
        png: where the per-stage latency plot goes.
        backend: ``Engine.load`` choice.
        max_frames: stop each run after this many frames (tests).
    """
    path = Path(clip) if clip else DEMO_CLIP
    if not path.is_file():
        print(f"pipeline: no clip at {path}; skipped")
        return
    with Engine.load(backend, log=lambda _: None) as eng:
        summary, _, latency = run_pipeline(path, eng, max_frames=max_frames)
        section: dict = {"clip": str(path), "file_mode": {
            "frames_processed": summary.frames_processed, "fps": summary.fps,
            "engine": summary.engine, "frames_with_face": summary.frames_with_face,
            "missing_stages": list(summary.missing_stages), "latency_ms": summary.latency_ms}}
        print(f"pipeline: {summary.fps:.1f} fps over {summary.frames_processed} frames "
              f"(engine {summary.engine}, missing {', '.join(summary.missing_stages) or 'none'})")
        for stage, s in summary.latency_ms.items():
            print(f"  {stage:10} p50 {s['p50']:7.3f}  p95 {s['p95']:7.3f}  p99 {s['p99']:7.3f} ms")
        _, events, _ = run_pipeline(path, eng, realtime=True, max_frames=max_frames)
    section["realtime"] = {"events": len(events), "emission_delay_ms": emission_delays(events)}
    print(f"  realtime: {len(events)} events, emission delay after offset "
          f"{section['realtime']['emission_delay_ms']}")
    save_latency_png(latency, Path(png))
    section["latency_png"] = str(png)
    report["pipeline"] = section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=None, help="640x360 video (default: the demo clip)")
    parser.add_argument("--png", default="bench/latency.png")
    parser.add_argument("--engine", default="auto", choices=ENGINE_CHOICES, help="backend")
    parser.add_argument("--out", default=None, help="also write the section as JSON here")
    args = parser.parse_args(argv)
    report: dict = {}
    run(report, args.clip, args.png, args.engine)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
