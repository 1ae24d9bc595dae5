import numpy as np
import pytest

from engine.config import ModelConfig, TrackerConfig
from engine.contracts import ActiveFrames, Candidate, Event, EventCancel, EventStart
from stream.interval_tracker import FrameTimes, IntervalTracker

MODEL = ModelConfig()
EMO = MODEL.emotions


def cand(onset, offset, kind="micro", score=0.8, emotion="positive", level=0):
    scores = {e: (0.7 if e == emotion else 0.1) for e in EMO}
    return Candidate(onset, offset, kind, emotion, scores, score, offset + 3, level)


def active(frames, probs, since=5.0, kind=0, emotion=1):
    n = len(frames)
    k = np.zeros((n, len(MODEL.kinds)))
    k[:, kind] = probs
    e = np.full((n, len(EMO)), 0.1)
    e[:, emotion] = 0.7
    return ActiveFrames(np.asarray(frames), k, e, np.full(n, since))


def _tracker(cfg: TrackerConfig, frames: int) -> IntervalTracker:
    """A tracker over ``frames`` frames at 30 fps, captured and arriving on time."""
    times = FrameTimes(fps=30)
    for i in range(frames):
        times.add(i, i / 30, i / 30)
    return IntervalTracker(MODEL, cfg, times)


@pytest.fixture
def tracker():
    times = FrameTimes(fps=30)
    clock = {"t": 100.0}
    for i in range(2000):
        times.add(i, i / 30, 50.0 + i / 30)
    t = IntervalTracker(MODEL, TrackerConfig(), times, clock=lambda: clock["t"])
    t.test_clock = clock
    return t


def finals(records):
    return [r for r in records if isinstance(r, Event)]


def test_merges_across_hops_and_finalizes_once(tracker):
    margin = MODEL.level_margin(0)
    out = tracker.update(24, [cand(10, 20)])
    assert finals(out) == []  # 24 < 20 + margin: the next hop's points may still see it
    assert 20 + margin <= 32
    out += tracker.update(32, [cand(11, 21, score=0.9), cand(10, 19, score=0.7)])
    events = finals(out)
    assert len(events) == 1  # three candidates of one expression, merged
    e = events[0]
    assert (e.onset_frame, e.offset_frame) == (10, 20)
    assert e.score == pytest.approx(0.9) and e.kind == "micro" and e.emotion == "positive"
    assert e.emitted_frame == 32
    assert e.onset_s == pytest.approx(10 / 30, abs=1e-3)
    assert e.offset_s == pytest.approx(20 / 30, abs=1e-3)
    out2 = tracker.update(40, [cand(11, 20, score=0.6)])  # a late duplicate
    out2 += tracker.update(72, [cand(10, 20, score=0.95)])  # seen again much later
    out2 += tracker.flush(80)
    assert finals(out2) == [] and tracker.duplicates_dropped == 2


def test_finalize_waits_for_the_margin_of_the_level_that_saw_it(tracker):
    coarse = 2  # level-2 points are 4 frames apart: margin max(end_margin, 3)
    due = 60 + MODEL.level_margin(coarse)
    assert finals(tracker.update(due - 1, [cand(20, 60, kind="macro", level=coarse)])) == []
    [e] = finals(tracker.update(due, []))
    assert e.offset_frame == 60 and e.kind == "macro"


def test_latency_is_emit_minus_arrival_of_offset_frame(tracker):
    tracker.test_clock["t"] = 50.0 + 20 / 30 + 0.25
    out = tracker.update(40, [cand(10, 20)])
    [e] = finals(out)
    assert e.latency_ms == pytest.approx(250.0, abs=0.1)


def test_duplicates_across_kinds_become_one_event(tracker):
    out = tracker.update(16, [cand(10, 30, kind="micro", score=0.5),
                              cand(11, 30, kind="macro", score=0.9)])
    out += tracker.flush(100)
    [e] = finals(out)
    assert e.kind == "macro"


def test_separate_expressions_stay_separate_and_in_order(tracker):
    out = tracker.update(100, [cand(60, 70, score=0.9), cand(10, 20, score=0.5),
                               cand(40, 90, kind="macro", level=2)])
    out += tracker.flush(200)
    spans = [(e.onset_frame, e.offset_frame) for e in finals(out)]
    assert spans == [(10, 20), (60, 70), (40, 90)]  # in order of offset: the order they end
    assert len({e.id for e in finals(out)}) == 3


def test_flush_finalizes_pending(tracker):
    out = tracker.update(24, [cand(10, 20)])
    assert finals(out) == []
    [e] = finals(tracker.flush(25))
    assert e.offset_frame == 20 and not e.truncated


def test_provisional_start_then_final_event_shares_id(tracker):
    out = tracker.update(20, [], active(range(13, 21), [0.1, 0.2, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9]))
    starts = [r for r in out if isinstance(r, EventStart)]
    assert len(starts) == 1 and starts[0].onset_frame == 17 - 5
    out = tracker.update(28, [cand(12, 24)], active(range(21, 29), [0.9, 0.3, 0.2, 0.1, 0, 0, 0, 0]))
    out += tracker.update(60, [], active(range(29, 61), [0.0] * 32))
    [e] = finals(out)
    assert e.id == starts[0].id
    assert not [r for r in out if isinstance(r, EventCancel)]


def test_noise_does_not_flicker(tracker):
    flicker = [0.9, 0.1] * 20
    out = tracker.update(40, [], active(range(1, 41), flicker))
    assert [r for r in out if isinstance(r, EventStart)] == []


def test_provisional_without_final_is_cancelled(tracker):
    out = tracker.update(20, [], active(range(13, 21), [0.9] * 8))
    [start] = [r for r in out if isinstance(r, EventStart)]
    out = tracker.update(30, [], active(range(21, 31), [0.0] * 10))
    out += tracker.update(200, [], active(range(31, 201), [0.0] * 170))
    [cancel] = [r for r in out if isinstance(r, EventCancel)]
    assert cancel.id == start.id and finals(out) == []


def test_expression_under_way_at_end_is_truncated(tracker):
    out = tracker.update(300, [], active(range(1, 301), [0.0] * 99 + [0.95] * 201, since=3))
    [start] = [r for r in out if isinstance(r, EventStart)]
    [e] = finals(tracker.flush(300))
    assert e.truncated and e.offset_frame == 300 and e.id == start.id
    assert e.onset_frame == start.onset_frame and e.kind == "micro"


@pytest.mark.parametrize("hold_frames, emitted", [(0, False), (40, True), (80, False)])
def test_a_firmly_held_provisional_stands_without_a_candidate_when_asked(hold_frames, emitted):
    """hold_frames: an unconfirmed provisional the active head held >= on_thresh for that
    many frames is emitted from the active head, not withdrawn (off: withdrawn as before)."""
    t = _tracker(TrackerConfig(hold_frames=hold_frames), frames=600)
    out = t.update(80, [], active(range(1, 81), [0.0] * 19 + [0.9] * 61, since=2, emotion=0))
    [start] = [r for r in out if isinstance(r, EventStart)]
    out = t.update(400, [], active(range(81, 401), [0.0] * 320, emotion=0))
    if emitted:
        [e] = finals(out)
        assert e.id == start.id and not e.truncated and e.emotion == EMO[0]
        assert (e.onset_frame, e.offset_frame) == (start.onset_frame, 84)  # let go at 81 + 3
        assert not [r for r in out if isinstance(r, EventCancel)]
    else:
        [cancel] = [r for r in out if isinstance(r, EventCancel)]
        assert cancel.id == start.id and finals(out) == []


@pytest.mark.parametrize("onset, want", [("earliest", 48), ("active", 86)])
def test_onset_of_a_confirmed_provisional_follows_the_onset_setting(onset, want):
    """The looped-smile pattern: the active head starts at 86 (it saw the smile begin); the
    only candidate regresses its onset back over the pause into the smile before (48)."""
    t = _tracker(TrackerConfig(onset=onset), frames=400)
    # on from 86: held on_frames (3) at 88, which says "under way for 2 frames": onset 86
    out = t.update(150, [], active(range(80, 151), [0.0] * 6 + [0.95] * 61 + [0.0] * 4,
                                   since=2, kind=1))
    [start] = [r for r in out if isinstance(r, EventStart)]
    assert start.onset_frame == 86
    out = t.update(200, [cand(48, 147, kind="macro")], active(range(151, 201), [0.0] * 50,
                                                              kind=1))
    [e] = finals(out)
    assert e.id == start.id and (e.onset_frame, e.offset_frame) == (want, 147)


@pytest.mark.parametrize("by_duration", [False, True])
def test_an_event_too_long_for_a_micro_expression_is_macro_when_asked(by_duration):
    t = _tracker(TrackerConfig(kind_from_duration=by_duration), frames=200)
    out = t.update(100, [cand(10, 30, kind="micro"), cand(60, 74, kind="micro")])
    out += t.flush(100)
    kinds = {e.onset_frame: e.kind for e in finals(out)}
    # 21 frames = 0.7 s > MICRO_MAX_S; 15 frames = 0.5 s is still micro
    assert kinds == {10: "macro" if by_duration else "micro", 60: "micro"}


def test_frames_must_not_go_back(tracker):
    tracker.update(10)
    with pytest.raises(ValueError, match="go back"):
        tracker.update(5)


@pytest.mark.parametrize("kw, match", [({"merge_iou": 0}, "merge_iou"),
                                       ({"off_thresh": 0.9}, "hysteresis"),
                                       ({"on_frames": 0}, "on_frames"),
                                       ({"hold_frames": -1}, "hold_frames"),
                                       ({"onset": "latest"}, "onset")])
def test_config_checks(kw, match):
    with pytest.raises(ValueError, match=match):
        TrackerConfig(**kw)


def test_expression_longer_than_the_window_is_carried_by_the_active_head(tracker):
    long = MODEL.window + 40  # no window holds both its onset and its end
    on = [0.95] * long
    out = tracker.update(long + 20, [], active(range(21, long + 21), on, since=2))
    [start] = [r for r in out if isinstance(r, EventStart)]
    off = range(long + 21, long + 200)
    out = tracker.update(long + 199, [], active(off, [0.0] * len(off)))
    [e] = finals(out)
    assert e.id == start.id and not e.truncated
    assert e.offset_frame - e.onset_frame + 1 > MODEL.window
    assert not [r for r in out if isinstance(r, EventCancel)]


def _held_smile(tracker, since_refire):
    """The single_face pattern: the active head fires at the onset (15), lets go during the
    still hold (40), fires again at the release, saying it has been under way since
    ``70 - since_refire``; the detector's only candidate is the release (54-71)."""
    out = tracker.update(40, [], active(range(13, 41), [0.9] * 24 + [0.0] * 4, since=2,
                                        kind=1))
    out += tracker.update(70, [], active(range(41, 71), [0.0] * 25 + [0.9] * 5,
                                         since=since_refire, kind=1))
    out += tracker.update(120, [cand(54, 71, kind="macro")],
                          active(range(71, 121), [0.0] * 50, kind=1))
    return out


def test_a_held_expression_whose_readout_dips_is_one_event_onset_to_release(tracker):
    out = _held_smile(tracker, since_refire=30)  # re-fire onset 40: where the first ended
    [start] = [r for r in out if isinstance(r, EventStart)]
    [e] = finals(out)
    assert (e.onset_frame, e.offset_frame, e.id) == (start.onset_frame, 71, start.id)
    assert start.onset_frame == 15 - 2  # fired on frame 15 (3rd frame >= on_thresh) - since
    assert not [r for r in out if isinstance(r, EventCancel)]


def test_a_new_expression_after_a_real_pause_is_its_own_start(tracker):
    out = _held_smile(tracker, since_refire=5)  # re-fire onset 65: 25 frames after the end
    starts = [r for r in out if isinstance(r, EventStart)]
    assert len(starts) == 2
    [e] = finals(out)
    assert e.onset_frame == 54 and e.id == starts[1].id  # the release alone, as before
    [cancel] = [r for r in out if isinstance(r, EventCancel)]
    assert cancel.id == starts[0].id


def test_a_candidate_of_another_kind_confirms_but_does_not_take_a_provisional_onset(tracker):
    out = tracker.update(40, [], active(range(13, 41), [0.9] * 28, since=2, kind=1))  # macro
    out += tracker.update(64, [cand(50, 56, kind="micro")], active(range(41, 65), [0.9] * 24,
                                                                   kind=1))
    micro = [e for e in finals(out) if e.kind == "micro"]
    assert [(e.onset_frame, e.offset_frame) for e in micro] == [(50, 56)]  # not from 13
    [start] = [r for r in out if isinstance(r, EventStart)]
    assert micro[0].id == start.id  # it still confirms the start (its kind was a guess)


def _repeated_smile(cfg: TrackerConfig, second_onset: int) -> list:
    """A smile 15-74 emitted, then a second one the active head sees start at 86 whose only
    candidate regresses its onset to ``second_onset``; the final events."""
    t = _tracker(cfg, frames=400)
    out = t.update(100, [cand(15, 74, kind="macro")], active(range(0, 101), [0.0] * 101, kind=1))
    out += t.update(150, [], active(range(101, 151), [0.95] * 46 + [0.0] * 4,
                                    since=15, kind=1))  # fires at 103: onset 103 - 15 = 88
    out += t.update(200, [cand(second_onset, 147, kind="macro")],
                    active(range(151, 201), [0.0] * 50, kind=1))
    return finals(out)


@pytest.mark.parametrize("after_previous, want", [(True, 88), (False, 60)])
def test_an_onset_that_reaches_into_the_event_before_starts_after_it(after_previous, want):
    """The looped smile with onset="earliest": the candidate's onset (60) lies inside the smile
    emitted before (15-74); the active head saw this one start at 88."""
    first, second = _repeated_smile(TrackerConfig(onset_after_previous=after_previous), 60)
    assert (first.onset_frame, first.offset_frame) == (15, 74)
    assert (second.onset_frame, second.offset_frame) == (want, 147)


def test_an_onset_inside_the_event_before_without_a_later_start_is_its_end_plus_one():
    t = _tracker(TrackerConfig(), frames=400)
    out = t.update(100, [cand(15, 74, kind="macro")], active(range(0, 101), [0.0] * 101, kind=1))
    out += t.update(200, [cand(60, 147, kind="macro")], active(range(101, 201), [0.0] * 100,
                                                               kind=1))
    assert [(e.onset_frame, e.offset_frame) for e in finals(out)] == [(15, 74), (75, 147)]


def test_an_event_nested_in_the_one_before_keeps_its_onset(tracker):
    out = tracker.update(150, [cand(20, 120, kind="macro")])  # a long macro, emitted
    out += tracker.update(200, [cand(60, 66, kind="micro")])  # a micro inside it
    out += tracker.flush(260)
    assert sorted((e.onset_frame, e.offset_frame) for e in finals(out)) == [(20, 120), (60, 66)]


def test_a_pending_event_already_emitted_when_the_face_left_is_not_emitted_again(tracker):
    """A smile under way when the face leaves is emitted from the active head (truncated);
    the end-anchored candidate of the same smile, still pending then, is a duplicate at the
    flush (a fused model gave `face_noface` 0-73 beside its 14-71)."""
    out = tracker.update(72, [cand(0, 70, kind="macro", level=3)],
                         active(range(1, 73), [0.0] * 13 + [0.95] * 59, kind=1))
    assert finals(out) == []  # the candidate waits for its level's margin
    out += tracker.face_left(71)
    [smile] = finals(out)
    assert smile.truncated and smile.offset_frame == 71
    dropped = tracker.duplicates_dropped
    assert finals(tracker.flush(90)) == [] and tracker.duplicates_dropped == dropped + 1
