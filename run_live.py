#!/usr/bin/env python
"""fedn-live command line (design §5).

    python run_live.py --source demo|PATH|webcam:N|FOLDER \
        --ui none|gradio|webrtc --engine auto|torch|onnxruntime|tensorrt \
        [--events-out events.jsonl] [--max-frames N] [--host 127.0.0.1 --port P]

Exit codes: 0 done, 2 bad arguments or input (one line on stderr), 1 internal error.
"""
from __future__ import annotations

import argparse
import sys
import traceback

from engine.contracts import Summary
from engine.runtime import ENGINE_CHOICES

UIS = ("none", "gradio", "webrtc")
#: Front ends that exist in this build; the others say so plainly.
UIS_BUILT = ("none",)


class UsageError(Exception):
    """Bad arguments or input: printed as one line, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be <= 65535, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="fedn-live", description="Real-time facial micro/macro-expression spotting.")
    p.add_argument("--source", default="demo",
                   help="demo | video file | webcam:N | folder of frames (default: demo)")
    p.add_argument("--fps", type=_positive_float, default=None,
                   help="frame rate of a folder of frames (30 CAS(ME)^2/^3, 200 SAMM-LV)")
    p.add_argument("--ui", choices=UIS, default="none", help="front end (default: none)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="inference backend (default: auto)")
    p.add_argument("--events-out", default=None, metavar="PATH",
                   help="write events, status and summary as JSON lines")
    p.add_argument("--max-frames", type=_positive_int, default=None, metavar="N",
                   help="stop after N frames")
    p.add_argument("--realtime", action="store_true",
                   help="pace a file at its native fps (simulates a camera)")
    p.add_argument("--host", default="127.0.0.1", help="UI bind address (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=7860, help="UI port (default 7860)")
    p.add_argument("--quiet", action="store_true", help="no per-event console lines")
    return p


def _print_summary(summary: Summary) -> None:
    print(f"summary: {summary.frames_processed} frames processed of {summary.frames_read} "
          f"read, {summary.frames_dropped} dropped, {summary.frames_with_face} with a face, "
          f"{summary.fps:.1f} fps, engine {summary.engine}")
    for stage, s in summary.latency_ms.items():
        print(f"  {stage:10} p50 {s['p50']:8.3f} ms  p95 {s['p95']:8.3f} ms  "
              f"p99 {s['p99']:8.3f} ms  (n={s['n']})")


class StatusLine:
    """A one-line live status (fps, face state, drops) on a terminal; silent otherwise."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.shown = False

    def __call__(self, p: dict) -> None:
        if self.enabled:
            face = "face" if p["face"] else "no face"
            self.stream.write(f"\r{p['frames']:7d} frames  {p['fps']:6.1f} fps  {face:7}  "
                              f"dropped {p['dropped']}   ")
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r" + " " * 60 + "\r")
            self.stream.flush()


def run(argv: list[str] | None = None) -> int:
    from engine.backends import BackendError
    from engine.runtime import Engine
    from stream.events import ConsoleSink, JsonlSink, fan_out
    from stream.pipeline import Pipeline
    from stream.sources import SourceError, open_source

    args = build_parser().parse_args(argv)
    if args.ui not in UIS_BUILT:
        raise UsageError(f"--ui {args.ui} is not built yet in this version "
                         f"(available: {', '.join(UIS_BUILT)})")
    try:
        source = open_source(args.source, fps=args.fps)
    except SourceError as exc:
        raise UsageError(str(exc)) from None
    sinks = [] if args.quiet else [ConsoleSink()]
    jsonl = None
    status = StatusLine()
    try:
        with Engine.load(args.engine) as engine:
            if args.events_out:
                try:
                    jsonl = JsonlSink(args.events_out)
                except (OSError, ValueError) as exc:
                    raise UsageError(f"cannot write --events-out {args.events_out}: "
                                     f"{exc}") from None
                sinks.append(jsonl)
            summary = Pipeline(source, fan_out(sinks), engine, max_frames=args.max_frames,
                               realtime=args.realtime, progress=status).run()
    except (SourceError, BackendError) as exc:  # bad input / a backend that cannot run here
        raise UsageError(str(exc)) from None
    finally:
        status.clear()
        if jsonl is not None:
            jsonl.close()
    _print_summary(summary)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fedn-live`` and ``python run_live.py``; returns the exit code."""
    try:
        return run(argv)
    except UsageError as exc:
        print(f"fedn-live: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fedn-live: interrupted", file=sys.stderr)
        return 130
    except Exception:  # an internal error: full trace for the bug report
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
