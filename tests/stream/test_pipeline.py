"""The threaded pipeline, the offline analysis and the API on a real face, with a small engine."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.model import FEDN
from engine.runtime import Engine
from stream.analyze import analyze_video
from stream.api import Detector, events_to_dataframe, plot_timeline
from engine.contracts import Event, EventCancel, EventStart, Frame, Status, Summary
from stream.events import RecordList
from stream.pipeline import Pipeline
from stream.sources import ArraySource, VideoFileSource

SMALL = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                    feat_dim=24, heads=4, enc_channels=(8, 16), enc_grid=2, dropout=0.0,
                    score_thresh=0.2)


@pytest.fixture(scope="module")
def engine():
    torch.manual_seed(0)
    model = FEDN(SMALL).eval()
    with torch.no_grad():  # make the untrained model fire now and then, so events flow
        model.detector.head.cls[-1].weight.mul_(30.0)
        model.detector.head.cls[-1].bias.fill_(-1.0)
    with Engine.load("torch", model=model, log=lambda _: None) as eng:
        yield eng


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory, face_bgr):
    """90 frames: a real face drifting and nodding, 25 frames without it, then back (mp4)."""
    from tests.stream.conftest import place_face
    frames = []
    for i in range(140):
        if 60 <= i < 85:
            frames.append(np.full((360, 640, 3), 90, np.uint8))
        else:
            frames.append(place_face(face_bgr, center=(300 + i * 0.5, 180 + 3 * np.sin(i / 5)),
                                     angle=2 * np.sin(i / 9)))
    path = tmp_path_factory.mktemp("clip") / "face.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def _run_pipeline(path, engine):
    records = RecordList()
    summary = Pipeline(VideoFileSource(path), records, engine).run()
    return records, summary


def test_pipeline_runs_every_stage_and_reports_face_changes(face_clip, engine):
    records, summary = _run_pipeline(face_clip, engine)
    assert summary.frames_processed == 140 and summary.frames_dropped == 0
    assert 100 <= summary.frames_with_face <= 115
    statuses = [(r.status, r.frame) for r in records if isinstance(r, Status)]
    lost = [f for s, f in statuses if s == "face_lost"]
    found = [f for s, f in statuses if s == "face_found"]
    assert found[0] == 0 and any(58 <= f <= 63 for f in lost) and any(84 <= f <= 90 for f in found)
    for stage in ("face", "flow", "encoder", "detector", "tracker"):
        assert stage in summary.latency_ms, stage
    events = [r for r in records if isinstance(r, Event)]
    assert events, "the boosted untrained model should fire at least once"
    assert [e.emitted_frame for e in events] == sorted(e.emitted_frame for e in events)
    assert len({(e.track_id, e.id) for e in events}) == len(events)  # none twice
    starts = {(r.track_id, r.id) for r in records if isinstance(r, EventStart)}
    closed = {(r.track_id, r.id) for r in records if isinstance(r, (Event, EventCancel))}
    assert starts <= closed  # every provisional start is finalized or withdrawn


def test_streaming_and_offline_analysis_agree(face_clip, engine, tmp_path):
    records, _ = _run_pipeline(face_clip, engine)
    streamed = [(r.onset_frame, r.offset_frame, r.kind) for r in records
                if isinstance(r, Event)]
    offline, summary = analyze_video(face_clip, tmp_path / "face.jsonl", engine, progress=False)
    assert [(e.onset_frame, e.offset_frame, e.kind) for e in offline] == streamed
    lines = [json.loads(x) for x in (tmp_path / "face.jsonl").read_text().splitlines()]
    assert lines[-1]["type"] == "summary" and lines[-1]["frames_processed"] == 140


def test_no_face_file_emits_no_events_and_says_so(engine):
    frames = np.full((40, 360, 640, 3), 90, np.uint8)
    records = []
    summary = Pipeline(ArraySource(frames), records.append, engine).run()
    assert not [r for r in records if isinstance(r, (Event, EventStart, EventCancel))]
    assert [r.status for r in records if isinstance(r, Status)][0] == "no_face"
    assert summary.frames_with_face == 0


def test_api_feed_matches_run_and_builds_dataframe_and_plot(face_clip, engine, tmp_path):
    det = Detector(engine)
    from_run = det.run(face_clip)
    src = VideoFileSource(face_clip).open()
    fed = []
    while (f := src.read()) is not None:
        fed += det.feed(f.image, f.t_capture)
    fed += det.finish()
    src.close()
    key = lambda e: (e.onset_frame, e.offset_frame, e.kind, e.emotion)  # noqa: E731
    assert [key(e) for e in fed] == [key(e) for e in from_run]
    assert all(isinstance(e, Event) for e in fed)
    df = events_to_dataframe(fed)
    assert len(df) == len(fed) and {"onset_frame", "kind", "p_positive"} <= set(df.columns)
    fig = plot_timeline(fed, truth=[(10, 20, "micro")])
    fig.savefig(tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
    det.close()


def test_live_source_drops_are_counted_and_reported(engine):
    frames = np.full((400, 120, 160, 3), 90, np.uint8)
    records = []
    summary = Pipeline(ArraySource(frames, fps=1000, live=True), records.append,
                       engine).run()
    reported = sum(r.detail["count"] for r in records
                   if isinstance(r, Status) and r.status == "dropped")
    assert summary.policy == "drop_oldest" and summary.frames_read == 400
    assert summary.frames_dropped > 0  # the camera outran the face stage
    assert reported == summary.frames_dropped
    assert summary.frames_processed + summary.frames_dropped == 400


class _EndlessCamera:
    live, name = True, "fake-camera"
    fps, size, frame_count = 30.0, (160, 120), None

    def __init__(self):
        self.i = 0

    def open(self):
        return self

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def read(self):
        import time
        time.sleep(1 / 60)
        self.i += 1
        return Frame(self.i - 1, time.monotonic(), np.full((120, 160, 3), 90, np.uint8))


def test_ctrl_c_on_a_live_run_still_flushes_and_summarizes(engine):
    import _thread
    import threading

    records = []
    timer = threading.Timer(0.8, _thread.interrupt_main)
    timer.start()
    summary = Pipeline(_EndlessCamera(), records.append, engine).run()
    timer.join()
    statuses = [r.status for r in records if isinstance(r, Status)]
    assert "interrupted" in statuses and statuses[-1] == "source_ended"
    assert isinstance(records[-1], Summary) and summary.frames_processed > 5


def test_training_streaming_evaluation_matches_the_live_pipeline(tmp_path, face_bgr, engine):
    """training.infer.streaming_spots (cached features) == run_live's events on the same file."""
    from tests.stream.conftest import place_face
    from training.features import VideoFeatures, extract_video
    from training.infer import streaming_spots

    path = tmp_path / "steady.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
    for i in range(101):  # ends mid-hop: the last partial hop is flushed on both sides
        writer.write(place_face(face_bgr, center=(300 + i * 0.5, 180 + 3 * np.sin(i / 5)),
                                angle=2 * np.sin(i / 9)))
    writer.release()
    records, _ = _run_pipeline(path, engine)
    live = [(r.onset_frame, r.offset_frame, r.kind) for r in records
            if isinstance(r, Event)]
    got = extract_video(path)
    item = VideoFeatures("s", "steady", got.flow, got.valid, got.fps, (), got.appearance)
    spots = streaming_spots(engine, [item])
    assert live, "the boosted untrained model should fire at least once"
    assert [(s.onset, s.offset, s.kind) for s in spots] == live
