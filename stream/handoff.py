"""A bounded hand-off between two threads, with the ring's named policies and counters.

Used where items that are not raw camera images pass between threads: the face
thread of the pipeline (:mod:`stream.ahead`, ``block`` for files) and the
latest-frame slot of a WebRTC peer (capacity 1, ``drop_oldest``). Never
unbounded: under ``block`` the producer waits for room, under ``drop_oldest``
the oldest waiting item is dropped and counted. The end of the stream and a
producer's error reach the consumer through :meth:`Handoff.close`.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any

from stream.ring import Policy


class Handoff:
    """A FIFO of at most ``capacity`` items.

    Args:
        capacity: items waiting at most (>= 1).
        policy: what :meth:`put` does when full: ``block`` (wait) or ``drop_oldest``.
        drain_on_close: after :meth:`close`, the consumer still gets the items
            waiting (True), or they are dropped and counted (False: a live slot,
            where a stale frame is worth nothing).

    Attributes:
        put_count, got, dropped: items offered, handed over, dropped.
        high_water: most items ever waiting at once.
    """

    def __init__(self, capacity: int, policy: Policy | str = Policy.BLOCK,
                 drain_on_close: bool = True) -> None:
        if capacity < 1:
            raise ValueError(f"Handoff: capacity must be >= 1, got {capacity}")
        self.capacity, self.policy = capacity, Policy(policy)
        self.drain_on_close = drain_on_close
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self.put_count = self.got = self.dropped = self.high_water = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: Any) -> bool:
        """Offer ``item``; True when an item was dropped for it (or it was, once closed)."""
        with self._cond:
            self.put_count += 1
            if self.policy is Policy.BLOCK:
                self._cond.wait_for(lambda: len(self._items) < self.capacity or self._closed)
            if self._closed:
                self.dropped += 1
                return True
            dropped = len(self._items) >= self.capacity  # drop_oldest: the newest wins
            if dropped:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.high_water = max(self.high_water, len(self._items))
            self._cond.notify_all()
            return dropped

    def get(self, timeout: float | None = None) -> Any:
        """The oldest waiting item; None once closed and drained, or after ``timeout`` s.

        Raises:
            BaseException: the producer's error given to :meth:`close`, after the
                items put before it.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if self._items:
                self.got += 1
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            if self._closed and self._error is not None:
                raise self._error
            return None

    def close(self, error: BaseException | None = None) -> None:
        """No more items (from either side); ``error`` reaches the consumer after the rest."""
        with self._cond:
            if self._closed:
                return
            self._closed, self._error = True, error
            if not self.drain_on_close:
                self.dropped += len(self._items)
                self._items.clear()
            self._cond.notify_all()
