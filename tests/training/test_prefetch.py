"""Batches made ahead on a second thread: same order, bounded, errors surface, stops on break."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from training.prefetch import prefetch


def test_same_batches_as_a_serial_loop():
    def maker(seed):
        rng = np.random.default_rng(seed)
        return lambda: rng.standard_normal(4)

    make = maker(3)
    serial = [make() for _ in range(50)]
    ahead = list(prefetch(maker(3), 50, depth=3))
    assert len(ahead) == 50
    for a, b in zip(ahead, serial):
        np.testing.assert_array_equal(a, b)


def test_queue_is_bounded():
    made = []

    def make():
        made.append(threading.current_thread().name)
        return len(made)

    it = prefetch(make, 100, depth=2)
    assert next(it) == 1
    time.sleep(0.3)  # the producer runs ahead only until the queue is full
    assert len(made) <= 1 + 2 + 1  # consumed + queued + one blocked in put
    assert set(made) == {"batch-prefetch"}
    rest = list(it)
    assert rest == list(range(2, 101))


def test_error_is_raised_at_its_batch():
    calls = iter(range(10))

    def make():
        i = next(calls)
        if i == 3:
            raise RuntimeError("bad window 3")
        return i

    got = []
    with pytest.raises(RuntimeError, match="bad window 3"):
        for x in prefetch(make, 10):
            got.append(x)
    assert got == [0, 1, 2]


def test_break_stops_the_producer():
    before = threading.active_count()
    it = prefetch(lambda: 0, 10_000, depth=1)
    for i, _ in enumerate(it):
        if i == 5:
            break
    it.close()
    assert threading.active_count() == before


def test_bad_depth_and_empty():
    with pytest.raises(ValueError, match="depth"):
        list(prefetch(lambda: 0, 3, depth=0))
    assert list(prefetch(lambda: 0, 0)) == []
