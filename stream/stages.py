"""The per-frame stage chain after the ring: face → flow → spotter (engine + tracker).

Synchronous and thread-free, so the threaded :class:`~stream.pipeline.Pipeline`
and the notebook API (:mod:`stream.api`) run exactly the same code on every
frame. Stages that are not available are skipped (see
:func:`stream.pipeline.missing_stages`); nothing is invented in their place.
"""
from __future__ import annotations

import time
from typing import Callable

from engine.config import StreamConfig, TrackerConfig
from stream.contracts import Frame
from stream.events import status_record
from stream.latency import LatencyStats


class StageChain:
    """Face tracking, flow and spotting for one stream.

    Args:
        cfg: stream settings.
        fps: the source's frame rate.
        missing: stages to skip (names from ``stream.pipeline.STAGE_MODULES``).
        engine: ``--engine`` choice, used when ``loaded_engine`` is None.
        loaded_engine: an ``engine.runtime.Engine`` (or compatible) to use as is.
        tracker_cfg: interval-tracker thresholds.
        latency: per-stage timings go here.
        log: where the engine's status line goes.
    """

    def __init__(self, cfg: StreamConfig, fps: float, missing: list[str], engine: str = "auto",
                 loaded_engine=None, tracker_cfg: TrackerConfig = TrackerConfig(),
                 latency: LatencyStats | None = None,
                 log: Callable[[str], None] = print) -> None:
        self.cfg, self.latency = cfg, latency or LatencyStats()
        self.face = self.flow = self.spotter = None
        self._owned_engine = None  # an engine this chain loaded (and so closes)
        self.engine_name = engine
        self.frames_with_face = 0
        self.face_visible = False  # a face was visible in the last frame
        self._first = True
        if "face" not in missing:
            from stream.face import FaceTracker
            self.face = FaceTracker(cfg)
        if "flow" not in missing and self.face is not None:
            from stream.flow import FlowStage
            self.flow = FlowStage(cfg)
        if self.flow is None:
            return
        if loaded_engine is None and "engine" not in missing:
            from engine.runtime import Engine
            loaded_engine = self._owned_engine = Engine.load(engine, log=log)
        if loaded_engine is not None:
            from stream.spotter import Spotter
            self.engine_name = getattr(loaded_engine, "name", engine)
            self.spotter = Spotter(loaded_engine, loaded_engine.cfg, fps, cfg.flow_size,
                                   tracker_cfg, latency=self.latency)

    def process(self, frame: Frame) -> list[dict]:
        """Run every available stage on one frame; returns the records it produced."""
        if self.face is None:
            return []
        records: list[dict] = []
        t0 = time.perf_counter()
        update = self.face.update(frame)
        t1 = time.perf_counter()
        self.latency.add("face", (t1 - t0) * 1e3)
        if update.status is not None:  # "found" / "lost" transitions
            records.append(status_record(f"face_{update.status}", frame.index,
                                         t_s=round(frame.t_capture, 3)))
        elif self._first and not update.found:  # a stream that starts without a face says so
            records.append(status_record("no_face", frame.index, t_s=round(frame.t_capture, 3)))
        self._first = False
        self.face_visible = update.found
        if update.found:
            self.frames_with_face += 1
        if self.flow is None:
            return records
        flows = {face.track_id: self.flow.update(face, frame.index, frame.t_capture)
                 for face in update.faces}
        self.latency.add("flow", (time.perf_counter() - t1) * 1e3)
        if self.spotter is not None:
            self.spotter.note_frame(frame.index, frame.t_capture, frame.t_arrival)
            records += self.spotter.update(flows, frame.index)
        return records

    def finish(self) -> list[dict]:
        """End of stream: what the trackers still hold (truncated expressions included)."""
        return self.spotter.flush() if self.spotter is not None else []

    def close(self) -> None:
        if self.face is not None:
            self.face.close()
        if self._owned_engine is not None:
            self._owned_engine.close()
            self._owned_engine = None
