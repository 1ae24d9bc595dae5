"""A preallocated ring buffer of frames between the capture and pipeline threads.

The ring owns ``capacity + 1`` image slots allocated on the first frame: up to
``capacity`` frames wait to be read and one more is *held* by the consumer (the
frame it is working on), so the producer never overwrites an image that is in
use and nothing is allocated per frame in steady state. The storage is bounded
(``max_bytes``): a ring of very large frames (4K) holds fewer of them.

Back-pressure is a named policy (:class:`Policy`) with counters:

* ``drop_oldest`` (live sources): ``put`` never blocks; when the ring is full
  the oldest waiting frame is dropped and counted.
* ``block`` (files): ``put`` waits for room; no frame is ever lost.

The end of the stream and producer errors reach the consumer explicitly:
``get`` returns ``None`` once the ring is closed and drained, and re-raises the
producer's error (after the frames before it) when there was one.
"""
from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

from engine.contracts import Frame


class Policy(str, enum.Enum):
    """What ``put`` does when the ring is full."""

    DROP_OLDEST = "drop_oldest"  # live: never block the camera, drop (and count) the oldest
    BLOCK = "block"  # files: wait for the consumer, lose nothing


@dataclass(frozen=True)
class RingStats:
    """Counters of a ring (a snapshot).

    Attributes:
        put: frames offered by the producer.
        got: frames handed to the consumer.
        dropped: frames dropped by ``drop_oldest`` (never under ``block``).
        resized: frames whose size differed from the first one and were resized.
        high_water: most frames ever waiting at once (≤ capacity).
        blocked_s: total seconds the producer waited under ``block``.
    """

    put: int
    got: int
    dropped: int
    resized: int
    high_water: int
    blocked_s: float


#: Image storage a ring may hold. 64 frames of 640×360 take 45 MB and of 1080p 404 MB;
#: 4K frames (25 MB each) would take 1.6 GB, so their ring holds fewer (20).
MAX_BYTES = 512 * 2**20


class RingBuffer:
    """Fixed-capacity frame queue with a back-pressure policy.

    Args:
        capacity: frames that may wait (≥ 1); fewer when ``capacity + 1`` frames of the
            first frame's size would exceed ``max_bytes`` (at least 1 still waits).
        policy: :class:`Policy` or its string value.
        max_bytes: bound on the image storage (default :data:`MAX_BYTES`).
    """

    def __init__(self, capacity: int, policy: Policy | str = Policy.BLOCK,
                 max_bytes: int = MAX_BYTES) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_bytes = max_bytes
        try:
            self.policy = Policy(policy)
        except ValueError:
            raise ValueError(f"policy must be one of {[p.value for p in Policy]}, "
                             f"got {policy!r}") from None
        self.capacity = capacity
        self._slots: np.ndarray | None = None  # (capacity + 1, H, W, 3) uint8
        self._free: deque[int] = deque(range(capacity + 1), maxlen=capacity + 1)
        self._queue: deque[tuple[int, int, float, float]] = deque(maxlen=capacity)  # slot, index, t, arrival
        self._held: int | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._put = self._got = self._dropped = self._resized = self._high = 0
        self._blocked_s = 0.0

    # -- producer side ----------------------------------------------------------------------
    def put(self, frame: Frame, timeout: float | None = None) -> bool:
        """Store a copy of ``frame``; returns False only if the ring was closed (or timed out)."""
        with self._cond:
            if self._closed:
                return False
            self._put += 1
            if self._slots is None:
                h, w = frame.image.shape[:2]
                fit = max(2, self.max_bytes // max(1, h * w * 3))  # slots within the bound
                if fit < self.capacity + 1:  # nothing is queued yet: shrink the ring now
                    self.capacity = fit - 1
                    self._free = deque(range(fit), maxlen=fit)
                    self._queue = deque(maxlen=self.capacity)
                self._slots = np.empty((self.capacity + 1, h, w, 3), np.uint8)
            if len(self._queue) == self.capacity:
                if self.policy is Policy.DROP_OLDEST:
                    slot, *_ = self._queue.popleft()
                    self._free.append(slot)
                    self._dropped += 1
                else:
                    start = time.monotonic()
                    ok = self._cond.wait_for(
                        lambda: self._closed or len(self._queue) < self.capacity, timeout)
                    self._blocked_s += time.monotonic() - start
                    if not ok or self._closed:
                        self._put -= 1
                        return False
            slot = self._free.popleft()
            self._store(slot, frame.image)
            self._queue.append((slot, frame.index, frame.t_capture, time.monotonic()))
            self._high = max(self._high, len(self._queue))
            self._cond.notify_all()
            return True

    def _store(self, slot: int, image: np.ndarray) -> None:
        assert self._slots is not None
        target = self._slots[slot]
        if image.shape == target.shape:
            np.copyto(target, image)
        else:  # a source changed resolution mid-stream: keep the first size, count it
            cv2.resize(image, (target.shape[1], target.shape[0]), dst=target)
            self._resized += 1

    def close(self, error: BaseException | None = None) -> None:
        """No more frames; the consumer drains what is left, then sees the end (or ``error``)."""
        with self._cond:
            self._closed = True
            if error is not None and self._error is None:
                self._error = error
            self._cond.notify_all()

    # -- consumer side ----------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Frame | None:
        """Next frame in order, or ``None`` at the end of the stream.

        The returned image is a view into a ring slot that stays valid until the
        next ``get`` call (the consumer holds one slot at a time).

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            BaseException: the producer's error, once the frames before it are read.
        """
        with self._cond:
            if self._held is not None:
                self._free.append(self._held)
                self._held = None
                self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._queue or self._closed, timeout):
                raise TimeoutError(f"no frame within {timeout} s")
            if not self._queue:
                if self._error is not None:
                    raise self._error
                return None
            slot, index, t, arrival = self._queue.popleft()
            self._held = slot
            self._got += 1
            self._cond.notify_all()
            assert self._slots is not None
            return Frame(index=index, t_capture=t, image=self._slots[slot], t_arrival=arrival)

    def drain_to_latest(self) -> int:
        """Drop every waiting frame but the newest (a consumer that fell behind); returns count."""
        with self._cond:
            n = 0
            while len(self._queue) > 1:
                slot, *_ = self._queue.popleft()
                self._free.append(slot)
                n += 1
            self._dropped += n
            self._cond.notify_all()
            return n

    # -- introspection ----------------------------------------------------------------------
    def __len__(self) -> int:
        with self._cond:
            return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def nbytes(self) -> int:
        """Bytes of image storage (fixed after the first frame)."""
        return 0 if self._slots is None else self._slots.nbytes

    def stats(self) -> RingStats:
        with self._cond:
            return RingStats(self._put, self._got, self._dropped, self._resized, self._high,
                             self._blocked_s)
