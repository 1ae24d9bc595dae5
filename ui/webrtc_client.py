"""An aiortc client for the WebRTC server: plays a clip, collects the events and returned frames.

Used by the tests and by ``bench/webrtc.py``::

    track = ClipTrack("stream/demo/demo.mp4", fps=30, max_frames=300)
    async with ClientPeer("http://127.0.0.1:8080", track) as peer:
        await peer.wait_sent()                   # the clip has been sent
        summary = await peer.finish()            # "finish": tail records + summary
    peer.records                                 # every JSON record received, in order
    peer.returned                                # (frame number, receive time) per returned frame

``run_server(...)`` starts the server itself as a subprocess on 127.0.0.1 (ICE on
loopback) for as long as a ``with`` block runs.

Every frame sent carries its number in a marker strip (:mod:`ui.frame_marker`),
so a returned frame is matched to the frame it came from and timed.
aiortc / aiohttp / PyAV are imported lazily.
"""
from __future__ import annotations

import asyncio
import fractions
import json
import re
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ui import frame_marker

#: RTP video clock (90 kHz).
VIDEO_CLOCK = 90000


def clip_track_class():
    """The :class:`ClipTrack` class (built on first use so aiortc is imported lazily)."""
    global _CLIP
    if _CLIP is not None:
        return _CLIP
    import cv2
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class ClipTrack(MediaStreamTrack):
        """A video file played at ``fps`` in real time, each frame stamped with its number.

        Args:
            path: video file (read with OpenCV).
            fps: sending rate; pts advance by 1/fps.
            max_frames: stop after this many (default: the whole file).
            loop: start over at the end of the file (until ``max_frames``).
            stamp: paint the frame number (:mod:`ui.frame_marker`).
            start: an ``asyncio.Event`` the first frame waits for (to start several at once).

        A sender that falls behind (a busy machine) skips frames like a camera
        would, so the clip keeps its real-time pace and frame numbers; the pts
        is always the frame's time in the clip.

        Attributes:
            sent_at: frame number → ``time.monotonic()`` when it was handed to the encoder.
            skipped: frames skipped because the sender was late.
            done: set once the last frame was sent.
        """

        kind = "video"

        def __init__(self, path: str | Path, fps: float = 30.0, max_frames: int | None = None,
                     loop: bool = False, stamp: bool = True,
                     start: asyncio.Event | None = None) -> None:
            super().__init__()
            if not fps > 0:
                raise ValueError(f"fps must be > 0, got {fps!r}")
            if max_frames is not None and max_frames < 1:
                raise ValueError(f"max_frames must be >= 1, got {max_frames!r}")
            self.path, self.fps, self.max_frames = str(path), fps, max_frames
            self.loop, self.stamp, self.start = loop, stamp, start
            self._cap = cv2.VideoCapture(self.path)
            if not self._cap.isOpened():
                raise ValueError(f"cannot open video {self.path}")
            self.sent_at: dict[int, float] = {}
            self.count = 0  # index of the next frame of the clip (skipped ones included)
            self.skipped = 0
            self.done = asyncio.Event()
            self._t0: float | None = None

        def _read(self):
            ok, image = self._cap.read()
            if not ok and self.loop and self.count:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, image = self._cap.read()
            return image if ok else None

        async def recv(self):
            import av

            if self.readyState != "live" or (self.max_frames and self.count >= self.max_frames):
                self._end()
                raise MediaStreamError
            if self._t0 is None:
                if self.start is not None:
                    await self.start.wait()
                self._t0 = time.monotonic()
            else:  # real-time pacing from the first frame (no drift)
                wait = self._t0 + self.count / self.fps - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                # like a camera, a late sender skips to the frame that is due now
                due = int((time.monotonic() - self._t0) * self.fps)
                while self.count < due and not (self.max_frames and
                                                 self.count + 1 >= self.max_frames):
                    if not self._skip():
                        break
            image = self._read()
            if image is None:
                self._end()
                raise MediaStreamError
            n = self.count
            if self.stamp:
                frame_marker.stamp(image, n)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = int(round(n * VIDEO_CLOCK / self.fps))  # the clip's own time
            frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
            self.sent_at[n] = time.monotonic()
            self.count += 1
            return frame

        def _skip(self) -> bool:
            ok = self._cap.grab()
            if not ok and self.loop:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok = self._cap.grab()
            if ok:
                self.count += 1
                self.skipped += 1
            return ok

        def _end(self) -> None:
            self.done.set()
            self._cap.release()

        def stop(self) -> None:
            super().stop()
            self.done.set()

    _CLIP = ClipTrack
    return ClipTrack


_CLIP = None


def ClipTrack(*args, **kwargs):  # noqa: N802 - reads like the class it builds
    """A :class:`ClipTrack` (see :func:`clip_track_class`)."""
    return clip_track_class()(*args, **kwargs)


def restrict_ice_to_loopback() -> None:
    """ICE host candidates on 127.0.0.1 only, in this process (as the server's ``--ice-loopback``)."""
    from ui.webrtc_server import restrict_ice_to_loopback as restrict

    restrict()


class ClientPeer:
    """One client connection to the server at ``url``, sending ``track``.

    Args:
        url: the server's base URL (``http://127.0.0.1:PORT``).
        track: the video track to send (a :func:`ClipTrack`).
        keep_every: keep a decoded copy of every n-th returned frame (``images``), 0: none.
        loopback: restrict ICE to 127.0.0.1 (the server must run with ``--ice-loopback``).
        extra_tracks: more tracks to offer next to ``track`` (e.g. audio).

    Attributes:
        records: every JSON record received on ``events``, in order.
        record_times: ``time.monotonic()`` at which each record arrived.
        returned: (frame number or None, receive time) per returned frame.
        images: (frame number, H×W×3 BGR) of the kept returned frames.
    """

    def __init__(self, url: str, track, keep_every: int = 0, loopback: bool = True,
                 extra_tracks: tuple = ()) -> None:
        self.url, self.track, self.keep_every = url.rstrip("/"), track, keep_every
        self.extra_tracks = tuple(extra_tracks)
        if loopback:
            restrict_ice_to_loopback()
        self.records: list[dict] = []
        self.record_times: list[float] = []
        self.returned: list[tuple[int | None, float]] = []
        self.images: list[tuple[int | None, np.ndarray]] = []
        self.pc = None
        self.channel = None
        self._summary = None
        self._got_summary: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []

    async def connect(self, timeout: float = 20.0) -> None:
        """Offers, gets the answer, and waits until the connection and channel are up.

        Raises:
            ConnectionRefusedError: the server answered the offer with an HTTP error
                (``.status`` and the server's one-line reason in the message).
            TimeoutError: not connected within ``timeout`` s.
        """
        import aiohttp
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        self._got_summary = asyncio.Event()
        self.pc = pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.channel = pc.createDataChannel("events")
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        self.channel.on("message", self._on_message)
        pc.on("track", lambda t: self._tasks.append(asyncio.ensure_future(self._receive(t))))
        pc.addTrack(self.track)
        for extra in self.extra_tracks:
            pc.addTrack(extra)
        await pc.setLocalDescription(await pc.createOffer())
        body = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{self.url}/offer", json=body) as resp:
                text = await resp.text()
                if resp.status != 200:
                    await pc.close()
                    err = ConnectionRefusedError(f"HTTP {resp.status}: {text.strip()}")
                    err.status = resp.status  # type: ignore[attr-defined]
                    raise err
                answer = json.loads(text)
        await pc.setRemoteDescription(RTCSessionDescription(**answer))
        try:
            await asyncio.wait_for(opened.wait(), timeout)
        except asyncio.TimeoutError:
            await pc.close()
            raise TimeoutError(f"not connected within {timeout:g} s "
                               f"(state {pc.connectionState})") from None

    def _on_message(self, message) -> None:
        record = json.loads(message)
        self.records.append(record)
        self.record_times.append(time.monotonic())
        if record.get("type") == "summary":
            self._summary = record
            self._got_summary.set()

    async def _receive(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame = await track.recv()
                t = time.monotonic()
                luma = frame.to_ndarray(format="gray")  # the marker is grey: luma is enough
                n = frame_marker.read(luma)
                self.returned.append((n, t))
                if self.keep_every and len(self.returned) % self.keep_every == 0:
                    self.images.append((n, frame.to_ndarray(format="bgr24")))
        except (MediaStreamError, asyncio.CancelledError):
            pass

    async def wait_sent(self, timeout: float | None = None) -> None:
        """Waits until the track has sent its last frame."""
        await asyncio.wait_for(self.track.done.wait(), timeout)

    async def finish(self, timeout: float = 15.0) -> dict:
        """Sends ``finish`` and waits for the summary record; returns it.

        Raises:
            ConnectionError: the channel is closed (the server ended this peer).
        """
        if self.channel.readyState != "open":
            raise ConnectionError(f"the events channel is {self.channel.readyState}: the server "
                                  "closed this peer (see its log)")
        self.channel.send("finish")
        await asyncio.wait_for(self._got_summary.wait(), timeout)
        return self._summary

    async def close(self) -> None:
        """Closes the connection (without ``finish``: a peer that just leaves)."""
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            await self.pc.close()

    async def __aenter__(self) -> "ClientPeer":
        await self.connect()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


ROOT = Path(__file__).resolve().parents[1]


class ServerProcess:
    """A running ``python -m ui.webrtc_server``: its ``url``, ``proc`` and output ``lines``."""

    def __init__(self, proc: subprocess.Popen, url: str, lines: list[str]) -> None:
        self.proc, self.url, self.lines = proc, url, lines

    def stats(self) -> dict:
        """``GET /stats`` as a dict."""
        import urllib.request

        with urllib.request.urlopen(self.url + "/stats", timeout=10) as resp:
            return json.loads(resp.read())

    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def run_server(*args: str, start_timeout_s: float = 90.0) -> Iterator[ServerProcess]:
    """Starts the WebRTC server on 127.0.0.1 (a free port, ``--ice-loopback``) with ``args``.

    Waits for its "serving on" line (RuntimeError with its output if it does
    not come); stops it with SIGTERM afterwards (SIGKILL if it is still running
    20 s later).
    """
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui.webrtc_server", "--host", "127.0.0.1", "--port", "0",
         "--ice-loopback", *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: list[str] = []
    found: list[str] = []
    ready = threading.Event()

    def pump() -> None:  # keeps reading so the pipe never fills up
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"serving on (http://\S+?)/? ", line)
            if m and not found:
                found.append(m.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(start_timeout_s):
            raise RuntimeError(f"server did not start within {start_timeout_s:g} s:\n"
                               + "".join(lines))
        if not found:
            proc.wait(10)
            raise RuntimeError(f"server exited ({proc.returncode}) before serving:\n"
                               + "".join(lines))
        yield ServerProcess(proc, found[0], lines)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
