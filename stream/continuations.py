"""Continuations: a final event that resumes one already emitted is that expression (issue 15).

The detector sees an expression's onset burst and its release burst. On a held or fast
expression it can lose the expression and find it again, and then one expression comes
out as two final events of the same kind and emotion:

* the second **begins inside the first** (SynthME val: a negative held
  921–1130 came out as 925–1096, held open by the appearance hold, and 1028–1132; the
  tracker's own duplicate guard saw 925–1012 and 1028–1132, 16 frames apart, before the
  hold extended the first);
* or, for micro events, it **begins within ``rejoin_frames``** of the first one's offset:
  the onset and the release of one fast expression (val: surprise 1254–1264 and
  1265–1276; the real ``carphone`` clip's wide-eyed open mouth 52–60 and 62–73).

A person sees one expression. This stage, the last of a track's event stages (after the
appearance hold), keeps the first (it has gone out; no record can change it) and does not
emit the second; when the second's ``event_start`` had gone out, it is withdrawn with
``event_cancel``. Counted in ``joined`` (``Summary.events``). So that a continuation's
start is not sent only to be withdrawn (``carphone``: the release's start came 8 frames
after the onset's event), an ``event_start`` of an emitted event's emotion whose onset lies
inside it or within ``rejoin_frames`` of its offset is **held back** until its final event
comes: a continuation then goes without a trace, any other final event goes out as usual
(its start is not sent late, as the appearance check does with the starts it holds back),
and a withdrawal of a held-back start is not passed on either. The gap rule is for micro
events only: the appearance hold ends a held macro event the frame before a new one of
its emotion (a repeated smile), and that split stands. A micro event inside a macro one of
the same emotion, and events of another emotion, pass. Off with
``TrackerConfig.join_continuations=False``.
"""
from __future__ import annotations

from typing import Sequence

from engine.config import ModelConfig, TrackerConfig
from engine.contracts import Event, EventCancel, EventStart, Record


class Continuations:
    """One face track's continuation guard (rules in the module docstring).

    Args:
        model: the model's config (``window``: how long emitted events are remembered).
        cfg: ``join_continuations`` and ``rejoin_frames``.
        track_id: the track (of the ``event_cancel`` records it sends).

    Attributes:
        joined: final events not emitted because they continued an emitted one.
    """

    def __init__(self, model: ModelConfig, cfg: TrackerConfig, track_id: int = 0) -> None:
        self.model, self.cfg, self.track_id = model, cfg, track_id
        self._emitted: list[Event] = []  # recent final events of this track
        self._started: set[int] = set()  # ids whose event_start went out, still open
        self._held_back: set[int] = set()  # ids whose event_start this stage held back
        self.joined = 0

    def __call__(self, now: int, records: Sequence[Record]) -> list[Record]:
        """The track's records of frame ``now`` (after the appearance hold) in; out, without
        the final events that continue an emitted one (and with their starts withdrawn)."""
        out: list[Record] = []
        for rec in records:
            if isinstance(rec, EventStart):
                if self.cfg.join_continuations and self._resumes(rec):
                    self._held_back.add(rec.id)
                    continue
                self._started.add(rec.id)
            elif isinstance(rec, EventCancel):
                self._started.discard(rec.id)
                if rec.id in self._held_back:  # it never went out: nothing to withdraw
                    self._held_back.discard(rec.id)
                    continue
            elif isinstance(rec, Event):
                started = rec.id in self._started
                self._started.discard(rec.id)
                self._held_back.discard(rec.id)
                if self.cfg.join_continuations and self._continues(rec):
                    self.joined += 1
                    if started:
                        out.append(EventCancel(rec.id, self.track_id, now))
                    continue
                self._emitted = [e for e in self._emitted
                                 if e.offset_frame >= now - self.model.window] + [rec]
            out.append(rec)
        return out

    def _continues(self, rec: Event) -> bool:
        """``rec`` (final) begins inside an emitted event of its kind and emotion, or (micro)
        within ``rejoin_frames`` of its offset."""
        gap = self.cfg.rejoin_frames if rec.kind == "micro" else 0
        return any(e.kind == rec.kind and e.emotion == rec.emotion
                   and e.onset_frame <= rec.onset_frame <= e.offset_frame + gap
                   for e in self._emitted)

    def _resumes(self, start: EventStart) -> bool:
        """``start`` may be a continuation: its onset lies inside an emitted event of its
        emotion or within ``rejoin_frames`` of its offset (a start's kind is the active
        head's guess, so any kind)."""
        return any(e.emotion == start.emotion
                   and e.onset_frame <= start.onset_frame <= e.offset_frame + self.cfg.rejoin_frames
                   for e in self._emitted)
