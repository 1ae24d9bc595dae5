"""Per-face spotting: flow frames of each face track → detector schedule → interval tracker
→ appearance hold → continuations.

:class:`Spotter` keeps one :class:`~engine.streaming.StreamingDetector` and one
:class:`~stream.interval_tracker.IntervalTracker` per face track (design §1: "one tracker
per face track"). A track that has been out of sight for a whole window is
flushed and forgotten. The chain (:mod:`stream.chain`) calls it once per frame;
training's streaming evaluation calls it on cached flow frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.config import ModelConfig, TrackerConfig
from engine.contracts import EVENT_COUNTS, Event, EventCancel, EventStart, FlowFrame, Record
from engine.streaming import EngineLike, HopResult, StreamingDetector, detect_due
from stream.appearance import baseline_delta_of, probs_of
from stream.appearance_hold import AppearanceHold
from stream.continuations import Continuations
from stream.events import record_type
from stream.latency import LatencyStats
from stream.interval_tracker import FrameTimes, IntervalTracker


@dataclass(frozen=True)
class FrameScores:
    """The latest active-head readout of one face (what an overlay draws).

    Attributes:
        frame: stream index the readout belongs to.
        kind_probs: (K,) probability an expression of each kind is under way.
        emotion_probs: (E,) softmax over emotions.
    """

    frame: int
    kind_probs: np.ndarray
    emotion_probs: np.ndarray


@dataclass
class _Track:
    detector: StreamingDetector
    tracker: IntervalTracker
    hold: AppearanceHold  # after the tracker: events held while the face shows them
    join: Continuations  # last: an event that resumes one emitted is not emitted again
    last_seen: int
    left: bool = False  # gone longer than the face tracker keeps an id: face_left was called


class Spotter:
    """Runs the engine on every tracked face and turns its outputs into event records.

    Args:
        engine: encoder / detector calls (``engine.runtime.Engine``).
        fps: nominal frame rate (stream seconds when a frame time is unknown).
        flow_size: S', side of the flow maps (for the "no face" frames of absent tracks).
        tracker_cfg: interval-tracker thresholds.
        latency: per-stage timings go here (``encoder``, ``detector``, ``tracker``).
        leave_after: frames a track may be out of sight and still come back (the face
            tracker's ``track_keep_s``); after that its face has left and an expression
            under way is emitted as truncated. None: tracks never leave before the end.
    """

    def __init__(self, engine: EngineLike, fps: float, flow_size: int,
                 tracker_cfg: TrackerConfig = TrackerConfig(),
                 latency: LatencyStats | None = None, leave_after: int | None = None) -> None:
        if leave_after is not None and leave_after < 1:
            raise ValueError(f"Spotter: leave_after must be >= 1 frame, got {leave_after}")
        self.engine, self.tracker_cfg, self.leave_after = engine, tracker_cfg, leave_after
        self.model: ModelConfig = engine.cfg
        self.times = FrameTimes(fps)
        self.latency = latency or LatencyStats()
        self.scores: dict[int, FrameScores] = {}  # track id -> latest active-head readout
        self._tracks: dict[int, _Track] = {}
        self._no_face = np.zeros((3, flow_size, flow_size), np.float16)
        self._no_appearance = np.zeros(self.appearance_dim, np.float32)
        self._appearance: dict[int, np.ndarray] = {}  # this frame's, track id -> (A,)
        self.last_frame = -1
        self._counts = dict.fromkeys(EVENT_COUNTS, 0)  # of records out, and of gone holds

    @property
    def event_counts(self) -> dict[str, int]:
        """What the run's events came to so far (keys :data:`EVENT_COUNTS`):
        ``event_start`` / ``event`` / ``event_cancel`` records emitted, final events
        ``truncated``, events ``held`` past the detector's offset by the appearance hold, the
        tracker's records it ``absorbed`` into a hold, and final events its appearance check
        withdrew (``appearance_withdrawn``) and starts it held back that never went out
        (``appearance_withheld``), and final events that continued one already emitted
        (``joined``)."""
        counts = dict(self._counts)
        for track in self._tracks.values():
            _add(counts, _stage_counts(track))
        return counts

    def _count(self, records: list[Record]) -> list[Record]:
        for r in records:
            if isinstance(r, (Event, EventStart, EventCancel)):
                self._counts[record_type(r)] += 1
                self._counts["truncated"] += int(isinstance(r, Event) and r.truncated)
        return records

    @property
    def appearance_dim(self) -> int:
        """Width of the appearance input the model reads per face (0: flow only)."""
        return getattr(self.model, "appearance_dim", 0)

    def update(self, index: int, t_capture: float, t_arrival: float,
               flows: dict[int, FlowFrame],
               appearance: dict[int, np.ndarray] | None = None) -> list[Record]:
        """One frame: its times, the flow frame of each visible track id, and each visible
        track's (APPEARANCE_DIM,) appearance input (``AppearanceFrame.model_input``) when the
        chain runs the appearance stage: a model with appearance fusion reads it (and then
        needs it for every face), the appearance hold (``stream/appearance_hold.py``) holds
        events on it.

        The faces of the frame (and the "no face" frames of tracks out of sight) go
        through the encoder in one batch; the tracks whose hop falls due on this frame
        then go through the detector in one batch (:func:`engine.streaming.detect_due`).
        """
        if self.appearance_dim:
            missing = sorted(set(flows) - set(appearance or {}))
            if missing:
                raise ValueError(f"Spotter.update: the model fuses appearance but tracks "
                                 f"{missing} of frame {index} have none; run the chain's "
                                 "appearance stage on every face")
        self._appearance = appearance or {}
        self.times.add(index, t_capture, t_arrival)
        self.last_frame = index
        records: list[Record] = []
        for track_id in flows:
            if track_id not in self._tracks:
                self._tracks[track_id] = _Track(
                    StreamingDetector(self.engine, self.model),
                    IntervalTracker(self.model, self.tracker_cfg, self.times, track_id),
                    AppearanceHold(self.model, self.tracker_cfg, self.times, track_id),
                    Continuations(self.model, self.tracker_cfg, track_id), index)
            track = self._tracks[track_id]
            track.last_seen, track.left = index, False
            if track_id in self._appearance:
                app = self._appearance[track_id]
                track.hold.observe(index, probs_of(app), baseline_delta_of(app))
        due: list[tuple[int, _Track, FlowFrame]] = []
        for track_id, track in list(self._tracks.items()):
            flow = flows.get(track_id)
            if flow is None:  # out of sight: the model sees "no face" for this track
                if index - track.last_seen > self.model.window:
                    records += self._drop(track_id, index)
                    continue
                flow = FlowFrame(index, self.times.seconds(index), self._no_face, False, track_id)
            due.append((track_id, track, flow))
        hops = self._detect(due, self._encode(due))
        for track_id, track, flow in due:
            if track_id in hops:  # "tracker": per hop, as before the hold
                with self.latency.time("tracker"):
                    records += track.join(index, track.hold.step(
                        index, self._track_hop(track_id, track, hops[track_id])))
            else:  # only a hold's release can fall on this frame
                records += track.join(index, track.hold.step(index))
            if flow.valid or track.left or self.leave_after is None:
                continue
            if index - track.last_seen >= self.leave_after:  # the face has left for good
                track.left = True
                records += track.join(index, track.hold.finish(
                    track.last_seen, track.tracker.face_left(track.last_seen)))
        return self._count(records)

    def finish(self) -> list[Record]:
        """End of stream: every tracker finalizes what it holds."""
        records: list[Record] = []
        for track_id in list(self._tracks):
            records += self._drop(track_id, self.last_frame)
        return self._count(records)

    def _encode(self, due: list[tuple[int, _Track, FlowFrame]]) -> np.ndarray:
        """(n, F) features of this frame's tracks: one encoder call for all faces."""
        if not due:
            return np.zeros((0, 0), np.float32)
        with self.latency.time("encoder"):
            batch = np.stack([track.detector.prepare(flow)
                              for _, track, flow in due])  # n × (3, S, S) -> (n, 3, S, S)
            valid = np.array([float(flow.valid) for _, _, flow in due], np.float32)  # (n,)
            if not self.appearance_dim:
                return self.engine.encode(batch, valid)
            # a track out of sight reads zeros (its valid = 0 masks them anyway)
            app = np.stack([self._appearance.get(track_id, self._no_appearance)
                            for track_id, _, _ in due])  # n × (A,) -> (n, A)
            return self.engine.encode(batch, valid, app)

    def _detect(self, due: list[tuple[int, _Track, FlowFrame]], features: np.ndarray
                ) -> dict[int, HopResult]:
        """Push each track's frame; the tracks whose hop fell due detect in one batched call.

        Returns track id → its hop, for those tracks only.
        """
        ready = [(track_id, track) for (track_id, track, flow), feature in zip(due, features)
                 if track.detector.push(flow, feature)]
        hops = detect_due([track.detector for _, track in ready])
        for hop in hops:
            self.latency.add("detector", hop.detect_ms)
        return {track_id: hop for (track_id, _), hop in zip(ready, hops)}

    def _track_hop(self, track_id: int, track: _Track, hop: HopResult) -> list[Record]:
        active = hop.active
        if len(active.frames):
            self.scores[track_id] = FrameScores(int(active.frames[-1]), active.kind_probs[-1],
                                                active.emotion_probs[-1])
        return track.tracker.update(hop.frame, hop.candidates, active)

    def _drop(self, track_id: int, last_frame: int) -> list[Record]:
        track = self._tracks.pop(track_id)
        records: list[Record] = []
        hop = track.detector.finish()  # the last partial hop's real frames
        if hop is not None:
            records += self._track_hop(track_id, track, hop)
        self.scores.pop(track_id, None)
        records += track.tracker.flush(max(last_frame, track.tracker.now))
        last = max(last_frame, track.tracker.now)
        records = track.join(last, track.hold.finish(last, records))
        _add(self._counts, _stage_counts(track))  # the track is gone: keep what it did
        return records


def _stage_counts(track: _Track) -> dict[str, int]:
    """What a track's hold and continuation stages did (keys of :data:`EVENT_COUNTS`)."""
    return {**track.hold.counts, "joined": track.join.joined}


def _add(counts: dict[str, int], more: dict[str, int]) -> None:
    """``counts`` += ``more``, key by key (in place)."""
    for name, n in more.items():
        counts[name] += n
