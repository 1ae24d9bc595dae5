#!/usr/bin/env python
"""fedn-live command line (design §5).

    python run_live.py --source demo|PATH|webcam:N|FOLDER \
        --ui none|gradio|webrtc --engine auto|tensorrt|cuda|onnxruntime|torch \
        [--events-out events.jsonl] [--max-frames N] [--max-faces N] [--realtime] \
        [--reconnect S] [--tracker FIELD=VALUE ...] [--host 127.0.0.1 --port P]
        [--max-peers N] [--ice-loopback]          (--ui webrtc)

Exit codes: 0 done, 2 bad arguments or input (one line on stderr), 1 internal error,
130 / 143 a file run stopped by SIGINT / SIGTERM (a camera run stopped so ends with 0).
Whenever it stops — at the end, on Ctrl-C or SIGTERM, during start-up too — the
``--events-out`` file is valid JSONL ending in a summary; an existing one is left
as it was when the source or the engine cannot be used.
"""
from __future__ import annotations

import argparse
import math
import signal
import sys
import traceback
from contextlib import contextmanager
from typing import Iterator

from engine.backends import BACKEND_NAMES
from engine.config import StreamConfig
from engine.contracts import Record, Status, Summary

#: ``--engine`` choices (as ``engine.runtime.ENGINE_CHOICES``, without importing torch
#: before the signal handlers are in place).
ENGINE_CHOICES = ("auto",) + BACKEND_NAMES

UIS = ("none", "gradio", "webrtc")
#: Front ends that exist in this build; the others say so plainly.
UIS_BUILT = ("none", "gradio", "webrtc")


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


def _fps(text: str) -> float:
    from stream.sources import MAX_FPS, MIN_FPS

    value = _positive_float(text)
    if not (math.isfinite(value) and MIN_FPS <= value <= MAX_FPS):
        raise argparse.ArgumentTypeError(f"must be a frame rate in [{MIN_FPS:g}, {MAX_FPS:g}], "
                                         f"got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
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
    p.add_argument("--fps", type=_fps, default=None,
                   help="frame rate of a folder of frames (30 CAS(ME)^2/^3, 200 SAMM-LV), "
                        "or of a video whose container gives none")
    p.add_argument("--ui", choices=UIS, default="none", help="front end (default: none)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="inference backend (default: auto)")
    p.add_argument("--events-out", default=None, metavar="PATH",
                   help="write events, status and summary as JSON lines")
    p.add_argument("--max-frames", type=_positive_int, default=None, metavar="N",
                   help="stop after N frames")
    p.add_argument("--realtime", action="store_true",
                   help="pace a file at its native fps (simulates a camera)")
    p.add_argument("--max-faces", type=_positive_int, default=StreamConfig().max_faces,
                   metavar="N", help="faces tracked at once, each with its own events "
                                     f"(default {StreamConfig().max_faces})")
    p.add_argument("--reconnect", type=_seconds, default=0.0, metavar="S",
                   help="webcam: when the camera is lost, try to get it back for S seconds "
                        "(default 0: stop)")
    p.add_argument("--host", default="127.0.0.1", help="UI bind address (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=7860, help="UI port (default 7860)")
    p.add_argument("--quiet", action="store_true", help="no per-event console lines")
    p.add_argument("--tracker", nargs="+", default=[], metavar="FIELD=VALUE",
                   help="interval tracker settings (engine.config.TrackerConfig) of every "
                        "chain, front ends too, e.g. appearance_hold=false")
    p.add_argument("--max-peers", type=_positive_int, default=4, metavar="N",
                   help="--ui webrtc: peers served at once, more get HTTP 503 (default 4)")
    p.add_argument("--ice-loopback", action="store_true",
                   help="--ui webrtc: ICE host candidates on 127.0.0.1 only (tests, same machine)")
    return p


def _print_summary(summary: Summary, min_face_px: int | None = None) -> None:
    promised = ("" if summary.frames_promised is None
                else f" ({summary.frames_promised} promised)")
    print(f"summary: {summary.frames_processed} frames processed of {summary.frames_read} "
          f"read{promised}, {summary.frames_dropped} dropped, {summary.frames_with_face} with "
          f"a face, {summary.fps:.1f} fps, engine {summary.engine}")
    if summary.events:
        e = summary.events
        print(f"  events: {e['event']} ({e['truncated']} truncated), {e['event_start']} "
              f"started, {e['event_cancel']} withdrawn; appearance hold: {e['held']} held, "
              f"{e['absorbed']} records absorbed, {e['appearance_withdrawn']} events and "
              f"{e['appearance_withheld']} starts the face did not show; "
              f"{e['joined']} that continued an emitted one not sent again")
    for stage, s in summary.latency_ms.items():
        print(f"  {stage:10} p50 {s['p50']:8.3f} ms  p95 {s['p95']:8.3f} ms  "
              f"p99 {s['p99']:8.3f} ms  (n={s['n']})")
    if summary.frames_processed and not summary.frames_with_face and min_face_px:
        from stream.face import MIN_FACE_FRACTION
        print(f"  no face found: faces narrower than {min_face_px} px "
              f"({MIN_FACE_FRACTION:.1%} of the frame's longer side) are not found reliably")


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


class Interrupted(Exception):
    """A run stopped by SIGINT / SIGTERM; ``code`` is the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Watch:
    """A sink that notes what the run said: was it interrupted, was the summary written."""

    def __init__(self) -> None:
        self.interrupted_at: int | None = None
        self.summary: Summary | None = None
        self.min_face_px: int | None = None  # from a no_face status

    def __call__(self, record: Record) -> None:
        if isinstance(record, Status) and record.status == "interrupted":
            self.interrupted_at = record.frame
        elif isinstance(record, Status) and record.status == "no_face":
            self.min_face_px = record.detail.get("min_face_px")
        elif isinstance(record, Summary):
            self.summary = record


class _Signals:
    """SIGINT and SIGTERM raise KeyboardInterrupt in the main thread (the run loop then
    finishes and writes its summary); which one came is kept. Restored on exit."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.sinks_ready = False  # the run's own sinks exist (they say how it stopped)
        self._saved: dict[int, object] = {}

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is None:
            self.signum = signum
        raise KeyboardInterrupt

    def __enter__(self) -> "_Signals":
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread: leave the handlers alone
            pass
        return self

    def __exit__(self, *exc) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the previous handlers back (idempotent)."""
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved = {}

    @property
    def code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    @contextmanager
    def as_interrupt(self) -> Iterator[None]:
        """An error raised once a signal came is that signal's interruption, not a failure:
        a signal that lands in an extension module's import surfaces as ImportError
        ("initialization failed"), not as KeyboardInterrupt."""
        try:
            yield
        except Exception:
            if self.signum is not None:
                raise KeyboardInterrupt from None
            raise


def _write_stopped(emit, watch: "_Watch", source_name: str, engine_name: str,
                   policy: str, promised: int | None) -> None:
    """After a stop outside the run loop: ``interrupted`` and a summary, unless written."""
    if watch.summary is None:
        emit(Status("interrupted", watch.interrupted_at or 0))
        emit(Summary(source_name, engine_name, policy, frames_promised=promised))


def _stopped_before_start(argv: list[str] | None) -> None:
    """Best effort: ``interrupted`` and an empty summary in ``--events-out``, if one is given
    and nothing was written to it yet."""
    try:
        args = build_parser().parse_args(argv)
        if not args.events_out:
            return
        from stream.events import JsonlSink

        sink = JsonlSink(args.events_out)
        _write_stopped(sink, _Watch(), args.source, args.engine,
                       "drop_oldest" if args.realtime else "block", None)
        sink.close()
    except (Exception, KeyboardInterrupt):  # noqa: BLE001 - nothing more can be done
        pass


def run(argv: list[str] | None = None, signals: "_Signals | None" = None) -> int:
    """The command line; ``signals`` (installed by :func:`main`) says which signal stopped it."""
    args = build_parser().parse_args(argv)
    if signals is not None:
        return _run(args, signals)
    with _Signals() as signals:
        return _run(args, signals)


def _run(args: argparse.Namespace, signals: "_Signals") -> int:
    from stream.events import ConsoleSink, JsonlSink, SinkError, fan_out

    if args.ui not in UIS_BUILT:
        raise UsageError(f"--ui {args.ui} is not built yet in this version "
                         f"(available: {', '.join(UIS_BUILT)})")
    from engine.config import tracker_settings

    try:
        tracker_cfg = tracker_settings(args.tracker)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.ui in ("gradio", "webrtc"):  # the browser's camera is the source, not --source
        signals.restore()  # the servers have their own shutdown
        return _serve_ui(args, tracker_cfg)
    watch = _Watch()
    sinks: list = [watch]
    jsonl = None
    if args.events_out:
        try:  # checked now, created by the first record (after source and engine)
            jsonl = JsonlSink(args.events_out)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        sinks.append(jsonl)
    emit = fan_out(sinks)
    signals.sinks_ready = True
    source_name, engine_name, source = args.source, args.engine, None
    status = StatusLine()
    try:
        with signals.as_interrupt():  # an error a signal caused is that signal's stop
            from engine.runtime import Engine  # heavy imports (torch): a signal may come now
            from stream.pipeline import Pipeline
            from stream.sources import SourceError, open_source

            try:  # opened before the engine is loaded: bad input fails fast
                source = open_source(args.source, fps=args.fps,
                                     reconnect_s=args.reconnect).open()
            except SourceError as exc:
                raise UsageError(str(exc)) from None
            source_name = str(getattr(source, "name", args.source))
            if not args.quiet:
                sinks.insert(1, ConsoleSink())
                emit = fan_out(sinks)
            with Engine.load(args.engine) as engine:
                engine_name = engine.name
                summary = Pipeline(source, emit, engine,
                                   cfg=StreamConfig(max_faces=args.max_faces),
                                   tracker_cfg=tracker_cfg, max_frames=args.max_frames,
                                   realtime=args.realtime, progress=status).run()
    except KeyboardInterrupt:  # start-up, or a second signal while finishing
        status.clear()
        policy = ("drop_oldest" if args.realtime or getattr(source, "live", False)
                  else "block")
        where = ("during start-up" if watch.interrupted_at is None
                 else f"at frame {watch.interrupted_at}")
        _write_stopped(emit, watch, source_name, engine_name, policy,
                       getattr(source, "frames_promised", None))
        raise Interrupted(signals.code, f"interrupted {where}; the summary was written"
                          if jsonl is not None else f"interrupted {where}") from None
    except SinkError as exc:  # disk full, file gone
        raise UsageError(str(exc)) from None
    except Exception as exc:
        from engine.backends import BackendError
        from stream.sources import SourceError

        if isinstance(exc, (SourceError, BackendError)):  # bad input / backend not here
            raise UsageError(str(exc)) from None
        raise
    finally:
        status.clear()
        if source is not None:
            source.close()
        if jsonl is not None:
            try:
                jsonl.close()
            except OSError as exc:
                raise UsageError(f"cannot write {jsonl.path}: {exc.strerror or exc}") from None
    _print_summary(summary, watch.min_face_px)
    if watch.interrupted_at is not None and not getattr(source, "live", False):
        raise Interrupted(signals.code, f"interrupted at frame {watch.interrupted_at}: "
                                        f"{summary.frames_processed} frames processed")
    return 0


def _serve_ui(args: argparse.Namespace, tracker_cfg) -> int:
    """``--ui gradio|webrtc``: serve the front end on --host / --port until interrupted;
    every chain it opens runs ``tracker_cfg`` (``engine.config.TrackerConfig``)."""
    from engine.backends import BackendError

    try:
        if args.ui == "gradio":
            from ui.gradio_app import launch
            return launch(args.host, args.port, args.engine, tracker_cfg) or 0
        from ui.webrtc_server import serve
        return serve(args.host, args.port, args.engine, args.max_peers, args.ice_loopback,
                     tracker_cfg=tracker_cfg)
    except (BackendError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: "
                         f"{exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fedn-live`` and ``python run_live.py``; returns the exit code."""
    signals = _Signals()
    try:
        with signals:  # before the heavy imports of run()
            return run(argv, signals)
    except UsageError as exc:
        print(f"fedn-live: error: {exc}", file=sys.stderr)
        return 2
    except Interrupted as exc:
        print(f"fedn-live: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:  # stdout closed by the reader (`| head`): nothing more to say
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0
    except KeyboardInterrupt:  # before the run set up its sinks: still leave a valid JSONL
        if not signals.sinks_ready:
            _stopped_before_start(argv)
        print("fedn-live: interrupted", file=sys.stderr)
        return signals.code
    except Exception:  # an internal error: full trace for the bug report
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
