"""The Gradio page in headless Chromium, the demo clip as its camera (``make test-browser``).

Live tab: the browser webcam streams to the page, the annotated stream shows,
events appear in the table, and the session's chain is freed when the tab
leaves. Analyze tab: the demo clip button gives the timeline plot and the
events. Screenshots go to the test's tmp folder and ``docs/img/`` (README).
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from tests.ui.conftest import save_screenshot, served_gradio

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def served():
    """(app, url): the page on a free loopback port with the shipped engine."""
    from engine.runtime import Engine

    with Engine.load("auto", log=lambda _: None) as engine, served_gradio(engine) as app_url:
        yield app_url


def _png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)


def _status(page) -> tuple[float, int]:
    st = page.locator("#live-status")
    return float(st.get_attribute("data-fps") or 0), int(st.get_attribute("data-frames") or 0)


def test_live_tab_streams_the_camera_and_lists_events(served, page, tmp_path, capsys):
    app, url = served
    page.goto(url, wait_until="commit")  # offline pages never reach "network idle"
    page.locator("#live-cam").get_by_text("Click to Access Webcam").click(timeout=60_000)
    page.locator("#live-cam button.capture-button").click(timeout=30_000)  # Record
    t_start = time.monotonic()
    page.wait_for_function(
        "() => { const i = document.querySelector('#live-out img');"
        " return i && i.complete && i.naturalWidth > 0; }", timeout=60_000)
    page.wait_for_selector("#live-status[data-fps]", timeout=30_000)
    t0, (_, n0) = time.monotonic(), _status(page)
    page.wait_for_selector("#live-events tr.final", timeout=120_000)
    page.wait_for_timeout(4000)  # a few more frames and rows for the screenshot
    t1, (fps, n1) = time.monotonic(), _status(page)
    rate = (n1 - n0) / (t1 - t0)
    with capsys.disabled():
        finals = page.locator("#live-events tr.final").count()
        print(f"\n[gradio live] first final event after {t1 - 4 - t_start:.1f} s of streaming; "
              f"browser frames processed {rate:.1f}/s (overlay estimate {fps:.1f} fps), "
              f"{finals} final events")
    assert rate > 3.0 and fps > 3.0
    # The annotated stream is the camera with the overlay: its top-left score panel is dark
    # where the camera image (a bright background) is not.
    out = _png(page.locator("#live-out img").screenshot())
    cam = _png(page.locator("#live-cam video").screenshot())
    h, w = out.shape
    corner = out[int(0.05 * h):int(0.25 * h), int(0.02 * w):int(0.2 * w)]
    cam_corner = cam[int(0.05 * cam.shape[0]):int(0.25 * cam.shape[0]),
                     int(0.02 * cam.shape[1]):int(0.2 * cam.shape[1])]
    assert corner.mean() < cam_corner.mean() - 40, (corner.mean(), cam_corner.mean())
    row = page.locator("#live-events tr.final").first.inner_text()
    assert any(k in row for k in ("micro", "macro"))
    save_screenshot(page, "gradio_live.png", tmp_path, "gradio_live.png")
    assert app.live_sessions.open == 1
    page.goto("about:blank")  # the tab leaves: its chain is freed
    deadline = time.monotonic() + 30
    while (app.live_sessions.open or not app.live_sessions.closed) and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    assert app.live_sessions.open == 0 and app.live_sessions.closed >= 1


def test_analyze_tab_runs_the_demo_clip(served, page, tmp_path, capsys):
    _, url = served
    page.set_viewport_size({"width": 1280, "height": 1000})
    page.goto(url, wait_until="commit")
    page.get_by_role("tab", name="Analyze").click(timeout=60_000)
    t0 = time.monotonic()
    page.locator("#an-demo").click()
    page.wait_for_selector("#an-plot img", timeout=240_000)
    page.wait_for_function("() => /macro|micro/.test("
                           "document.querySelector('#an-events')?.innerText || '')",
                           timeout=30_000)
    with capsys.disabled():
        print(f"\n[gradio analyze] demo clip from the button to the plot: "
              f"{time.monotonic() - t0:.1f} s in the browser")
    summary = page.locator("#an-summary").inner_text()
    assert "demo.mp4" in summary and "events in 750 frames" in summary
    assert "overall" in page.locator("#an-scores").inner_text()  # the demo labels were used
    page.locator("#an-plot").scroll_into_view_if_needed()
    save_screenshot(page, "gradio_analyze.png", tmp_path, "gradio_analyze.png")
