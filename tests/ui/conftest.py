"""Shared browser fixtures: the demo clip as a fake camera, and headless Debian Chromium.

Chromium's fake camera (``--use-file-for-fake-video-capture``) plays a raw
YUV4MPEG2 (``.y4m``) file in a loop at the file's frame rate; we write one from
the demo clip with OpenCV (raw I420 frames, no encoder needed). The browser is
Debian's ``/usr/bin/chromium`` driven by playwright (``playwright install``
cannot download browsers here). ``getUserMedia`` needs a secure context: serve
the page from ``http://127.0.0.1:PORT`` (``about:blank`` / ``set_content`` have
no ``navigator.mediaDevices``). Tests that use these fixtures skip with a
clear reason when either is missing.
"""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_CLIP = ROOT / "stream" / "demo" / "demo.mp4"
CHROMIUM = Path("/usr/bin/chromium")

#: Size, rate and length of the fake-camera clip (the demo clip is 640×360, 30 fps, 25 s).
Y4M_SIZE = (640, 360)
Y4M_FPS = 30
Y4M_SECONDS = 12.0

#: Flags for a headless, offline, fake-camera Chromium (the y4m flag is added per launch).
CHROMIUM_ARGS = (
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def write_y4m(src: Path, dst: Path, seconds: float = Y4M_SECONDS,
              size: tuple[int, int] = Y4M_SIZE, fps: int = Y4M_FPS) -> int:
    """Writes the first ``seconds`` of video ``src`` as a raw I420 ``.y4m``; returns frames written.

    Frames are resized to ``size`` (W, H) when the clip differs; the source frame
    rate is assumed to be ``fps`` (true of the demo clip).
    """
    w, h = size
    if w % 2 or h % 2:
        raise ValueError(f"size must be even for I420, got {size}")
    cap = cv2.VideoCapture(str(src))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {src}")
    n_max = int(round(seconds * fps))
    n = 0
    try:
        with open(dst, "wb") as f:
            # C420jpeg: the 4:2:0 layout cv2's I420 conversion produces.
            f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            while n < n_max:
                ok, bgr = cap.read()
                if not ok:
                    break
                if bgr.shape[1] != w or bgr.shape[0] != h:
                    bgr = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
                i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)  # (H*3/2, W) uint8: Y, U, V planes
                f.write(b"FRAME\n")
                f.write(np.ascontiguousarray(i420).tobytes())
                n += 1
    finally:
        cap.release()
    if n == 0:
        raise ValueError(f"no frame could be read from {src}")
    return n


@pytest.fixture(scope="session")
def demo_y4m(tmp_path_factory) -> Path:
    """The first ~12 s of the demo clip as a 640×360 30 fps ``.y4m`` for Chromium's fake camera."""
    path = tmp_path_factory.mktemp("fake_camera") / "demo.y4m"
    write_y4m(DEMO_CLIP, path)
    return path


def _need_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run `make chromium` (Debian package) for browser tests")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is missing: install the `browser` extra (`make venv`)")


@pytest.fixture(scope="session")
def chromium_args(demo_y4m: Path) -> list[str]:
    """The Chromium command-line flags, with the fake camera fed from ``demo_y4m``."""
    return [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={demo_y4m}"]


@pytest.fixture
def browser(chromium_args: list[str], tmp_path_factory) -> Iterator[object]:
    """A headless Debian Chromium (playwright ``BrowserContext``) with the demo clip as its camera.

    A persistent context on a new, empty user-data dir (nothing from another run
    leaks in); camera and microphone permissions are granted for every origin.
    Yields the context; ``context.new_page()`` opens a tab. Closed afterwards.
    """
    _need_browser()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium_profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=chromium_args,
            permissions=["camera", "microphone"], viewport={"width": 1280, "height": 800})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    """A new tab of :func:`browser`; console errors are collected in ``page.console_errors``."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    tab.console_errors = errors  # type: ignore[attr-defined]
    yield tab
    tab.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served_gradio(engine) -> Iterator[tuple[object, str]]:
    """(app, url): the Gradio page of ``engine`` on a free loopback port, closed after."""
    from ui.gradio_app import build_app, serve

    app = build_app(engine)
    port = free_port()
    serve(app, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        yield app, f"http://127.0.0.1:{port}/"
    finally:
        app.close()


def save_screenshot(page, name: str, tmp_dir: Path, docs_name: str | None = None) -> Path:
    """Saves ``page`` as ``tmp_dir/name`` (test artefact) and, when given, ``docs/img/<docs_name>``."""
    out = tmp_dir / name
    page.screenshot(path=str(out), full_page=False)
    if docs_name:
        img = ROOT / "docs" / "img"
        img.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out, img / docs_name)
    return out


# --- the WebRTC server, really started (a subprocess, loopback ICE) ---------------------------
def run_webrtc_server(*args: str, start_timeout_s: float = 90.0):
    """``ui.webrtc_client.run_server``: the server as a subprocess on 127.0.0.1, ICE on loopback."""
    from ui.webrtc_client import run_server

    return run_server(*args, start_timeout_s=start_timeout_s)
