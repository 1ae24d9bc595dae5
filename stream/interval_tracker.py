"""IntervalTracker: candidates of successive hops → final events, plus provisional ones.

Every hop the detector decodes candidates (``engine.decode.Candidate``) for the
points it is responsible for, and the active head says, per frame, whether an
expression is under way. The tracker

* **merges** candidates of the same expression seen in successive hops (same
  kind and tIoU ≥ ``merge_iou``) and **suppresses duplicates across kinds**
  (tIoU ≥ ``cross_kind_iou``: one event, the kind with more score mass wins);
* **finalizes** an expression once the stream is past its offset plus the
  end-anchor margin of the level that saw it (no later point can add to it),
  and emits it exactly once as ``event`` with ``emitted_frame`` and
  ``latency_ms``; later candidates that overlap an emitted event are dropped
  (counted), and so is a pending one that, by the time it is due, duplicates an event
  emitted meanwhile from the active head (same kind and tIoU ≥ ``merge_iou``, or
  another kind and tIoU ≥ ``cross_kind_iou``: a face that left mid-expression);
* drives **provisional** events from the active head with hysteresis
  (``event_start`` once the probability holds ≥ ``on_thresh`` for
  ``on_frames``; ends once it stays < ``off_thresh`` for ``off_frames``; the
  head firing again with an onset within ``rejoin_frames`` of that end — it
  says the expression has been under way since then — continues the same
  provisional event, so a held expression whose readout dips gives one start);
  every ``event_start`` is later finalized into the ``event`` that overlaps it
  (same ``id``) or withdrawn with ``event_cancel`` — except an expression longer
  than the detector's window can hold (a 10 s smile), which only the active head
  sees whole, and (``hold_frames`` > 0) one the active head held firmly for that
  many frames: it becomes an ``event`` of its own when the active head lets go;
* **flushes** at end of stream: pending candidates are finalized, and an
  expression still under way is emitted with the last frame as offset and
  ``truncated: true``; the same when its face leaves for good (:meth:`face_left`),
  with the last frame the face was seen as offset.

One tracker per face track. Frame times come from a :class:`FrameTimes` the
pipeline fills (bounded).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.config import MICRO_MAX_S, ModelConfig, TrackerConfig
from engine.contracts import ActiveFrames, Candidate, Event, EventCancel, EventStart, Record
from engine.intervals import tiou


class FrameTimes:
    """Capture and arrival time of the last ``capacity`` frames (a ring indexed by frame)."""

    def __init__(self, fps: float, capacity: int = 8192) -> None:
        if not fps > 0 or capacity < 1:
            raise ValueError(f"need fps > 0 and capacity >= 1, got {fps!r}, {capacity!r}")
        self.fps, self.capacity = fps, capacity
        self._index = np.full(capacity, -1, np.int64)
        self._capture = np.zeros(capacity)
        self._arrival = np.zeros(capacity)
        self.t0: float | None = None  # capture time of the first frame

    def add(self, index: int, t_capture: float, t_arrival: float) -> None:
        if self.t0 is None:
            self.t0 = t_capture - index / self.fps
        slot = index % self.capacity
        self._index[slot], self._capture[slot], self._arrival[slot] = index, t_capture, t_arrival

    def seconds(self, index: int) -> float:
        """Stream time of ``index`` (capture time since the stream began), seconds."""
        slot = index % self.capacity
        if self._index[slot] == index and self.t0 is not None:
            return float(self._capture[slot] - self.t0)
        return index / self.fps  # fell out of the ring: nominal time

    def arrival(self, index: int) -> float | None:
        slot = index % self.capacity
        return float(self._arrival[slot]) if self._index[slot] == index else None


@dataclass
class _Pending:
    """An expression seen by one or more hops, not yet final."""

    onset: float
    offset: float
    weight: float  # sum of candidate scores merged in (bounds are score-weighted means)
    score: float  # best candidate score
    kind_mass: dict[str, float]
    emotion_mass: np.ndarray  # (E,) score-weighted emotion probabilities
    finalize_at: int  # last frame whose point could still see it; final once a hop covered it
    hits: int = 1

    @property
    def kind(self) -> str:
        return max(self.kind_mass, key=self.kind_mass.get)

    def interval(self) -> tuple[int, int]:
        onset = int(round(self.onset))
        return onset, max(onset, int(round(self.offset)))


@dataclass
class _Provisional:
    """An expression the active head says is under way (or was, awaiting its final event)."""

    id: int
    onset: int
    kind_mass: np.ndarray  # (K,) summed active probabilities
    emotion_mass: np.ndarray  # (E,)
    peak: float
    peak_frame: int
    ended_at: int | None = None  # frame where the active head let go
    held: int = 0  # frames the active head read >= on_thresh while it was under way


class IntervalTracker:
    """Turns per-hop candidates and active-head readouts into event records.

    Args:
        model: label sets, hop and end-anchor margins of the model.
        cfg: merge / hysteresis thresholds.
        times: frame times (filled by the pipeline).
        track_id: the face track this tracker follows.
        clock: monotonic clock used for ``latency_ms`` (injectable for tests).
    """

    def __init__(self, model: ModelConfig, cfg: TrackerConfig, times: FrameTimes,
                 track_id: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.model, self.cfg, self.times = model, cfg, times
        self.track_id, self.clock = track_id, clock
        self._pending: list[_Pending] = []
        # recent final events (onset, offset, kind): the duplicate guard
        self._emitted: list[tuple[int, int, str]] = []
        self._provisional: list[_Provisional] = []
        self._on_run = self._off_run = 0
        self._next_id = 0
        self.now = -1
        self.duplicates_dropped = 0

    # -- per hop ---------------------------------------------------------------------------
    def update(self, now: int, candidates: Sequence[Candidate] = (),
               active: ActiveFrames | None = None) -> list[Record]:
        """Feed one hop (``now`` = last frame processed); returns the records to emit."""
        if now < self.now:
            raise ValueError(f"frames must not go back: got now={now} after {self.now}")
        self.now = now
        records: list[Record] = []
        for cand in sorted(candidates, key=lambda c: -c.score):
            self._add(cand)
        if active is not None:
            records += self._update_active(active)
        records += self._finalize(lambda p: now >= p.finalize_at)
        records += self._cancel_stale()
        return records

    def flush(self, last_frame: int) -> list[Record]:
        """End of stream: finalize everything, emit an expression under way as truncated."""
        self.now = max(self.now, last_frame)
        records = self._finalize(lambda p: True)
        for prov in list(self._provisional):
            if prov.ended_at is None:  # still under way: the stream cut it
                self._provisional.remove(prov)
                records.append(self._emit_from_active(prov, last_frame, truncated=True))
            else:
                records.append(self._close_ended(prov))
        return records

    def face_left(self, last_seen: int) -> list[Record]:
        """The face was last seen at ``last_seen`` and is gone for good (its track ended).

        An expression under way then — or one whose active head let go only after
        the face left — is emitted now as ``truncated`` with the onset that was
        seen and ``last_seen`` as offset, instead of being withdrawn for want of
        an end-anchored candidate (the detector never saw its offset).
        """
        records: list[Record] = []
        for prov in list(self._provisional):
            if prov.ended_at is None or prov.ended_at >= last_seen - self.cfg.off_frames:
                self._provisional.remove(prov)
                records.append(self._emit_from_active(prov, max(last_seen, prov.onset),
                                                      truncated=True))
        return records

    # -- candidates --------------------------------------------------------------------------
    def _add(self, cand: Candidate) -> None:
        span = (cand.onset_frame, cand.offset_frame)
        if any(tiou(*span, on, off) >= self.cfg.merge_iou for on, off, _ in self._emitted):
            self.duplicates_dropped += 1
            return
        emo = np.array([cand.emotion_scores.get(e, 0.0) for e in self.model.emotions])
        # End-anchored: only points in [offset, offset + margin] of its level see it, so
        # once a hop has covered that frame nothing can add to it (emission delay ≤ margin + hop).
        finalize_at = cand.offset_frame + self.model.level_margin(cand.level)
        best, best_iou = None, 0.0
        for p in self._pending:
            need = self.cfg.merge_iou if p.kind == cand.kind else self.cfg.cross_kind_iou
            iou = tiou(*span, p.onset, p.offset)
            if iou >= need and iou > best_iou:
                best, best_iou = p, iou
        if best is None:
            self._pending.append(_Pending(cand.onset_frame, cand.offset_frame, cand.score,
                                          cand.score, {cand.kind: cand.score}, emo * cand.score,
                                          finalize_at))
            return
        w = best.weight + cand.score
        best.onset = (best.onset * best.weight + cand.onset_frame * cand.score) / w
        best.offset = (best.offset * best.weight + cand.offset_frame * cand.score) / w
        best.weight, best.score, best.hits = w, max(best.score, cand.score), best.hits + 1
        best.kind_mass[cand.kind] = best.kind_mass.get(cand.kind, 0.0) + cand.score
        best.emotion_mass = best.emotion_mass + emo * cand.score
        best.finalize_at = max(best.finalize_at, finalize_at)

    def _finalize(self, due: Callable[[_Pending], bool]) -> list[Record]:
        ready = sorted((p for p in self._pending if due(p)), key=lambda p: p.interval()[::-1])
        records = []
        for p in ready:
            self._pending.remove(p)
            onset, offset = p.interval()
            if any(tiou(onset, offset, on, off) >= (self.cfg.merge_iou if kind == p.kind
                                                     else self.cfg.cross_kind_iou)
                   for on, off, kind in self._emitted):
                # the same expression, emitted meanwhile from the active head (the face left,
                # or a long one): each candidate was checked when it came, but the merged
                # span moves, and the active head's event may come after the candidates
                # (the thresholds of merging pending ones: a micro inside a macro is not one)
                self.duplicates_dropped += 1
                continue
            prov = self._match_provisional(onset, offset)
            apex = None
            if prov is not None:  # the provisional it confirms: same id; long ones keep its onset
                self._provisional.remove(prov)
                # the active head's kind is a guess: across kinds, the onset it saw may at
                # most double the candidate (a micro does not take a long macro's onset)
                same_kind = self.model.kinds[int(np.argmax(prov.kind_mass))] == p.kind
                if same_kind and self.cfg.onset == "active" and prov.onset <= offset:
                    onset = prov.onset
                elif same_kind or onset - prov.onset <= offset - onset + 1:
                    onset = min(onset, prov.onset)
                apex = min(max(prov.peak_frame, onset), offset)
            onset = self._after_previous(onset, offset,
                                         seen=None if prov is None else prov.onset)
            if apex is not None:
                apex = max(apex, onset)
            emotion_scores = p.emotion_mass / max(p.emotion_mass.sum(), 1e-9)
            id_ = prov.id if prov is not None else self._new_id()
            records.append(self._event(onset, offset, p.kind, emotion_scores, p.score, id_,
                                       apex=apex))
            self._remember(onset, offset, p.kind)
        return records

    def _after_previous(self, onset: int, offset: int, seen: int | None = None) -> int:
        """``onset``, moved out of an earlier final event that it reaches back into.

        A regressed onset can stretch back over a short pause into the expression before
        (a smile repeated every 2 s), making one event of the end of one and the whole of the
        next. An event that outlasts an emitted one and begins inside it starts where the
        active head saw it start (``seen``, the provisional's onset) when that lies after the
        emitted event, else the frame after it (``TrackerConfig.onset_after_previous``). An
        event nested in an emitted one (a micro inside a macro) is not moved.
        """
        if not self.cfg.onset_after_previous:
            return onset
        for done_on, done_off, _ in self._emitted:
            if done_on < onset <= done_off < offset:
                onset = seen if seen is not None and done_off < seen <= offset else done_off + 1
        return onset

    def _remember(self, onset: int, offset: int, kind: str) -> None:
        self._emitted.append((onset, offset, kind))
        horizon = self.now - self.model.window
        self._emitted = [iv for iv in self._emitted if iv[1] >= horizon]

    # -- provisional events -----------------------------------------------------------------
    def _update_active(self, active: ActiveFrames) -> list[Record]:
        records = []
        for i, frame in enumerate(active.frames.tolist()):
            probs = active.kind_probs[i]
            p = float(probs.max())
            current = next((q for q in self._provisional if q.ended_at is None), None)
            if current is None:
                self._on_run = self._on_run + 1 if p >= self.cfg.on_thresh else 0
                if self._on_run >= self.cfg.on_frames:
                    onset = max(0, int(round(frame - float(active.since[i]))))
                    self._on_run = self._off_run = 0
                    last = max(self._provisional, key=lambda q: q.ended_at, default=None)
                    if last is not None and onset <= last.ended_at + self.cfg.rejoin_frames:
                        last.ended_at = None  # the same expression goes on: no new start
                        continue
                    prov = _Provisional(self._new_id(), onset, probs.copy(),
                                        active.emotion_probs[i].copy(), p, frame)
                    self._provisional.append(prov)
                    records.append(self._provisional_record(prov, frame))
            else:
                current.kind_mass = current.kind_mass + probs
                current.emotion_mass = current.emotion_mass + active.emotion_probs[i]
                current.held += int(p >= self.cfg.on_thresh)
                if p > current.peak:
                    current.peak, current.peak_frame = p, frame
                self._off_run = self._off_run + 1 if p < self.cfg.off_thresh else 0
                if self._off_run >= self.cfg.off_frames:
                    current.ended_at = frame
                    self._off_run = 0
        return records

    def _match_provisional(self, onset: int, offset: int) -> _Provisional | None:
        best, best_overlap = None, 0
        for prov in self._provisional:
            end = prov.ended_at if prov.ended_at is not None else self.now
            overlap = min(end, offset) - max(prov.onset, onset) + 1
            if overlap > best_overlap:
                best, best_overlap = prov, overlap
        return best

    def _cancel_stale(self) -> list[Record]:
        """Provisionals that ended and got no final event in time: emitted from the active
        head when longer than the end-anchored heads can see (:meth:`_too_long`), else
        withdrawn."""
        patience = self.model.level_margin(self.model.levels - 1) + 2 * self.model.hop
        stale = [p for p in self._provisional
                 if p.ended_at is not None and self.now > p.ended_at + patience
                 and not any(tiou(p.onset, p.ended_at, q.onset, q.offset) > 0
                             for q in self._pending)]
        return [self._close_ended(p) for p in stale]

    def _too_long(self, prov: _Provisional) -> bool:
        """No window holds both its onset and its end anchor: only the active head saw it."""
        reach = self.model.window - self.model.level_margin(self.model.levels - 1)
        return prov.ended_at is not None and prov.ended_at - prov.onset + 1 > reach

    def _held(self, prov: _Provisional) -> bool:
        """The active head held it long enough to stand on its own (``hold_frames``)."""
        return 0 < self.cfg.hold_frames <= prov.held

    def _close_ended(self, prov: _Provisional) -> Event | EventCancel:
        if self._too_long(prov) or self._held(prov):
            self._provisional.remove(prov)
            return self._emit_from_active(prov, prov.ended_at, truncated=False)
        return self._cancel(prov)

    def _cancel(self, prov: _Provisional) -> EventCancel:
        self._provisional.remove(prov)
        return EventCancel(prov.id, self.track_id, self.now)

    def _provisional_record(self, prov: _Provisional, frame: int) -> EventStart:
        emo = prov.emotion_mass / max(prov.emotion_mass.sum(), 1e-9)
        kind = self.model.kinds[int(np.argmax(prov.kind_mass))]
        return self._event(prov.onset, max(prov.onset, frame), kind, emo, prov.peak, prov.id,
                           cls=EventStart)

    def _emit_from_active(self, prov: _Provisional, offset: int, truncated: bool) -> Event:
        """A final event built from the active head alone (long, or cut by the stream end)."""
        emo = prov.emotion_mass / max(prov.emotion_mass.sum(), 1e-9)
        kind = self.model.kinds[int(np.argmax(prov.kind_mass))]
        event = self._event(prov.onset, max(prov.onset, offset), kind, emo, prov.peak,
                            prov.id, apex=prov.peak_frame, truncated=truncated)
        self._remember(event.onset_frame, event.offset_frame, event.kind)
        return event

    # -- helpers ----------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _event(self, onset: int, offset: int, kind: str, emotion_scores: np.ndarray, score: float,
               id_: int, apex: int | None = None, truncated: bool = False,
               cls: type[Event] | type[EventStart] = Event) -> Event | EventStart:
        """An interval record; a provisional one (``EventStart``) has no latency yet."""
        arrival = self.times.arrival(offset) if cls is Event else None
        if (cls is Event and kind == "micro" and self.cfg.kind_from_duration
                and offset - onset + 1 > MICRO_MAX_S * self.times.fps):
            kind = "macro"  # too long to be a micro-expression
        latency_ms = (self.clock() - arrival) * 1e3 if arrival is not None else 0.0
        emotions = self.model.emotions
        return cls(onset_frame=onset, apex_frame=apex if apex is not None else (onset + offset) // 2,
                   offset_frame=offset, onset_s=round(self.times.seconds(onset), 4),
                   offset_s=round(self.times.seconds(offset), 4), kind=kind,
                   emotion=emotions[int(np.argmax(emotion_scores))],
                   emotion_scores={e: round(float(v), 4) for e, v in zip(emotions, emotion_scores)},
                   score=round(float(score), 4), emitted_frame=self.now,
                   latency_ms=round(latency_ms, 2), track_id=self.track_id, truncated=truncated,
                   id=id_)
