"""What every frame source shares: the protocol, the base class, frame-rate checks, errors.

The sources themselves are in :mod:`stream.sources` (video file, in-memory array,
``open_source``), :mod:`stream.camera` (``webcam:N``) and :mod:`stream.frame_folder`
(image sequences); import them from :mod:`stream.sources`.
"""
from __future__ import annotations

import math
import threading
from typing import Any, Protocol, runtime_checkable

import cv2
import numpy as np

from engine.contracts import Frame, Status

#: Frame rates a source may declare or be given: SAMM-LV is 200 fps, high-speed cameras
#: reach 1000; below 1 fps there is no expression to spot. A container reporting a rate
#: outside [MIN_FPS, MAX_FPS] (or none) gives no usable rate.
MIN_FPS, MAX_FPS = 1.0, 1000.0
#: Frame rate taken when a video's container gives no usable one and no fps was passed.
DEFAULT_FPS = 30.0

class SourceError(ValueError):
    """A source could not be opened or read; the message is one line for the user."""


def check_fps(fps: Any, name: str = "fps") -> float:
    """``fps`` as a float when it is a usable frame rate, else a ValueError naming ``name``.

    Usable: a finite number in [:data:`MIN_FPS`, :data:`MAX_FPS`]. ``inf`` would put
    every frame at t = 0; a negative or zero rate has no meaning.
    """
    try:
        value = float(fps)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {fps!r}") from None
    if not (math.isfinite(value) and MIN_FPS <= value <= MAX_FPS):
        raise ValueError(f"{name} must be a frame rate in [{MIN_FPS:g}, {MAX_FPS:g}], "
                         f"got {fps!r}")
    return value


def plausible_fps(fps: Any) -> bool:
    """Whether a container's reported frame rate can be used as is."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and MIN_FPS <= value <= MAX_FPS


@runtime_checkable
class FrameSource(Protocol):
    """What every frame source provides."""

    live: bool

    def open(self) -> "FrameSource": ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...

    @property
    def fps(self) -> float: ...

    @property
    def size(self) -> tuple[int, int]: ...

    @property
    def frame_count(self) -> int | None: ...

    @property
    def frames_promised(self) -> int | None: ...

    @property
    def frames_read(self) -> int: ...

    def take_statuses(self) -> list[Status]: ...


class _SourceBase:
    """Context-manager plumbing, the open-before-read check and the status list shared by
    all sources."""

    live = False
    name = "source"

    def __init__(self) -> None:
        self._opened = False
        self._next_index = 0
        self._fps = 0.0
        self._size = (0, 0)
        self._count: int | None = None
        self._read = 0
        self._statuses: list[Status] = []
        self._status_lock = threading.Lock()  # read() runs on the capture thread

    def __enter__(self):
        # An already open source is used as it is (the command line opens it before
        # loading the engine, so bad input fails fast; the pipeline then enters it).
        return self if self._opened else self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._opened = False

    def _require_open(self) -> None:
        if not self._opened:
            raise RuntimeError(f"{self.name}: call open() before read()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"

    @property
    def fps(self) -> float:
        return self._fps

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def frame_count(self) -> int | None:
        """Frames the source holds (``None`` when unknown), e.g. for a progress bar."""
        return self._count

    @property
    def frames_promised(self) -> int | None:
        """Frames the container (or a folder's numbering) promised; ``None`` when unknown."""
        return self._count

    @property
    def frames_read(self) -> int:
        """Frames decoded and returned by :meth:`read` so far."""
        return self._read

    def take_statuses(self) -> list[Status]:
        """The statuses said since the last call, oldest first (thread-safe)."""
        with self._status_lock:
            out, self._statuses = self._statuses, []
        return out

    def _say(self, status: str, frame: int, **detail: Any) -> None:
        with self._status_lock:
            self._statuses.append(Status(status, frame, detail))


class _CaptureSource(_SourceBase):
    """Sources read through ``cv2.VideoCapture`` (files and cameras)."""

    def __init__(self) -> None:
        super().__init__()
        self._cap: cv2.VideoCapture | None = None

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap, self._opened = None, False


def as_bgr(image: Any, where: str = "image") -> np.ndarray:
    """An H×W×3 uint8 BGR view or copy of a gray (H×W or H×W×1), BGR or BGRA uint8 image.

    Raises:
        ValueError: any other shape or dtype (the message names ``where``).
    """
    img = np.asarray(image)
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
        return img
    if img.dtype == np.uint8 and img.ndim == 2 and img.size:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] in (1, 4) and img.size:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR if img.shape[2] == 1 else cv2.COLOR_BGRA2BGR)
    raise ValueError(f"{where} must be an H×W×3 (BGR), H×W×4 (BGRA) or H×W (gray) uint8 "
                     f"image, got shape {img.shape} dtype {img.dtype}")
