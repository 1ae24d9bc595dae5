"""The face stage one frame ahead, on its own thread: the two cores work at once.

The face stage (MediaPipe) is the floor of this stack; flow, engine and interval
tracker together cost about half as much. :class:`FaceAhead` runs
``StageChain.track`` (the face stage) on a thread and hands its results to the
caller, which runs the rest of the chain — so a frame's flow and detection
overlap the next frame's face tracking. Both libraries release the GIL in their
native code, so the overlap is real.

The hand-off is bounded and its back-pressure is a named policy, as in the ring:
``block`` (files: nothing lost) or ``drop_oldest`` (live: the oldest waiting frame
is dropped and counted; the run loop then reports the gap as ``dropped``). Order
is kept; the end of the stream and an error of the face stage reach the consumer
(the error is re-raised there, after the frames before it).
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Iterable, Iterator

from stream.chain import StageChain, Tracked
from stream.ring import Policy

#: Frames the face thread may be ahead of the rest of the chain.
DEFAULT_CAPACITY = 4


class FaceAhead:
    """Iterates over ``frames`` with their face stage already run, on a thread.

    Args:
        frames: the stream's frames (read on the face thread).
        chain: the stream's chain (its :meth:`~StageChain.track` runs on the thread).
        policy: ``block`` or ``drop_oldest`` when the consumer falls behind.
        capacity: tracked frames waiting at most.

    Attributes:
        dropped: frames dropped by ``drop_oldest`` (never under ``block``).
        high_water: most frames ever waiting at once.
    """

    def __init__(self, frames: Iterable, chain: StageChain, policy: Policy | str = Policy.BLOCK,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"FaceAhead: capacity must be >= 1, got {capacity}")
        self.policy, self.capacity = Policy(policy), capacity
        self._frames, self._chain = frames, chain
        self._queue: deque[Tracked] = deque()
        self._cond = threading.Condition()
        self._done = False
        self._stop = False
        self._error: BaseException | None = None
        self.dropped = self.high_water = 0
        self._thread = threading.Thread(target=self._run, name="face-ahead", daemon=True)

    def __enter__(self) -> "FaceAhead":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the face thread (it finishes the frame it is on) and wait for it."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            for frame in self._frames:
                if self._stop:
                    break
                tracked = self._chain.track(frame)
                with self._cond:
                    while (self.policy is Policy.BLOCK and len(self._queue) >= self.capacity
                           and not self._stop):
                        self._cond.wait()
                    if self._stop:
                        break
                    if len(self._queue) >= self.capacity:  # drop_oldest: the camera wins
                        self._queue.popleft()
                        self.dropped += 1
                    self._queue.append(tracked)
                    self.high_water = max(self.high_water, len(self._queue))
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            self._error = exc
        finally:  # the end marker is always sent
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def __iter__(self) -> Iterator[Tracked]:
        while True:
            with self._cond:
                while not self._queue and not self._done:
                    self._cond.wait()
                if self._queue:
                    item = self._queue.popleft()
                    self._cond.notify_all()
                elif self._error is not None:
                    raise self._error
                else:
                    return
            yield item
