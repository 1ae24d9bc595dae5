"""The Gradio page, launched on 127.0.0.1 and driven with gradio_client; its live sessions.

One engine and one app per module (the app is served in-process with
``prevent_thread_lock``); the Analyze endpoint runs the demo clip once.
"""
from __future__ import annotations

import base64
import socket
import time

import cv2
import numpy as np
import pytest

from tests.ui.conftest import DEMO_CLIP, ROOT, served_gradio

DEMO_LABELS = ROOT / "stream" / "demo" / "demo_labels.csv"


@pytest.fixture(scope="module")
def engine():
    from engine.runtime import Engine

    with Engine.load("auto", log=lambda _: None) as eng:
        yield eng


@pytest.fixture(scope="module")
def served(engine):
    """(app, url): the page on a free loopback port, closed after the module."""
    with served_gradio(engine) as app_url:
        yield app_url


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    return Client(served[1], verbose=False)


@pytest.fixture(scope="module")
def demo_result(client):
    """The /analyze outputs for the demo clip with its labels, and the seconds it took."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    out = client.predict(handle_file(str(DEMO_CLIP)), handle_file(str(DEMO_LABELS)),
                         api_name="/analyze")
    return out, time.perf_counter() - t0


def test_analyze_endpoint_takes_a_video_alone(client):
    api = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    params = api["/analyze"]["parameters"]
    assert [p["parameter_name"] for p in params] == ["video", "labels", "mp4"]
    assert [p["parameter_has_default"] for p in params] == [False, True, True]
    assert set(api) == {"/analyze"}  # live streaming and the demo button stay private


def test_analyze_demo_clip_events_plot_and_downloads(demo_result, capsys):
    from engine.contracts import Event
    from stream.events import from_json, read_jsonl
    from stream.megc_csv import Spot, read_megc_csv
    from stream.metrics import megc_spotting

    (summary, plot, table, scores, events, files, video), seconds = demo_result
    with capsys.disabled():
        print(f"\n[gradio analyze] demo clip (25 s, 750 frames) through gradio_client: "
              f"{seconds:.1f} s; {summary}")
    # The events as JSON, in the JSONL schema, match the clip's labels.
    events = [from_json(e) for e in events]
    # The summary line says what the run said on the way (the JSONL summary's counts).
    records = list(read_jsonl(next(f for f in files if f.endswith(".jsonl"))))
    said = sum(type(r).__name__ == "EventStart" for r in records)
    assert f"On the way: {said} started" in summary, summary
    assert events and all(isinstance(e, Event) for e in events)
    truth = read_megc_csv(DEMO_LABELS)
    pred = [Spot(truth[0].subject, truth[0].video, e.onset_frame, e.offset_frame, e.emotion,
                 e.kind, e.apex_frame, e.score) for e in events]
    counts = megc_spotting(truth, pred, threshold=0.5)
    assert counts["overall"].f1 >= 0.8, {k: c.as_dict() for k, c in counts.items()}
    # The page's score table says the same.
    assert f"{counts['overall'].f1:.3f}" in scores and "STRS" in scores
    # The timeline plot: a matplotlib figure as an image.
    assert plot["type"] == "matplotlib"
    head, b64 = plot["plot"].split(",", 1)
    assert head.startswith("data:image/")
    img = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[1] >= 800 and img.shape[0] >= 400
    # The events table has one row per event.
    assert len(table["data"]) == len(events) and "emotion" in table["headers"]
    assert [row[0] for row in table["data"]] == [e.id for e in events]
    # Downloads: JSONL (same events), MEGC CSV (same intervals), a playable annotated MP4.
    by_ext = {f.rsplit(".", 1)[-1]: f for f in files}
    assert set(by_ext) == {"jsonl", "csv", "mp4"}
    assert [r for r in read_jsonl(by_ext["jsonl"]) if isinstance(r, Event)] == events
    assert [(s.onset, s.offset, s.kind) for s in read_megc_csv(by_ext["csv"])] == \
        [(e.onset_frame, e.offset_frame, e.kind) for e in events]
    cap = cv2.VideoCapture(video)
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (360, 640, 3) and abs(n - 750) <= 1


def _error_of(client, *args) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name="/analyze")
    return str(info.value)


def test_unreadable_upload_is_a_readable_error(client, tmp_path):
    from gradio_client import handle_file

    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(b"this is not a video " * 200)
    message = _error_of(client, handle_file(str(bad)))
    assert message.startswith("cannot read holiday.mp4") and "Traceback" not in message
    assert str(tmp_path) not in message and "/tmp/gradio" not in message  # no server paths


def test_video_without_a_face_says_so(client, small_video):
    from gradio_client import handle_file

    message = _error_of(client, handle_file(str(small_video)), None, False)
    assert message.startswith(f"no face found in {small_video.name}")


def test_no_video_asks_for_one(client):
    assert "Upload a video first" in _error_of(client, None)


def test_bad_labels_csv_is_a_readable_error(client, tmp_path):
    from gradio_client import handle_file

    labels = tmp_path / "labels.csv"
    labels.write_text("subject,video,onset\nA,demo,3\n")
    message = _error_of(client, handle_file(str(DEMO_CLIP)), handle_file(str(labels)), False)
    assert message.startswith("labels CSV:") and "missing" in message


def test_about_names_engine_reason_and_versions(engine):
    from engine.runtime import Selection
    from ui.gradio_app import about_md

    md = about_md(engine, Selection("onnxruntime", "auto: because the test says so"))
    assert "**onnxruntime** — auto: because the test says so" in md
    assert "| gradio | 6." in md and "| python |" in md
    assert "FEDN default weights" in md  # the model card


def test_launch_on_a_busy_port_fails_before_loading_the_engine(monkeypatch):
    from engine.runtime import Engine
    from ui.gradio_app import launch

    def no_load(*a, **k):
        raise AssertionError("the engine was loaded before the port was checked")

    monkeypatch.setattr(Engine, "load", no_load)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError):
            launch("127.0.0.1", busy.getsockname()[1])


@pytest.mark.parametrize("kwargs", [{"live_fps": 0}, {"time_limit": 0}])
def test_build_app_checks_arguments(engine, kwargs):
    from ui.gradio_app import build_app

    with pytest.raises(ValueError, match=next(iter(kwargs))):
        build_app(engine, **kwargs)


# --- live sessions, without a browser ---------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _demo_frames(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    frames = []
    while len(frames) < n:
        ok, bgr = cap.read()
        assert ok
        frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))  # the browser sends RGB
    cap.release()
    return frames


def test_live_session_feeds_model_rate_ticks_and_draws(engine):
    from ui.live import LiveSessions

    clock = FakeClock()
    sessions = LiveSessions(engine, fps=30.0, clock=clock)
    frames = _demo_frames(40)
    outs = []
    for i, rgb in enumerate(frames[:20]):  # a browser at 15 fps: each frame is 2 model ticks
        clock.t = 100.0 + i / 15
        outs.append(sessions.step("tab-a", rgb))
    s = sessions._live["tab-a"]
    assert (s.frames, s.ticks, s.skipped) == (20, 39, 0)  # ticks 0, 2, 4, ... 38 (+ repeats)
    image, table, status = outs[-1]
    assert image.shape == frames[0].shape and image.dtype == np.uint8
    assert np.any(image != frames[19])  # the overlay is drawn
    assert 'id="live-status"' in status and 'data-fps="15.' in status
    assert "live-events" in table
    clock.t += 1.0  # a 1 s stall: 30 ticks pass, at most max_repeat are fed
    sessions.step("tab-a", frames[20])
    assert s.skipped == 30 - s.max_repeat and s.ticks == 39 + s.max_repeat
    assert sessions.open == 1 and sessions.opened == 1


def test_live_sessions_are_one_per_tab_and_closed(engine):
    from ui.live import LiveSessions

    clock = FakeClock()
    sessions = LiveSessions(engine, fps=30.0, restart_s=3.0, idle_s=20.0, clock=clock)
    rgb = _demo_frames(1)[0]
    sessions.step("a", rgb)
    sessions.step("b", rgb)
    first_a = sessions._live["a"]
    assert sessions.open == 2
    clock.t += 5.0  # "a" paused longer than restart_s: a new recording, a new chain
    sessions.step("a", rgb)
    assert sessions._live["a"] is not first_a and first_a._closed
    assert sessions.open == 2 and sessions.closed == 1
    clock.t += 25.0  # "b" idle past idle_s: closed on the next frame of any tab
    sessions.step("a", rgb)
    assert "b" not in sessions._live and sessions.closed == 3  # old a (restart) + b, then a again
    sessions.close("a")  # the tab went
    assert sessions.open == 0 and sessions.opened == sessions.closed
    assert sessions.step("a", rgb) is None and sessions.open == 0  # a late queued frame


def test_live_frame_arriving_while_busy_is_dropped(engine):
    from ui.live import LiveSession

    s = LiveSession(engine, fps=30.0)
    try:
        rgb = _demo_frames(1)[0]
        with s._busy:  # the previous frame still being processed
            assert s.step(rgb) is None
        assert s.dropped == 1 and s.frames == 0
        assert s.step(rgb) is not None and s.frames == 1
    finally:
        s.close()
    assert s.step(rgb) is None  # closed: nothing runs


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"max_repeat": 0}])
def test_live_session_checks_arguments(engine, kwargs):
    from ui.live import LiveSession

    args = {"fps": 30.0, **kwargs}
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        LiveSession(engine, **args)


def test_events_html_marks_under_way_final_and_withdrawn():
    from engine.contracts import Event, EventStart
    from ui.live import events_html

    def iv(cls, id_, emotion):
        return cls(onset_frame=10, apex_frame=12, offset_frame=20, onset_s=0.33, offset_s=0.67,
                   kind="micro", emotion=emotion, score=0.8, id=id_)

    rows = {(0, 1): ("final", iv(Event, 1, "positive")),
            (0, 2): ("withdrawn", iv(EventStart, 2, "negative")),
            (0, 3): ("under way", iv(EventStart, 3, "surprise"))}
    page = events_html(rows)
    assert page.index('class="under-way"') < page.index('class="withdrawn"') \
        < page.index('class="final"')  # newest first
    assert "#2ca02c" in page  # tab:green for positive
    assert "No expression yet" in events_html({})


def test_live_sessions_and_file_analysis_run_the_tracker_settings(engine, tmp_path):
    """The page's tracker settings reach its chains: a live tab's chain with the hold off runs
    no appearance stage, and a file analysed with the hold off ends the real laugh of
    ``WolfgangLanger_Pexels`` (240-471) where the detector does, holding nothing."""
    from engine.config import TrackerConfig
    from training.real import clip_path
    from ui.file_analysis import analyze_file
    from ui.live import LiveSessions

    off = TrackerConfig(appearance_hold=False)
    sessions = LiveSessions(engine, fps=30.0, clock=FakeClock(), tracker_cfg=off)
    sessions.step("tab", _demo_frames(1)[0])
    chain = sessions._live["tab"].chain
    assert chain.spotter.tracker_cfg == off and chain.appearance is None
    sessions.close_all()

    result = analyze_file(clip_path("WolfgangLanger_Pexels"), engine, tmp_path, video=False,
                          tracker_cfg=off)
    laugh = [e for e in result.events if e.emotion == "positive" and e.offset_frame >= 240]
    assert laugh and max(e.offset_frame for e in laugh) < 300, laugh
    assert result.summary.events["held"] == 0
