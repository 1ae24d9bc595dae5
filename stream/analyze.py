"""Offline analysis of whole files: every frame, one JSONL per video, one MEGC CSV for all.

    python -m stream.analyze VIDEO [VIDEO ...] --out DIR [--csv megc.csv] \
        [--labels LABELS.csv] [--engine auto] [--fps F]

Runs the same stage chain as ``run_live.py`` (so a streaming run on a file
emits the same events), with a progress bar per video. In the CSV, ``video``
is the file stem; ``subject`` comes from ``--labels`` (a MEGC CSV whose
``video`` column names the stems, e.g. SynthME's labels) or else from the
video's parent folder — so the CSV scores directly with
``python -m training.evaluate --gt LABELS.csv --pred megc.csv``.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

from stream.events import JsonlSink, status_record


def subjects_from_labels(path: str | Path | None) -> dict[str, str]:
    """video stem → subject, from a MEGC CSV (empty when no file is given)."""
    if path is None:
        return {}
    from training.megc_csv import read_megc_csv

    return {s.video: s.subject for s in read_megc_csv(path)}


def analyze_video(path: Path, out_dir: Path, engine, fps: float | None = None,
                  progress: bool = True) -> tuple[list[dict], dict]:
    """Run one video; writes ``out_dir/<stem>.jsonl``; returns (its event records, summary)."""
    from tqdm import tqdm

    from engine.config import StreamConfig
    from stream.latency import LatencyStats
    from stream.pipeline import RunSummary
    from stream.sources import open_source
    from stream.stages import StageChain

    source = open_source(str(path), fps=fps)
    sink = JsonlSink(out_dir / f"{path.stem}.jsonl")
    events: list[dict] = []
    latency = LatencyStats()
    start = time.perf_counter()
    n = with_face = 0
    try:
        with source:
            chain = StageChain(StreamConfig(), source.fps, [], loaded_engine=engine,
                               latency=latency)
            try:
                bar = tqdm(total=source.frame_count, desc=path.name, unit="frame",
                           disable=not progress, leave=False)
                while (frame := source.read()) is not None:
                    records = chain.process(replace(frame, t_arrival=time.monotonic()))
                    for r in records:
                        sink(r)
                    events += [r for r in records if r["type"] == "event"]
                    n += 1
                    bar.update()
                bar.close()
                tail = chain.finish()
                for r in tail:
                    sink(r)
                events += [r for r in tail if r["type"] == "event"]
                with_face = chain.frames_with_face
            finally:
                chain.close()
            wall = time.perf_counter() - start
        sink(status_record("source_ended", n))
        summary = RunSummary(str(path), getattr(engine, "name", ""), "block", frames_read=n,
                             frames_processed=n, frames_with_face=with_face, wall_s=wall,
                             latency_ms=latency.summary()).record()
        sink(summary)
    finally:
        sink.close()
    return events, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.analyze",
                                     description="Offline analysis of whole video files.")
    parser.add_argument("videos", nargs="+", help="video files or frame folders")
    parser.add_argument("--out", required=True, help="folder for one JSONL per video")
    parser.add_argument("--csv", default=None, help="write all events as one MEGC CSV")
    parser.add_argument("--labels", default=None,
                        help="MEGC CSV giving each video stem's subject (e.g. SynthME labels)")
    parser.add_argument("--engine", default="auto",
                        choices=("auto", "torch", "onnxruntime", "tensorrt"))
    parser.add_argument("--fps", type=float, default=None, help="frame rate of frame folders")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from engine.backends import BackendError
    from stream.pipeline import missing_stages
    from stream.sources import SourceError

    try:
        missing = missing_stages()
        if missing:
            raise ValueError(f"cannot analyze: stages not available: {', '.join(missing)}")
        videos = [Path(v) for v in args.videos]
        for v in videos:
            if not v.exists():
                raise ValueError(f"video not found: {v} (check the path)")
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        subjects = subjects_from_labels(args.labels)
        from engine.runtime import Engine
        from training.megc_csv import Spot, write_megc_csv

        spots = []
        with Engine.load(args.engine) as engine:
            for v in videos:
                events, summary = analyze_video(v, out_dir, engine, args.fps,
                                                progress=not args.no_progress)
                subject = subjects.get(v.stem, v.resolve().parent.name)
                spots += [Spot(subject, v.stem, e["onset_frame"], e["offset_frame"],
                               e["emotion"], e["kind"], e["apex_frame"], e["score"])
                          for e in events]
                print(f"{v.name}: {len(events)} events, {summary['frames_processed']} frames, "
                      f"{summary['fps']:.0f} fps, face on {summary['frames_with_face']} frames")
        if args.csv:
            write_megc_csv(spots, args.csv)
            print(f"wrote {args.csv} ({len(spots)} rows) and {len(videos)} JSONL files in {out_dir}")
    except (ValueError, SourceError, BackendError) as exc:
        print(f"analyze: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
