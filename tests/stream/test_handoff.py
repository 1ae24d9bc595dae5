"""The bounded hand-off: policies, counters, end of stream and errors."""
from __future__ import annotations

import threading
import time

import pytest

from stream.handoff import Handoff
from stream.ring import Policy


def test_block_waits_for_room_and_loses_nothing():
    h = Handoff(2, Policy.BLOCK)
    got = []

    def consume():
        while (item := h.get()) is not None:
            got.append(item)
            time.sleep(0.001)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(100):
        assert h.put(i) is False
    h.close()
    t.join(5)
    assert got == list(range(100)) and h.dropped == 0 and h.high_water <= 2


def test_drop_oldest_keeps_the_newest_and_counts():
    h = Handoff(2, Policy.DROP_OLDEST)
    assert [h.put(i) for i in range(5)] == [False, False, True, True, True]
    assert (h.get(0), h.get(0), h.get(0)) == (3, 4, None)
    assert h.dropped == 3 and h.got == 2 and h.put_count == 5


def test_close_drains_then_raises_the_producers_error():
    h = Handoff(4)
    h.put("a")
    h.close(RuntimeError("source broke"))
    assert h.get() == "a"
    with pytest.raises(RuntimeError, match="source broke"):
        h.get()
    assert h.put("late") is True and h.dropped == 1  # closed: dropped and counted


def test_a_live_slot_drops_what_waits_at_close():
    h = Handoff(1, Policy.DROP_OLDEST, drain_on_close=False)
    h.put(1)
    h.close()
    assert h.get(0) is None and h.dropped == 1


def test_close_wakes_a_blocked_producer():
    h = Handoff(1, Policy.BLOCK)
    h.put(0)
    done = threading.Event()
    threading.Thread(target=lambda: (h.put(1), done.set())).start()
    time.sleep(0.05)
    assert not done.is_set()  # waiting for room
    h.close()
    assert done.wait(2) and h.dropped == 1


def test_capacity_is_checked():
    with pytest.raises(ValueError, match="capacity"):
        Handoff(0)
