"""Wires the stages of design §1: capture thread → ring → face → flow → engine → tracker → sinks.

Stages that are not built yet are reported as missing (in the summary and on
the console) and skipped; the pipeline never invents an event.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass, field
from typing import Callable

from engine.config import StreamConfig
from stream.capture import CaptureThread, default_policy
from stream.events import Sink, status_record
from stream.latency import LatencyStats
from stream.ring import Policy, RingBuffer
from stream.sources import FrameSource
from stream.stages import StageChain

#: Seconds between two calls of a pipeline's ``progress`` callback.
PROGRESS_EVERY_S = 0.5

#: Stages after capture, in order, with the module that implements each.
STAGE_MODULES: dict[str, str] = {
    "face": "stream.face",
    "flow": "stream.flow",
    "engine": "engine.runtime",
    "tracker": "stream.tracker",
}


def missing_stages() -> list[str]:
    """Stages that cannot run in this installation: module absent, or no trained weights."""
    missing = [name for name, module in STAGE_MODULES.items()
               if importlib.util.find_spec(module) is None]
    if "engine" not in missing:
        from engine.runtime import shipped_weights
        if shipped_weights() is None:
            missing.append("engine")  # an untrained model would only invent events
    return missing


@dataclass
class RunSummary:
    """What a run did; ``record()`` is the JSONL ``summary`` line."""

    source: str
    engine: str
    policy: str
    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_with_face: int = 0
    wall_s: float = 0.0
    missing: list[str] = field(default_factory=list)
    latency_ms: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

    def record(self) -> dict:
        return {"type": "summary", "source": self.source, "engine": self.engine,
                "policy": self.policy, "frames_read": self.frames_read,
                "frames_processed": self.frames_processed,
                "frames_dropped": self.frames_dropped,
                "frames_with_face": self.frames_with_face, "fps": round(self.fps, 2),
                "wall_s": round(self.wall_s, 3), "missing_stages": self.missing,
                "latency_ms": self.latency_ms}


class Pipeline:
    """Runs a source through every stage that exists and emits records to ``sink``.

    Args:
        source: an unopened :class:`~stream.sources.FrameSource`.
        sink: receives every record (status, events, summary).
        cfg: stream settings.
        engine: the ``--engine`` choice, reported in the summary.
        max_frames: stop after this many frames.
        realtime: pace a file at its own frame rate (simulates a camera).
        policy: ring back-pressure; default from the source (live → drop_oldest).
        loaded_engine: an engine to use instead of loading one for ``engine``.
        log: where the engine's status line goes.
        progress: called about twice a second with ``frames``, ``fps``, ``face``
            (a face is visible) and ``dropped`` (for a live status line).
    """

    def __init__(self, source: FrameSource, sink: Sink, cfg: StreamConfig = StreamConfig(),
                 engine: str = "auto", max_frames: int | None = None, realtime: bool = False,
                 policy: Policy | str | None = None, loaded_engine=None,
                 log: Callable[[str], None] = print,
                 progress: Callable[[dict], None] | None = None) -> None:
        self.source, self.sink, self.cfg = source, sink, cfg
        self.progress = progress
        self.engine, self.max_frames, self.realtime = engine, max_frames, realtime
        self.policy = Policy(policy) if policy is not None else None
        self.loaded_engine, self.log = loaded_engine, log
        self.latency = LatencyStats()

    def _report_progress(self, summary: RunSummary, start: float, chain: StageChain,
                         ring: RingBuffer) -> None:
        elapsed = time.perf_counter() - start
        self.progress({"frames": summary.frames_processed,
                       "fps": summary.frames_processed / max(elapsed, 1e-9),
                       "face": chain.face_visible, "dropped": ring.stats().dropped})

    def run(self) -> RunSummary:
        """Process the whole stream (or ``max_frames``); returns the summary (also emitted)."""
        missing = missing_stages()
        if self.loaded_engine is not None:  # an engine handed in needs no shipped weights
            missing = [m for m in missing if m != "engine"]
        with self.source:
            policy = self.policy or (Policy.DROP_OLDEST if self.realtime
                                     else default_policy(self.source))
            ring = RingBuffer(self.cfg.ring_capacity, policy)
            summary = RunSummary(str(getattr(self.source, "name", self.source)), self.engine,
                                 policy.value, missing=missing)
            if missing:
                self.sink(status_record("stages_missing", 0, missing=missing))
            chain = StageChain(self.cfg, self.source.fps or self.cfg.fps, missing, self.engine,
                               self.loaded_engine, latency=self.latency, log=self.log)
            summary.engine = chain.engine_name
            capture = CaptureThread(self.source, ring, self.max_frames, self.realtime,
                                    self.cfg.stop_timeout_s)
            start = time.perf_counter()
            capture.start()
            last_index = -1
            next_progress = start
            try:
                try:
                    while True:
                        t_wait = time.perf_counter()
                        frame = ring.get()
                        self.latency.add("ring_wait", (time.perf_counter() - t_wait) * 1e3)
                        if frame is None:
                            break
                        if frame.index != last_index + 1:  # sources count from 0
                            self.sink(status_record("dropped", frame.index,
                                                    count=frame.index - last_index - 1))
                        last_index = frame.index
                        for record in chain.process(frame):
                            self.sink(record)
                        summary.frames_processed += 1
                        if self.progress is not None and time.perf_counter() >= next_progress:
                            next_progress = time.perf_counter() + PROGRESS_EVERY_S
                            self._report_progress(summary, start, chain, ring)
                except KeyboardInterrupt:  # Ctrl-C on a live run: stop, flush, summarize
                    self.sink(status_record("interrupted", last_index + 1))
                for record in chain.finish():
                    self.sink(record)
            finally:
                capture.stop()
                chain.close()
                summary.frames_with_face = chain.frames_with_face
                summary.wall_s = time.perf_counter() - start
                summary.frames_read = capture.frames_read
                summary.frames_dropped = ring.stats().dropped
                summary.latency_ms = self.latency.summary()
        self.sink(status_record("source_ended", last_index + 1))
        self.sink(summary.record())
        return summary
