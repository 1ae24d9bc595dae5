"""AppearanceHold: events held while the face shows their emotion, and what it absorbs."""
from __future__ import annotations

import numpy as np
import pytest

from engine.config import ModelConfig, TrackerConfig
from engine.contracts import Event, EventCancel, EventStart
from stream.appearance import FER_CLASSES, group_probs
from stream.appearance_hold import AppearanceHold
from stream.interval_tracker import FrameTimes

HAPPY = FER_CLASSES.index("happy")


def _hold(**cfg) -> AppearanceHold:
    times = FrameTimes(30.0)
    for f in range(2000):
        times.add(f, f / 30, f / 30)
    return AppearanceHold(ModelConfig(), TrackerConfig(**cfg), times, clock=lambda: 100.0)


def _show(hold: AppearanceHold, frames: range, happy: float, at_rest: float = 0.1) -> None:
    """Frames whose appearance reads ``happy`` above the baseline (nothing else), on a face
    whose resting baseline reads happy ``at_rest``."""
    for f in frames:
        delta = np.zeros(len(FER_CLASSES), np.float32)
        delta[HAPPY] = happy
        probs = np.zeros(len(FER_CLASSES), np.float32)
        probs[HAPPY] = at_rest + happy
        hold.observe(f, probs, delta)


def _fields(on: int, off: int, kind: str, emotion: str, id_: int, emitted: int) -> dict:
    return dict(onset_frame=on, apex_frame=on, offset_frame=off, onset_s=on / 30,
                offset_s=off / 30, kind=kind, emotion=emotion, emotion_scores={emotion: 1.0},
                score=0.9, emitted_frame=emitted, track_id=0, id=id_)


def _event(on, off, kind="macro", emotion="positive", id_=0, emitted=None) -> Event:
    return Event(**_fields(on, off, kind, emotion, id_, emitted or off + 20))


def _start(on, id_, emotion="positive") -> EventStart:
    return EventStart(**_fields(on, on + 4, "macro", emotion, id_, on + 8))


def _run(hold: AppearanceHold, frames: range, feed: dict[int, list]) -> list:
    """Step every frame of ``frames``; ``feed`` gives the tracker's records per frame."""
    out = []
    for f in frames:
        out += hold.step(f, feed.get(f, []))
    return out


def test_emotion_groups_sum_fer_classes():
    eye = np.eye(len(FER_CLASSES), dtype=np.float32)  # row k: class k alone
    m = group_probs(eye, ("negative", "positive", "surprise", "others")).T  # (4, 7)
    assert m.shape == (4, 7) and m[0].sum() == 4 and m[1, HAPPY] == 1 and not m[3].any()


def test_a_held_expression_is_one_event_until_the_face_lets_go():
    """The detector ends a laugh at 60; the face shows it to 200: one event 20-200, emitted
    after the gap, with the id (and start) it had."""
    hold = _hold()
    _show(hold, range(0, 20), 0.0)
    _show(hold, range(20, 201), 0.9)
    _show(hold, range(201, 300), 0.0)
    out = _run(hold, range(0, 300), {10: [_start(20, 7)], 80: [_event(20, 60, id_=7)]})
    assert [type(r) for r in out] == [EventStart, Event], out
    ev = out[1]
    assert (ev.onset_frame, ev.offset_frame, ev.id, ev.truncated) == (20, 200, 7, False)
    assert ev.emitted_frame == 200 + hold.cfg.appearance_gap_frames
    assert ev.offset_s == pytest.approx(200 / 30, abs=1e-4) and hold.held == 1


def test_an_event_released_before_it_is_final_is_not_moved():
    """A smile released at its offset (a looped smile's pause follows): emitted at once,
    unchanged."""
    hold = _hold()
    _show(hold, range(20, 61), 0.9)
    _show(hold, range(61, 120), 0.0)
    ev = _event(20, 60, id_=3)
    assert _run(hold, range(0, 120), {80: [ev]}) == [ev] and hold.held == 0


def test_micro_events_other_emotions_and_flow_only_tracks_pass():
    hold = _hold()
    _show(hold, range(0, 300), 0.9)
    micro = _event(20, 30, kind="micro", id_=1)
    negative = _event(100, 150, emotion="negative", id_=2)  # the face reads happy, not negative
    assert _run(hold, range(0, 300), {40: [micro], 170: [negative]}) == [micro, negative]
    blind = _hold()  # no appearance reading ever: a flow-only chain
    ev = _event(20, 60)
    assert _run(blind, range(0, 100), {80: [ev]}) == [ev]
    off = _hold(appearance_hold=False)
    _show(off, range(0, 300), 0.9)
    assert _run(off, range(0, 100), {80: [ev]}) == [ev]


def test_a_hold_absorbs_the_starts_and_events_of_the_same_expression():
    """During a held laugh the detector starts and ends it again: no start/cancel churn,
    one event; an event whose start had gone out before the hold is withdrawn."""
    hold = _hold()
    _show(hold, range(0, 20), 0.0)
    _show(hold, range(20, 301), 0.9)
    _show(hold, range(301, 400), 0.0)
    feed = {10: [_start(20, 0)], 50: [_start(45, 1)], 80: [_event(20, 60, id_=0)],
            120: [_start(110, 2)], 130: [EventCancel(2, 0, 130)],
            150: [_start(140, 3)], 190: [_event(50, 180, id_=3)],
            240: [_event(230, 260, emotion="surprise", id_=4)]}
    out = _run(hold, range(0, 400), feed)
    kinds = [(type(r).__name__, r.id) for r in out]
    # start 1 went out before the hold; its event never comes, the tracker cancels it
    # itself in real runs: here it stays open. Start 2 and 3 are swallowed, so are their
    # cancel / event; the surprise passes; one final positive event 20-300.
    assert kinds == [("EventStart", 0), ("EventStart", 1), ("Event", 4), ("Event", 0)], kinds
    assert (out[-1].onset_frame, out[-1].offset_frame) == (20, 300)
    assert hold.absorbed == 4


def test_an_event_whose_start_went_out_is_withdrawn_when_absorbed():
    hold = _hold()
    _show(hold, range(20, 301), 0.9)
    _show(hold, range(301, 400), 0.0)
    feed = {50: [_start(45, 1)], 80: [_event(20, 60, id_=0)], 130: [_event(45, 120, id_=1)]}
    out = _run(hold, range(0, 400), feed)
    assert [(type(r).__name__, r.id) for r in out] == [
        ("EventStart", 1), ("EventStart", 0), ("EventCancel", 1), ("Event", 0)], out


def test_a_new_expression_seen_apart_by_the_detector_ends_the_hold():
    """Repeats 0.8 s apart whose pause still reads as the expression: the detector's second
    event ends the first hold the frame before it, and is an event of its own."""
    hold = _hold()
    _show(hold, range(0, 300), 0.5)  # the pause (and after): still above the release level
    _show(hold, range(0, 20), 0.0)
    _show(hold, range(20, 61), 0.8)
    _show(hold, range(85, 131), 0.8)
    feed = {80: [_event(20, 60, id_=0)], 150: [_event(85, 130, id_=1)]}
    out = _run(hold, range(0, 300), feed)
    events = [r for r in out if isinstance(r, Event)]
    assert [(e.id, e.onset_frame, e.offset_frame) for e in events] == [(0, 20, 84), (1, 85, 130)]
    # the second one rises nowhere above what the face read before it: not held


def test_the_rest_level_decides_what_is_read_as_shown():
    """Deltas measured from the median read before the onset: a face resting at +0.25 whose
    event reads +0.4 was not read as that emotion (no hold); at rest 0 it would have been."""
    hold = _hold()
    _show(hold, range(0, 300), 0.25)
    _show(hold, range(20, 61), 0.4)
    ev = _event(20, 60, id_=0)
    assert _run(hold, range(0, 100), {80: [ev]}) == [ev]
    hold = _hold()
    _show(hold, range(0, 300), 0.0)
    _show(hold, range(20, 200), 0.4)
    assert [type(r) for r in _run(hold, range(0, 100), {80: [ev]})] == [EventStart]


def test_still_shown_at_the_end_is_truncated():
    hold = _hold()
    _show(hold, range(20, 200), 0.9)
    out = _run(hold, range(0, 200), {80: [_event(20, 60, id_=5)]})
    assert [type(r) for r in out] == [EventStart]  # no start before: one is sent at the hold
    out = hold.finish(199)
    assert len(out) == 1 and out[0].truncated and (out[0].offset_frame, out[0].id) == (199, 5)
    # a final event the tracker flushes at the end, still shown: out at once, truncated
    late = _hold()
    _show(late, range(20, 200), 0.9)
    _run(late, range(0, 200), {})
    got = late.finish(199, [_event(20, 150, id_=6)])
    assert len(got) == 1 and got[0].truncated and got[0].offset_frame == 199


def test_a_short_dip_does_not_end_the_hold_but_the_gap_does():
    gap = TrackerConfig().appearance_gap_frames
    hold = _hold()
    _show(hold, range(20, 100), 0.9)
    _show(hold, range(100, 100 + gap - 1), 0.0)  # shorter than the gap
    _show(hold, range(100 + gap - 1, 150), 0.9)
    _show(hold, range(150, 300), 0.2)  # below 0.4 of the way to the event's 0.9: let go
    out = _run(hold, range(0, 300), {80: [_event(20, 60, id_=0)]})
    assert out[-1].offset_frame == 149 and out[-1].emitted_frame == 149 + gap


def test_config_checks():
    with pytest.raises(ValueError, match="appearance_release"):
        TrackerConfig(appearance_release=1.5)
    with pytest.raises(ValueError, match="appearance_gap_frames"):
        TrackerConfig(appearance_gap_frames=0)


def test_reads_on_every_fourth_frame_hold_as_every_frame_does():
    """The chain reads the appearance on every n-th frame when only the hold needs it:
    frames without a read are neither shown nor count against the rest level."""
    def run(every: int) -> list:
        hold = _hold()
        for f in range(0, 300, every):
            _show(hold, range(f, f + 1), 0.9 if 20 <= f <= 200 else 0.0)
        return _run(hold, range(0, 300), {10: [_start(20, 7)], 80: [_event(20, 60, id_=7)]})
    dense, sparse = run(1), run(4)
    assert [type(r) for r in sparse] == [EventStart, Event]
    assert (sparse[1].onset_frame, sparse[1].offset_frame) == (20, 200) == (
        dense[1].onset_frame, dense[1].offset_frame)


def test_the_check_withdraws_a_smile_the_face_did_not_read():
    """A macro positive event over frames the face reads no happier than at rest (talking
    taken for a smile) is withdrawn, and its start is never sent (held back, then dropped
    with the final event); one never started is not emitted either. A face with no room to
    rise (happy 0.9 at rest) and the check off keep both, the start sent when it came."""
    for at_rest, check, kept in ((0.1, 0.05, False), (0.9, 0.05, True), (0.1, 0.0, True)):
        hold = _hold(appearance_check=check)
        _show(hold, range(0, 300), 0.01, at_rest=at_rest)
        out = _run(hold, range(0, 300), {68: [_start(64, 1)], 110: [_event(64, 90, id_=1)],
                                         200: [_event(150, 180, id_=2)]})
        events = [r for r in out if isinstance(r, Event)]
        starts = [r for r in out if isinstance(r, EventStart)]
        if kept:
            assert [e.id for e in events] == [1, 2] and hold.withdrawn == 0, out
            assert [(s.id, s.emitted_frame) for s in starts] == [(1, 72)]
        else:
            assert out == [] and hold.withdrawn == 2 and hold.withheld == 1, out


def test_the_check_keeps_a_smile_the_face_read_and_other_emotions():
    """A smile the face reads (+0.2, under the hold's 0.3) passes untouched; a negative macro
    and a positive micro over a face that reads nothing are not checked."""
    hold = _hold(appearance_check=0.05)
    _show(hold, range(0, 100), 0.0)
    _show(hold, range(100, 140), 0.2)
    _show(hold, range(140, 400), 0.0)
    out = _run(hold, range(0, 400), {
        160: [_event(100, 140, id_=1)],
        260: [_event(200, 240, emotion="negative", id_=2)],
        320: [_event(300, 310, kind="micro", id_=3)]})
    assert [r.id for r in out if isinstance(r, Event)] == [1, 2, 3] and hold.withdrawn == 0


def test_a_start_held_back_goes_out_once_the_face_reads_the_smile():
    """fer lags the motion: a "positive" start whose first frames read no happier than at
    rest is held back, and sent (late) on the first frame the face reads it."""
    hold = _hold(appearance_check=0.05)
    _show(hold, range(0, 80), 0.0)
    out = _run(hold, range(0, 80), {72: [_start(70, 1)]})
    assert out == [] and 1 in hold._withheld
    _show(hold, range(80, 120), 0.4)
    out = _run(hold, range(80, 120), {})
    [start] = [r for r in out if isinstance(r, EventStart)]
    assert start.id == 1 and start.onset_frame == 70 and start.emitted_frame >= 80
    out = _run(hold, range(120, 200), {125: [EventCancel(1, 0, 125)]})
    assert [r.id for r in out if isinstance(r, EventCancel)] == [1]  # it went out: withdrawn
    assert hold.withheld == 0
