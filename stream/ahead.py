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
from typing import Iterable, Iterator

from stream.chain import StageChain, Tracked
from stream.handoff import Handoff
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
    """

    def __init__(self, frames: Iterable, chain: StageChain, policy: Policy | str = Policy.BLOCK,
                 capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"FaceAhead: capacity must be >= 1, got {capacity}")
        self._frames, self._chain = frames, chain
        self._handoff = Handoff(capacity, policy)
        self._thread = threading.Thread(target=self._run, name="face-ahead", daemon=True)

    @property
    def dropped(self) -> int:
        """Frames dropped by ``drop_oldest`` (never under ``block``)."""
        return self._handoff.dropped

    @property
    def high_water(self) -> int:
        """Most tracked frames ever waiting at once."""
        return self._handoff.high_water

    def __enter__(self) -> "FaceAhead":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the face thread (it finishes the frame it is on) and wait for it."""
        self._handoff.close()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        error = None
        try:
            for frame in self._frames:
                if self._handoff.closed:  # the consumer has gone
                    break
                self._handoff.put(self._chain.track(frame))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            error = exc
        finally:  # the end marker is always sent
            self._handoff.close(error)

    def __iter__(self) -> Iterator[Tracked]:
        while (item := self._handoff.get()) is not None:
            yield item
