"""Continuations: a final event that resumes one already emitted is not emitted again."""
from __future__ import annotations

from engine.config import ModelConfig, TrackerConfig
from engine.contracts import Event, EventCancel, EventStart
from stream.continuations import Continuations


def _fields(on: int, off: int, kind: str, emotion: str, id_: int) -> dict:
    return dict(onset_frame=on, apex_frame=on, offset_frame=off, onset_s=on / 30,
                offset_s=off / 30, kind=kind, emotion=emotion, emotion_scores={emotion: 1.0},
                score=0.9, emitted_frame=off + 10, track_id=3, id=id_)


def _event(on, off, kind="macro", emotion="negative", id_=0) -> Event:
    return Event(**_fields(on, off, kind, emotion, id_))


def _start(on, id_, kind="macro", emotion="negative") -> EventStart:
    return EventStart(**_fields(on, on + 4, kind, emotion, id_))


def _stage(**cfg) -> Continuations:
    return Continuations(ModelConfig(), TrackerConfig(**cfg), track_id=3)


def test_an_event_that_begins_inside_an_emitted_one_is_that_expression():
    # SynthME val: a negative held 921-1130 came out as 925-1096 and 1028-1132
    join = _stage()
    assert [type(r) for r in join(1108, [_event(925, 1096, id_=4)])] == [Event]
    # its start came after the first event went out: held back, then gone with it
    assert join(1143, [_start(1028, 5)]) == []
    assert join(1160, [_event(1028, 1132, id_=5)]) == [] and join.joined == 1
    # a start that had gone out before the first event did is withdrawn
    join = _stage()
    assert join(1060, [_start(1050, 6)]) == [_start(1050, 6)]
    assert join(1108, [_event(925, 1096, id_=4)]) == [_event(925, 1096, id_=4)]
    assert join(1200, [_event(1050, 1150, id_=6)]) == [EventCancel(6, 3, 1200)]
    assert join.joined == 1


def test_a_start_held_back_goes_with_its_event_when_that_is_a_new_expression():
    join = _stage()
    join(100, [_event(10, 90, "micro", "surprise", 1)])
    # onset 2 frames after the micro: held back; its final event is a macro, another kind:
    # a new expression, which goes out (its start is not sent late)
    assert join(110, [_start(92, 2, "macro", "surprise")]) == []
    final = _event(92, 160, "macro", "surprise", 2)
    assert join(170, [final]) == [final] and join.joined == 0
    # a held-back start whose provisional event is withdrawn upstream leaves no trace
    assert join(175, [_start(95, 3, "macro", "surprise")]) == []
    assert join(180, [EventCancel(3, 3, 180)]) == []
    # a start outside any emitted event goes out at once
    assert join(300, [_start(250, 4)]) == [_start(250, 4)]


def test_a_micro_release_right_after_its_onset_is_one_expression_but_repeats_are_not():
    join = _stage()
    assert len(join(1271, [_event(1254, 1264, "micro", "surprise", 2)])) == 1
    assert join(1287, [_event(1265, 1276, "micro", "surprise", 3)]) == []  # gap 1 frame
    # past rejoin_frames (4) it is a second expression
    assert len(join(1300, [_event(1281, 1290, "micro", "surprise", 7)])) == 1
    # another emotion, or a micro inside a macro of the same emotion, is another expression
    assert len(join(1310, [_event(1291, 1299, "micro", "negative", 8)])) == 1
    join(1500, [_event(1300, 1480, "macro", "positive", 9)])
    assert len(join(1500, [_event(1350, 1360, "micro", "positive", 10)])) == 1
    # a macro that starts right after a macro of its emotion passes: the appearance hold ends
    # a held smile the frame before the next one (a repeated smile)
    assert len(join(1600, [_event(1481, 1560, "macro", "positive", 11)])) == 1
    assert join.joined == 1


def test_other_records_pass_and_the_stage_can_be_turned_off():
    off = _stage(join_continuations=False)
    records = [_event(10, 50, id_=1), _event(20, 60, id_=2)]
    assert off(70, records) == records and off.joined == 0
    on = _stage()
    cancel = EventCancel(9, 3, 80)
    assert on(80, [_start(70, 9), cancel]) == [_start(70, 9), cancel]
    # a start withdrawn by an earlier stage is no longer open: its final event sends no cancel
    on(90, [_event(10, 50, id_=1)])
    assert on(95, [_event(40, 60, id_=9)]) == []
