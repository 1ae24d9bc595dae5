"""The capture thread: reads a source as fast as it gives frames and fills the ring.

Live sources get ``drop_oldest`` (the camera is never blocked); files get
``block`` (every frame reaches the pipeline). The end of the stream and any
source error are handed to the ring from ``finally``, so the consumer always
sees an explicit end or the error, never a hang.
"""
from __future__ import annotations

import threading
import time

from stream.ring import Policy, RingBuffer
from stream.sources import FrameSource


def default_policy(source: FrameSource) -> Policy:
    """``drop_oldest`` for live sources, ``block`` for everything else."""
    return Policy.DROP_OLDEST if getattr(source, "live", False) else Policy.BLOCK


class CaptureThread:
    """Reads ``source`` on a daemon thread into ``ring``.

    Args:
        source: an opened :class:`~stream.sources.FrameSource`.
        ring: the ring to fill; it is closed when capture ends.
        max_frames: stop after this many frames (``None``: until the source ends).
        realtime: pace a file at its own timestamps (simulates a camera).
        stop_timeout_s: :meth:`stop` returns within this many seconds.
    """

    def __init__(self, source: FrameSource, ring: RingBuffer, max_frames: int | None = None,
                 realtime: bool = False, stop_timeout_s: float = 1.0) -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.source, self.ring = source, ring
        self.max_frames, self.realtime = max_frames, realtime
        self.stop_timeout_s = stop_timeout_s
        self.frames_read = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)

    def start(self) -> "CaptureThread":
        self._thread.start()
        return self

    def _run(self) -> None:
        error: BaseException | None = None
        t0_wall = t0_media = None
        try:
            while not self._stop.is_set():
                if self.max_frames is not None and self.frames_read >= self.max_frames:
                    break
                frame = self.source.read()
                if frame is None:
                    break
                self.frames_read += 1
                if self.realtime:
                    if t0_wall is None:
                        t0_wall, t0_media = time.monotonic(), frame.t_capture
                    delay = (frame.t_capture - t0_media) - (time.monotonic() - t0_wall)
                    if delay > 0 and self._stop.wait(delay):
                        break
                # Poll in short slices under `block` so stop() is honoured promptly.
                while not self.ring.put(frame, timeout=0.1):
                    if self._stop.is_set() or self.ring.closed:
                        break
        except BaseException as exc:  # handed to the consumer, which reports it
            error = self.error = exc
        finally:
            self.ring.close(error)

    def stop(self) -> None:
        """Ask the thread to finish and wait (at most ``stop_timeout_s``)."""
        self._stop.set()
        self.ring.close()
        self._thread.join(self.stop_timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
