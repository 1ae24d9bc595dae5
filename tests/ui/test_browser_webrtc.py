"""The WebRTC page in headless Debian Chromium with the demo clip as its fake camera: it connects,
annotated frames come back and play, event rows appear; closing the tab frees the peer."""
from __future__ import annotations

import time

import pytest

from tests.ui.conftest import run_webrtc_server, save_screenshot

pytestmark = pytest.mark.browser
pytest.importorskip("aiortc", reason="the `ui` extra (aiortc) is not installed")

#: What the page shows, read in one go.
PAGE_STATE = """() => {
  const v = document.getElementById('remote');
  const s = window.fednSession;
  return {
    state: document.getElementById('state').textContent,
    played: v.getVideoPlaybackQuality().totalVideoFrames,
    width: v.videoWidth,
    rows: document.querySelectorAll('#events tbody tr').length,
    finals: document.querySelectorAll('#events tbody tr.final').length,
    latencies: s ? s.latencies.length : 0,
    latency: document.getElementById('latency').textContent,
    fps: document.getElementById('fps').textContent,
    error: document.getElementById('error').textContent,
  };
}"""


@pytest.fixture(scope="module")
def server():
    with run_webrtc_server("--max-peers", "2", "--idle-timeout", "3") as srv:
        yield srv


def wait_until(page, check, timeout_s: float) -> dict:
    t0 = time.monotonic()
    while True:
        state = page.evaluate(PAGE_STATE)
        if check(state):
            return state
        if state["error"] or time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"page state after {time.monotonic() - t0:.0f} s: {state}")
        time.sleep(0.5)


def test_webrtc_page_streams_the_camera_and_lists_events(server, page, tmp_path):
    page.goto(server.url + "/")
    page.wait_for_selector("#start:not([disabled])")
    page.click("#start")
    state = wait_until(page, lambda s: s["state"] == "live" and s["played"] > 30, 30)
    assert state["width"] == 640  # the returned track is the camera's size
    # the page reads its frame numbers back from the returned (annotated) frames
    state = wait_until(page, lambda s: s["latencies"] > 10 and s["latency"] != "–", 15)
    # the clip's first two expressions end at 3.1 s and 5.4 s: wait for their final rows
    state = wait_until(page, lambda s: s["finals"] >= 2, 40)
    stats = server.stats()
    assert stats["peers"] == 1 and stats["per_peer"][0]["frames_sent"] > 30
    page.set_viewport_size({"width": 1280, "height": 650})  # the page without empty space
    shot = save_screenshot(page, "webrtc.png", tmp_path, docs_name="webrtc.png")
    assert shot.stat().st_size > 20_000
    assert 0 < float(state["latency"]) < 2000 and float(state["fps"]) > 0
    assert not [e for e in page.console_errors if "favicon" not in e], page.console_errors
    # a tab closed mid-stream: the server frees the peer within a few seconds
    page.close()
    t0 = time.monotonic()
    while server.stats()["peers"] and time.monotonic() - t0 < 8:
        time.sleep(0.2)
    assert server.stats()["peers"] == 0, server.output()[-2000:]


def test_stop_button_ends_the_stream_with_a_summary(server, page):
    page.goto(server.url + "/")
    page.click("#start")
    wait_until(page, lambda s: s["state"] == "live" and s["played"] > 10, 30)
    page.click("#stop")
    page.wait_for_selector("#state.idle", timeout=10_000)
    log = page.inner_text("#log")
    assert "summary" in log and "frames processed" in log, log
    t0 = time.monotonic()
    while server.stats()["peers"] and time.monotonic() - t0 < 8:
        time.sleep(0.2)
    assert server.stats()["peers"] == 0
