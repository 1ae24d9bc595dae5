"""The threaded pipeline of design §1: threads and bounded hand-offs around the one run loop.

    FrameSource ──capture thread──▶ RingBuffer ──face thread (StageChain.track)──▶ FaceAhead
        ──▶ run_frames: the rest of the StageChain (flow, engine, interval tracker) ──▶ sinks

The loop is :func:`stream.chain.run_frames`, the one every entry point runs; this
module only adds the capture thread, the ring, the face thread and their policy
(``block`` for files: nothing lost; ``drop_oldest`` for live sources and
``--realtime``: drops counted), so two cores work at once.
"""
from __future__ import annotations

import time
from typing import Callable, Iterator

from engine.config import StreamConfig, TrackerConfig
from engine.contracts import Frame, Summary
from engine.runtime import Engine
from stream.ahead import FaceAhead
from stream.capture import CaptureThread, default_policy
from stream.chain import StageChain, run_frames, source_hooks
from stream.events import Sink
from stream.latency import LatencyStats
from stream.ring import Policy, RingBuffer
from stream.sources import FrameSource

#: Seconds between two calls of a pipeline's ``progress`` callback.
PROGRESS_EVERY_S = 0.5


class Pipeline:
    """Runs a source through the stage chain on a capture thread and emits records to ``sink``.

    Args:
        source: an unopened :class:`~stream.sources.FrameSource`.
        sink: receives every record (status, events, summary).
        engine: the loaded engine (shared; not closed here).
        cfg: stream settings.
        tracker_cfg: interval-tracker thresholds.
        max_frames: stop after this many frames.
        realtime: pace a file at its own frame rate (simulates a camera).
        policy: ring back-pressure; default from the source (live → drop_oldest).
        progress: called about twice a second with ``frames``, ``fps``, ``face``
            (a face is visible) and ``dropped`` (for a live status line).
        latency: per-stage timings go here (benchmarks read the samples); default a
            fresh one per run.
    """

    def __init__(self, source: FrameSource, sink: Sink, engine: Engine,
                 cfg: StreamConfig = StreamConfig(), tracker_cfg: TrackerConfig = TrackerConfig(),
                 max_frames: int | None = None, realtime: bool = False,
                 policy: Policy | str | None = None,
                 progress: Callable[[dict], None] | None = None,
                 latency: LatencyStats | None = None) -> None:
        self.source, self.sink, self.engine, self.cfg = source, sink, engine, cfg
        self.latency = latency
        self.tracker_cfg, self.progress = tracker_cfg, progress
        self.max_frames, self.realtime = max_frames, realtime
        self.policy = Policy(policy) if policy is not None else None

    def run(self) -> Summary:
        """Process the whole stream (or ``max_frames``); returns the summary (also emitted)."""
        with self.source:
            policy = self.policy or (Policy.DROP_OLDEST if self.realtime
                                     else default_policy(self.source))
            ring = RingBuffer(self.cfg.ring_capacity, policy)
            with StageChain(self.engine, self.source.fps or self.cfg.fps, self.cfg,
                            self.tracker_cfg, latency=self.latency) as chain:
                capture = CaptureThread(self.source, ring, self.max_frames, self.realtime,
                                        self.cfg.stop_timeout_s)
                capture.start()
                try:  # the face stage runs one frame ahead on its own thread (stream/ahead.py)
                    with FaceAhead(self._frames(ring, chain), chain, policy) as ahead:
                        return run_frames(
                            ahead, chain, self.sink,
                            source=str(getattr(self.source, "name", self.source)),
                            policy=policy.value, on_frame=self._progress(chain, ring, ahead),
                            on_end=capture.stop, frames_read=lambda: capture.frames_read,
                            frames_dropped=lambda: ring.stats().dropped + ahead.dropped,
                            **source_hooks(self.source))
                finally:
                    capture.stop()

    @staticmethod
    def _frames(ring: RingBuffer, chain: StageChain) -> Iterator[Frame]:
        """The ring's frames until it is closed and drained; the wait is timed."""
        while True:
            with chain.latency.time("ring_wait"):
                frame = ring.get()
            if frame is None:
                return
            yield frame

    def _progress(self, chain: StageChain, ring: RingBuffer,
                  ahead: FaceAhead) -> Callable[[Frame], None] | None:
        if self.progress is None:
            return None
        start = time.perf_counter()
        state = {"frames": 0, "next": start}

        def on_frame(_: Frame) -> None:
            state["frames"] += 1
            now = time.perf_counter()
            if now >= state["next"]:
                state["next"] = now + PROGRESS_EVERY_S
                self.progress({"frames": state["frames"],
                               "fps": state["frames"] / max(now - start, 1e-9),
                               "face": bool(chain.faces),
                               "dropped": ring.stats().dropped + ahead.dropped})
        return on_frame
