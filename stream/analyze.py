"""Offline analysis of whole files: every frame, one JSONL per video, one MEGC CSV for all.

    python -m stream.analyze VIDEO [VIDEO ...] --out DIR [--csv megc.csv] \
        [--labels LABELS.csv] [--engine auto] [--fps F]

Runs the one stage chain and run loop (``stream.chain``) in the calling thread,
so a file gives the same events as ``run_live.py`` on it, with a progress bar
per video. Every input is processed; one that cannot be read is reported with
its reason and the others still run (exit code 2 at the end). In the CSV,
``video`` is the file stem; ``subject`` comes from ``--labels`` (a MEGC CSV whose
``video`` column names the stems, e.g. SynthME's labels) or else from the
video's parent folder — so the CSV scores directly with
``python -m training.evaluate --gt LABELS.csv --pred megc.csv``.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import traceback
from collections import Counter
from pathlib import Path
from typing import Sequence

from engine.backends import BackendError
from engine.config import StreamConfig
from engine.contracts import Event, Summary
from engine.runtime import ENGINE_CHOICES, Engine
from stream.chain import StageChain, run_frames, source_hooks, stamped
from stream.events import JsonlSink, SinkError, fan_out
from stream.megc_csv import Spot, read_megc_csv, write_megc_csv
from stream.ring import Policy
from stream.sources import SourceError, check_fps, open_source


def unique_names(items: Sequence[tuple[Path, str]]) -> list[str]:
    """One output name per (path, base name): the base where no other item shares it, else
    ``<base>-<8 hex of the absolute path>`` (``a/clip.mp4`` and ``b/clip.mp4`` stay apart)."""
    counts = Counter(base for _, base in items)
    return [base if counts[base] == 1 else
            f"{base}-{hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:8]}"
            for p, base in items]


def output_names(paths: Sequence[Path]) -> dict[Path, str]:
    """A distinct output name per input file, from its stem (:func:`unique_names`)."""
    return dict(zip(paths, unique_names([(p, p.stem) for p in paths])))


def analyze_video(path: Path, out_path: Path, engine: Engine, fps: float | None = None,
                  progress: bool = True) -> tuple[list[Event], Summary]:
    """Run one video through the chain; writes every record to ``out_path`` (JSONL).

    Returns:
        (its final events, its summary).

    Raises:
        SourceError: the video cannot be opened (nothing is written then).
    """
    from tqdm import tqdm

    events: list[Event] = []

    def keep(record) -> None:
        if isinstance(record, Event):
            events.append(record)

    with open_source(str(path), fps=fps) as source:
        sink = JsonlSink(out_path)
        try:
            with StageChain(engine, source.fps, StreamConfig()) as chain, \
                    tqdm(total=source.frame_count, desc=path.name, unit="frame",
                         disable=not progress, leave=False) as bar:
                summary = run_frames(stamped(source), chain, fan_out([sink, keep]),
                                     source=str(path), policy=Policy.BLOCK.value,
                                     on_frame=lambda _: bar.update(), **source_hooks(source))
        finally:
            sink.close()
    return events, summary


def subjects_from_labels(path: str | Path | None) -> dict[str, str]:
    """video stem → subject, from a MEGC CSV (empty when no file is given)."""
    if path is None:
        return {}
    return {s.video: s.subject for s in read_megc_csv(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream.analyze",
                                     description="Offline analysis of whole video files.")
    parser.add_argument("videos", nargs="+", help="video files or frame folders")
    parser.add_argument("--out", required=True, help="folder for one JSONL per video")
    parser.add_argument("--csv", default=None, help="write all events as one MEGC CSV")
    parser.add_argument("--labels", default=None,
                        help="MEGC CSV giving each video stem's subject (e.g. SynthME labels)")
    parser.add_argument("--engine", default="auto", choices=ENGINE_CHOICES)
    parser.add_argument("--fps", default=None,
                        help="frame rate of frame folders (and of videos whose container "
                             "gives none)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    videos = [Path(v) for v in args.videos]
    failed: dict[Path, str] = {}
    try:
        fps = None if args.fps is None else check_fps(args.fps, "--fps")
        if args.csv and not Path(args.csv).resolve().parent.is_dir():
            raise ValueError(f"--csv folder does not exist: {Path(args.csv).parent}")
        out_dir = Path(args.out)
        out_dir.mkdir(parents=True, exist_ok=True)
        subjects = subjects_from_labels(args.labels)
        names = output_names(videos)
        spots = []
        with Engine.load(args.engine) as engine:
            for v in videos:
                out_path = out_dir / f"{names[v]}.jsonl"
                try:
                    events, summary = analyze_video(v, out_path, engine, fps,
                                                    progress=not args.no_progress)
                except (SourceError, SinkError) as exc:
                    failed[v] = str(exc)
                except Exception as exc:  # noqa: BLE001 - the other inputs still run
                    failed[v] = f"internal error: {type(exc).__name__}: {exc}"
                    traceback.print_exc()
                if v in failed:
                    print(f"analyze: {v}: skipped: {failed[v]}", file=sys.stderr)
                    if out_path.is_file():  # partial, or from an earlier run: not this one
                        out_path.unlink()
                    continue
                subject = subjects.get(v.stem, v.resolve().parent.name)
                spots += [Spot(subject, v.stem, e.onset_frame, e.offset_frame, e.emotion,
                               e.kind, e.apex_frame, e.score) for e in events]
                short = ("" if summary.frames_promised in (None, summary.frames_read) else
                         f" (of {summary.frames_promised} promised: see source_short)")
                print(f"{v.name}: {len(events)} events, {summary.frames_processed} frames"
                      f"{short}, {summary.fps:.0f} fps, face on {summary.frames_with_face} "
                      f"frames")
        if args.csv:
            write_megc_csv(spots, args.csv)
            print(f"wrote {args.csv} ({len(spots)} rows) and {len(videos) - len(failed)} "
                  f"JSONL files in {out_dir}")
    except (ValueError, BackendError) as exc:
        print(f"analyze: error: {exc}", file=sys.stderr)
        return 2
    if failed:
        print(f"analyze: error: {len(failed)} of {len(videos)} inputs could not be read: "
              + "; ".join(f"{v}: {why}" for v, why in failed.items()), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
