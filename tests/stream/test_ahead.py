"""The face stage on its own thread: same records as the serial chain, policies, errors."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engine.contracts import Frame
from stream.ahead import FaceAhead
from stream.chain import Tracked
from stream.ring import Policy


class _FakeChain:
    """``track`` only (what FaceAhead calls); records the thread it ran on."""

    def __init__(self, delay=0.0, fail_at=None):
        self.delay, self.fail_at, self.threads = delay, fail_at, set()

    def track(self, frame):
        self.threads.add(threading.get_ident())
        if frame.index == self.fail_at:
            raise RuntimeError(f"face stage broke at {frame.index}")
        time.sleep(self.delay)
        return Tracked(frame, None, ())


def _frames(n):
    return (Frame(i, i / 30, np.zeros((2, 2, 3), np.uint8)) for i in range(n))


def test_order_kept_nothing_lost_under_block_and_on_another_thread():
    chain = _FakeChain()
    with FaceAhead(_frames(200), chain, Policy.BLOCK, capacity=2) as ahead:
        got = []
        for item in ahead:
            got.append(item.frame.index)
            time.sleep(0.0005)  # a slower consumer: the producer must wait, not drop
    assert got == list(range(200)) and ahead.dropped == 0 and ahead.high_water <= 2
    assert threading.get_ident() not in chain.threads


def test_drop_oldest_counts_every_drop_and_keeps_order():
    with FaceAhead(_frames(300), _FakeChain(), Policy.DROP_OLDEST, capacity=2) as ahead:
        got = []
        for item in ahead:
            got.append(item.frame.index)
            time.sleep(0.003)  # the consumer falls behind a live source
    assert got == sorted(got) and got[-1] == 299
    assert ahead.dropped > 0 and len(got) + ahead.dropped == 300


def test_an_error_of_the_face_stage_reaches_the_consumer_after_earlier_frames():
    got = []
    with pytest.raises(RuntimeError, match="broke at 5"):
        with FaceAhead(_frames(20), _FakeChain(fail_at=5), Policy.BLOCK) as ahead:
            for item in ahead:
                got.append(item.frame.index)
    assert got == [0, 1, 2, 3, 4]


def test_close_stops_the_thread_while_the_consumer_has_gone():
    ahead = FaceAhead(_frames(10_000), _FakeChain(delay=0.001), Policy.BLOCK, capacity=2)
    with ahead:
        next(iter(ahead))
    assert not ahead._thread.is_alive()


def test_capacity_is_checked():
    with pytest.raises(ValueError, match="capacity"):
        FaceAhead(_frames(1), _FakeChain(), capacity=0)
