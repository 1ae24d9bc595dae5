"""``webcam:N``: a camera through OpenCV, which may go away and come back (``reconnect_s``)."""
from __future__ import annotations

import math
import threading
import time

import cv2
import numpy as np

from engine.contracts import Frame
from stream.source_base import SourceError, _CaptureSource, check_fps, plausible_fps


class WebcamSource(_CaptureSource):
    """A camera (``webcam:N``) through OpenCV; reports what the camera actually gives.

    When the camera stops giving frames (unplugged, taken by another program) the
    source says ``source_lost``; with ``reconnect_s > 0`` it then tries to open the
    camera again for up to that long (``source_resumed`` with the gap when it
    comes back), else — or when it does not come back — the stream ends there.

    Args:
        index: camera number (``/dev/videoN``).
        width, height, fps: what to ask the camera for.
        open_timeout_s: how long to wait for the first frame.
        reconnect_s: how long to keep trying after the camera is lost (0: stop).
    """

    live = True
    #: Seconds between two attempts to reopen a lost camera.
    RETRY_EVERY_S = 0.5

    def __init__(self, index: int, width: int = 640, height: int = 360, fps: float = 30.0,
                 open_timeout_s: float = 5.0, reconnect_s: float = 0.0) -> None:
        super().__init__()
        if index < 0:
            raise ValueError(f"camera index must be >= 0, got {index}")
        if not (math.isfinite(reconnect_s) and reconnect_s >= 0):
            raise ValueError(f"reconnect_s must be a finite number >= 0, got {reconnect_s!r}")
        self.index, self.name = index, f"webcam:{index}"
        self.requested = (width, height, check_fps(fps))
        self.open_timeout_s, self.reconnect_s = open_timeout_s, float(reconnect_s)
        self._fps, self._size = fps, (width, height)
        self._closing = threading.Event()
        self.reconnects = 0

    def _connect(self, timeout_s: float) -> tuple[cv2.VideoCapture, np.ndarray] | str:
        """An opened capture and its first frame, or why not (one line)."""
        width, height, fps = self.requested
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            return (f"camera {self.name} is not available (is it connected and free? "
                    "list cameras with `ls /dev/video*`)")
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        cap.set(cv2.CAP_PROP_FPS, fps)
        deadline = time.monotonic() + timeout_s
        ok, first = cap.read()
        while not ok and time.monotonic() < deadline and not self._closing.is_set():
            time.sleep(0.05)
            ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            return (f"camera {self.name} opened but gave no frame within "
                    f"{timeout_s:.0f} s (in use by another program?)")
        return cap, first

    def open(self) -> "WebcamSource":
        self._closing.clear()
        got = self._connect(self.open_timeout_s)
        if isinstance(got, str):
            raise SourceError(got)
        cap, first = got
        got_fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = float(got_fps) if plausible_fps(got_fps) else self.requested[2]
        self._size = (first.shape[1], first.shape[0])
        self._cap, self._opened, self._next_index, self._read = cap, True, 0, 0
        self._pending: np.ndarray | None = first  # the first frame is a frame too
        return self

    def close(self) -> None:
        self._closing.set()  # ends a reconnect wait on the capture thread
        super().close()

    def read(self) -> Frame | None:
        self._require_open()
        while True:
            cap = self._cap
            if cap is None:
                return None
            if self._pending is not None:
                ok, image, self._pending = True, self._pending, None
            else:
                ok, image = cap.read()
            t = time.monotonic()
            if ok and image is not None:
                index = self._next_index
                self._next_index += 1
                self._read += 1
                return Frame(index=index, t_capture=t, image=image)
            if not self._reconnect():
                return None

    def _reconnect(self) -> bool:
        """The camera gave no frame: say so, and try to get it back (``reconnect_s``)."""
        lost_at = time.monotonic()
        self._say("source_lost", self._next_index, reconnect_s=self.reconnect_s)
        if self._cap is not None:
            self._cap.release()
        deadline = lost_at + self.reconnect_s
        while self.reconnect_s > 0 and not self._closing.is_set():
            got = self._connect(min(1.0, max(0.0, deadline - time.monotonic())))
            if not isinstance(got, str):
                if self._closing.is_set():  # closed while it connected: do not leak it
                    got[0].release()
                    break
                self._cap, self._pending = got
                self.reconnects += 1
                self._say("source_resumed", self._next_index,
                          gap_s=round(time.monotonic() - lost_at, 3))
                return True
            if time.monotonic() >= deadline or self._closing.wait(self.RETRY_EVERY_S):
                break
        self._cap = None
        return False
