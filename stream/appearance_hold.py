"""AppearanceHold: a held expression stays one event until the face lets it go (issue 15).

The detector sees motion: an expression's onset burst and its release burst. A laugh
held for eight seconds has no motion between them that says "still laughing", so the
interval heads end the event about a second in (real clip ``WolfgangLanger_Pexels``:
242–278 of a laugh that runs 240–471). The appearance stage (``stream/appearance.py``)
reads the expression itself on every frame, relative to the track's resting baseline,
and a held laugh reads happy on every frame of it. This stage sits after one track's
interval tracker and

* **holds** a final macro event of emotion *e* (positive, negative or surprise) that the
  appearance stage read as *e*: the mean over the event of the baseline delta of *e*'s fer
  classes (:data:`stream.appearance.FER_GROUPS`) rises at least ``TrackerConfig.appearance_on``
  above the face's *rest level* — the median delta of *e* in the
  ``appearance_rest_frames`` before the onset (a face whose baseline is off reads a
  resting +0.2; a hold measured from 0 would never end on it). The event stays open while
  the face still shows *e* after the event's offset — the delta at least rest level +
  ``appearance_release`` × (the event's mean − rest level): a release measured against the
  expression's own strength, since a synthetic face's reads wander ±0.1 around its rest
  and a real laugh dips while the head moves — and is emitted once the delta has stayed
  below that for ``appearance_gap_frames`` frames in a row, with the last frame at or
  above it as its offset; at the end of the stream, or when the face leaves, while still
  shown, it is emitted ``truncated``. Its ``event_start``
  (same ``id``), if it had one, stays the one start; one it did not have is sent when the
  hold begins;
* **absorbs** what the tracker makes of the same expression meanwhile: an
  ``event_start`` whose onset falls inside an open hold is not passed on (nor its
  ``event_cancel``), and a final event of the hold's emotion that overlaps the part the
  detector saw is folded into it (its offset extends the hold's) — when its
  ``event_start`` had already gone out, it is withdrawn with ``event_cancel``;
* **ends a hold at a new expression**: a final event of the hold's emotion that begins
  after the detector's part of the hold is a second expression (repeats come back to back,
  0.5 s apart): the hold ends the frame before it, and the new event goes on by these rules.
  A final event of another emotion passes.

* **checks** (``TrackerConfig.appearance_check`` > 0) a final macro event of an emotion in
  :data:`CHECKED_EMOTIONS` that no hold took: when the face had room to show it (the
  emotion's fer probability at rest, the median over the rest frames, at most
  ``appearance_room``) and its mean delta over the event rose less than
  ``appearance_check`` above the rest level, the detector saw motion the face does not
  read as that emotion (a talking mouth taken for a smile), and the event is withdrawn
  — ``event_cancel`` when its ``event_start`` went out; counted in ``withdrawn``
  (the run summary's ``appearance_withdrawn``). By the same rule over the frames from its
  onset to now, an ``event_start`` of such an event is **held back** until the face reads
  the emotion (then it goes out, late) or its final event or withdrawal comes: a crying
  face read as "positive" by the motion model gets no start to withdraw (counted in
  ``withheld`` when it never goes out: the summary's ``appearance_withheld``).

Micro events pass untouched (still emitted ≤ 0.5 s after their offset), and so does
every record while the track has no appearance reading (a flow-only run of the chain):
frames without a reading count as "not shown".
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import numpy as np

from engine.config import ModelConfig, TrackerConfig
from engine.contracts import Event, EventCancel, EventStart, Record
from stream.appearance import FER_GROUPS, group_probs
from stream.interval_tracker import FrameTimes

#: Emotions whose final macro events the appearance check withdraws when the face does not
#: read them: fer's happy is its surest class on real faces (a held smile reads 0.92–0.95,
#: a laugh happy on 92 % of frames); its negative and surprise reads of synthetic faces are
#: too weak to overrule the detector on (training/synth/README.md, "Realism").
CHECKED_EMOTIONS: tuple[str, ...] = ("positive",)


class _Evidence:
    """Per frame, the baseline delta of each emotion's classes (E,); NaN: no reading.

    A ring over the last ``capacity`` frames (longer than any hold needs to look back:
    an event's frames and the frames since its offset).
    """

    def __init__(self, emotions: int, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._index = np.full(capacity, -1, np.int64)
        self._value = np.full((capacity, emotions), np.nan, np.float32)
        self.any = False  # a reading was ever given

    def add(self, frame: int, value: np.ndarray) -> None:
        slot = frame % self.capacity
        self._index[slot], self._value[slot] = frame, value
        self.any = True

    def of(self, frame: int, emotion: int) -> float:
        slot = frame % self.capacity
        return float(self._value[slot, emotion]) if self._index[slot] == frame else float("nan")

    def mean(self, first: int, last: int, emotion: int) -> float:
        """Mean over the frames of [first, last] that have a reading; NaN if none does."""
        vals = self._values(first, last, emotion)
        return float(np.mean(vals)) if vals else float("nan")

    def median(self, first: int, last: int, emotion: int) -> float:
        """Median over the frames of [first, last] that have a reading; NaN if none does."""
        vals = self._values(first, last, emotion)
        return float(np.median(vals)) if vals else float("nan")

    def _values(self, first: int, last: int, emotion: int) -> list[float]:
        return [v for f in range(first, last + 1) if not np.isnan(v := self.of(f, emotion))]


@dataclass
class _Hold:
    event: Event  # the event as the tracker made it (onset, kind, emotion, id)
    emotion: int  # index into ModelConfig.emotions
    shown: float  # delta at or above which the face still shows it
    offset: int  # end of the detector's part (its event, and absorbed ones)
    last_on: int  # last frame whose delta was >= shown
    scanned: int  # frames up to this one have been looked at


class AppearanceHold:
    """One face track's hold stage (rules in the module docstring).

    Args:
        model: label sets of the model (emotion order of the events).
        cfg: ``appearance_hold``, ``_on``, ``_release``, ``_gap_frames``, ``_rest_frames``.
        times: frame times (the tracker's: latency of a held event's offset).
        track_id: the track.
        clock: monotonic clock for ``latency_ms`` (injectable for tests).
    """

    def __init__(self, model: ModelConfig, cfg: TrackerConfig, times: FrameTimes,
                 track_id: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.model, self.cfg, self.times = model, cfg, times
        self.track_id, self.clock = track_id, clock
        self._held_emotions = {i for i, e in enumerate(model.emotions) if e in FER_GROUPS}
        self._checked = {i for i, e in enumerate(model.emotions) if e in CHECKED_EMOTIONS}
        self._evidence = _Evidence(len(model.emotions))  # baseline deltas
        self._level = _Evidence(len(model.emotions))  # probabilities
        self._holds: list[_Hold] = []
        self._published: set[int] = set()  # ids whose event_start went out (and are open)
        self._swallowed: set[int] = set()  # ids whose event_start was absorbed
        self.now = -1
        self.held = 0  # events that were held past the detector's offset
        self.absorbed = 0  # records folded into a hold (starts, cancels, events)
        self.withdrawn = 0  # final events the appearance check withdrew
        self.withheld = 0  # starts it held back that never went out
        self._withheld: dict[int, EventStart] = {}  # id -> a start held back, still open

    @property
    def counts(self) -> dict[str, int]:
        """What this stage did, under the names of :attr:`engine.contracts.Summary.events`."""
        return {"held": self.held, "absorbed": self.absorbed,
                "appearance_withdrawn": self.withdrawn, "appearance_withheld": self.withheld}

    def observe(self, frame: int, probs: np.ndarray, baseline_delta: np.ndarray) -> None:
        """The appearance reading of this track's face in ``frame``: the (7,) ``probs`` and
        ``baseline_delta`` of :class:`~stream.appearance.AppearanceFrame`."""
        names = self.model.emotions
        self._evidence.add(frame, group_probs(np.asarray(baseline_delta, np.float32), names))
        self._level.add(frame, group_probs(np.asarray(probs, np.float32), names))

    def step(self, now: int, records: Sequence[Record] = ()) -> list[Record]:
        """The tracker's records of frame ``now`` in; what to emit out (holds released)."""
        if not self.cfg.appearance_hold:
            return list(records)
        out = self._take(now, records, final=False)
        for start in list(self._withheld.values()):  # the face may read it by now
            if not self._not_read(start, self.model.emotions.index(start.emotion), self.now):
                del self._withheld[start.id]
                self._published.add(start.id)
                out.append(replace(start, emitted_frame=self.now))
        for hold in list(self._holds):
            self._advance(hold)
            if self.now - hold.last_on >= self.cfg.appearance_gap_frames:
                out.append(self._release(hold, truncated=False))
        return out

    def finish(self, last_frame: int, records: Sequence[Record] = ()) -> list[Record]:
        """End of the stream, or the face left (``last_frame``: the last frame it was seen):
        the tracker's last records in, every hold out (``truncated`` if still shown)."""
        if not self.cfg.appearance_hold:
            return list(records)
        out = self._take(last_frame, records, final=True)
        self.withheld += len(self._withheld)  # (the tracker's flush closes them all)
        self._withheld.clear()
        for hold in list(self._holds):
            self._advance(hold)
            still = self.now - hold.last_on < self.cfg.appearance_gap_frames
            out.append(self._release(hold, truncated=still))
        return out

    def _take(self, now: int, records: Sequence[Record], final: bool) -> list[Record]:
        self.now = max(self.now, now)
        return [out for rec in records for out in self._route(rec, final)]

    # -- routing ---------------------------------------------------------------------------
    def _route(self, rec: Record, final: bool) -> list[Record]:
        if isinstance(rec, EventStart):
            if any(rec.onset_frame <= self._reach(h) for h in self._holds):
                self._swallowed.add(rec.id)
                self.absorbed += 1
                return []
            if self._not_read(rec, self.model.emotions.index(rec.emotion), self.now):
                self._withheld[rec.id] = rec
                return []
            self._published.add(rec.id)
            return [rec]
        if isinstance(rec, EventCancel):
            if self._withheld.pop(rec.id, None) is not None:  # never went out: nothing to say
                self.withheld += 1
                return []
            if rec.id in self._swallowed:
                self._swallowed.discard(rec.id)
                self.absorbed += 1
                return []
            self._published.discard(rec.id)
            return [rec]
        if not isinstance(rec, Event):
            return [rec]
        if self._withheld.pop(rec.id, None) is not None:  # its start never went out
            self.withheld += 1
        emotion = self.model.emotions.index(rec.emotion)
        hold = next((h for h in self._holds if h.emotion == emotion
                     and rec.onset_frame <= self._reach(h)
                     and rec.offset_frame >= h.event.onset_frame), None)
        out: list[Record] = []
        if hold is not None and rec.onset_frame > hold.offset:  # a new one, back to back
            self._advance(hold)
            hold.last_on = max(min(hold.last_on, rec.onset_frame - 1), hold.offset)
            out.append(self._release(hold, truncated=False))
        elif hold is not None:  # the same expression, seen again by the detector
            hold.offset = max(hold.offset, rec.offset_frame)
            self.absorbed += 1
            self._swallowed.discard(rec.id)
            if rec.id in self._published:
                self._published.discard(rec.id)
                return [EventCancel(rec.id, self.track_id, self.now)]
            return []
        started = rec.id in self._published  # (a swallowed start belongs to no open hold now)
        self._published.discard(rec.id)
        self._swallowed.discard(rec.id)
        shown = self._shown_level(rec, emotion)
        if shown is None and self._not_read(rec, emotion):
            self.withdrawn += 1
            return out + ([EventCancel(rec.id, self.track_id, self.now)] if started else [])
        if shown is None:
            return out + [rec]
        hold = _Hold(rec, emotion, shown, rec.offset_frame, rec.offset_frame, rec.offset_frame)
        self._advance(hold)
        still = self.now - hold.last_on < self.cfg.appearance_gap_frames
        if not still or final:  # already let go (or nothing more will come): out now
            return out + [self._finish_event(hold, truncated=rec.truncated or (final and still))]
        self._holds.append(hold)
        self._published.add(rec.id)
        if started:
            return out
        return out + [EventStart(**{**asdict(rec), "emitted_frame": self.now,
                                    "latency_ms": 0.0})]

    def _shown_level(self, rec: Event, emotion: int) -> float | None:
        """The delta of ``emotion`` at or above which the face still shows ``rec``, when
        ``rec`` is a macro event the appearance read as that emotion (``appearance_on``
        above the rest level before it); else None."""
        if rec.kind != "macro" or emotion not in self._held_emotions or not self._evidence.any:
            return None
        seen = self._evidence.mean(rec.onset_frame, rec.offset_frame, emotion)
        rest = self._rest(rec, emotion, self._evidence)
        rest = 0.0 if np.isnan(rest) else rest  # nothing seen before: the baseline itself
        if np.isnan(seen) or seen - rest < self.cfg.appearance_on:
            return None
        return rest + self.cfg.appearance_release * (seen - rest)

    def _rest(self, rec: Event, emotion: int, evidence: _Evidence) -> float:
        """Median of ``evidence`` for ``emotion`` over the rest frames before ``rec``."""
        first = max(0, rec.onset_frame - self.cfg.appearance_rest_frames)
        return evidence.median(first, rec.onset_frame - 1, emotion)

    def _not_read(self, rec: Event | EventStart, emotion: int, last: int | None = None) -> bool:
        """The appearance check: ``rec`` is a macro event of a checked emotion that the face,
        with room to show it, did not read as that emotion over its onset to ``last``
        (default: its offset; rules in the module docstring)."""
        if (not self.cfg.appearance_check or rec.kind != "macro" or emotion not in self._checked
                or not self._evidence.any):
            return False
        at_rest = self._rest(rec, emotion, self._level)
        rest = self._rest(rec, emotion, self._evidence)
        seen = self._evidence.mean(rec.onset_frame, rec.offset_frame if last is None else last,
                                   emotion)
        if np.isnan(at_rest) or np.isnan(seen) or at_rest > self.cfg.appearance_room:
            return False  # not seen at rest (nothing to compare with), or no room to rise
        return seen - rest < self.cfg.appearance_check

    def _reach(self, hold: _Hold) -> int:
        """Last frame a record may start at and still belong to ``hold``."""
        return hold.last_on + self.cfg.appearance_gap_frames

    def _advance(self, hold: _Hold) -> None:
        """Scan the frames up to now (stopping where the gap is met)."""
        gap, off = self.cfg.appearance_gap_frames, hold.shown
        for frame in range(hold.scanned + 1, self.now + 1):
            if frame - hold.last_on > gap:  # let go already: frames after it are not its
                break
            if self._evidence.of(frame, hold.emotion) >= off:  # NaN compares False: not shown
                hold.last_on = frame
            hold.scanned = frame

    def _release(self, hold: _Hold, truncated: bool) -> Event:
        self._holds.remove(hold)
        self._published.discard(hold.event.id)
        return self._finish_event(hold, truncated or hold.event.truncated)

    def _finish_event(self, hold: _Hold, truncated: bool) -> Event:
        offset = max(hold.offset, hold.last_on)
        if offset == hold.event.offset_frame and truncated == hold.event.truncated \
                and self.now == hold.event.emitted_frame:
            return hold.event  # not held after all: the tracker's event as it was
        self.held += int(offset > hold.event.offset_frame)
        arrival = self.times.arrival(offset)
        latency_ms = (self.clock() - arrival) * 1e3 if arrival is not None else 0.0
        return replace(hold.event, offset_frame=offset,
                       offset_s=round(self.times.seconds(offset), 4),
                       emitted_frame=self.now, latency_ms=round(latency_ms, 2),
                       truncated=truncated)
