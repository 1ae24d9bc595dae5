"""Per-face spotting: flow frames of one face track → detector schedule → interval tracker.

:class:`Spotter` keeps one :class:`~engine.streaming.StreamingDetector` and one
:class:`~stream.tracker.IntervalTracker` per face track (design §1: "one tracker
per face track"). A track that has been out of sight for a whole window is
flushed and forgotten.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engine.config import ModelConfig, TrackerConfig
from engine.streaming import EngineLike, StreamingDetector
from stream.contracts import FlowFrame
from stream.latency import LatencyStats
from stream.tracker import FrameTimes, IntervalTracker


@dataclass
class _Track:
    detector: StreamingDetector
    tracker: IntervalTracker
    last_seen: int


class Spotter:
    """Runs the engine on every tracked face and turns its outputs into event records.

    Args:
        engine: encoder / detector calls (``engine.runtime.Engine``).
        model: the loaded model's config (window, hop, labels, margins).
        fps: nominal frame rate (stream seconds when a frame time is unknown).
        flow_size: S', side of the flow maps (for the "no face" frames of absent tracks).
        tracker_cfg: interval-tracker thresholds.
        latency: per-stage timings go here (``encoder``, ``detector``, ``tracker``).
    """

    def __init__(self, engine: EngineLike, model: ModelConfig, fps: float, flow_size: int,
                 tracker_cfg: TrackerConfig = TrackerConfig(),
                 latency: LatencyStats | None = None) -> None:
        self.engine, self.model, self.tracker_cfg = engine, model, tracker_cfg
        self.times = FrameTimes(fps)
        self.latency = latency or LatencyStats()
        self._tracks: dict[int, _Track] = {}
        self._no_face = np.zeros((3, flow_size, flow_size), np.float16)
        self.last_frame = -1

    def note_frame(self, index: int, t_capture: float, t_arrival: float) -> None:
        """Record a frame's times (call once per frame, before :meth:`update`)."""
        self.times.add(index, t_capture, t_arrival)
        self.last_frame = index

    def update(self, flows: dict[int, FlowFrame], index: int) -> list[dict]:
        """One frame: ``flows`` maps each visible track id to its flow frame."""
        records: list[dict] = []
        for track_id, flow in flows.items():
            if track_id not in self._tracks:
                self._tracks[track_id] = _Track(
                    StreamingDetector(self.engine, self.model),
                    IntervalTracker(self.model, self.tracker_cfg, self.times, track_id), index)
            self._tracks[track_id].last_seen = index
        for track_id, track in list(self._tracks.items()):
            flow = flows.get(track_id)
            if flow is None:  # out of sight: the model sees "no face" for this track
                if index - track.last_seen > self.model.window:
                    records += self._drop(track_id, index)
                    continue
                flow = FlowFrame(index, self.times.seconds(index), self._no_face, False, track_id)
            records += self._push(track, flow)
        return records

    def flush(self) -> list[dict]:
        """End of stream: every tracker finalizes what it holds."""
        records: list[dict] = []
        for track_id in list(self._tracks):
            records += self._drop(track_id, self.last_frame)
        return records

    def _push(self, track: _Track, flow: FlowFrame) -> list[dict]:
        hop = track.detector.push(flow)
        self.latency.add("encoder", track.detector.encode_ms)
        if hop is None:
            return []
        self.latency.add("detector", hop.detect_ms)
        t0 = time.perf_counter()
        records = track.tracker.update(hop.frame, hop.candidates, hop.active)
        self.latency.add("tracker", (time.perf_counter() - t0) * 1e3)
        return records

    def _drop(self, track_id: int, last_frame: int) -> list[dict]:
        track = self._tracks.pop(track_id)
        records: list[dict] = []
        hop = track.detector.flush()  # the last partial hop's real frames
        if hop is not None:
            records += track.tracker.update(hop.frame, hop.candidates, hop.active)
        return records + track.tracker.flush(max(last_frame, track.tracker.now))
