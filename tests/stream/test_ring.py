import threading
import time
import tracemalloc

import numpy as np
import pytest

from engine.contracts import Frame
from stream.ring import Policy, RingBuffer
from tests.conftest import frame_number, make_frames


def _frame(i, frames):
    return Frame(index=i, t_capture=i / 30, image=frames[i])


def test_wraps_around_in_order():
    frames = make_frames(50)
    ring = RingBuffer(4, Policy.BLOCK)
    for i in range(50):  # put/get interleaved so slots are reused many times over
        ring.put(_frame(i, frames))
        if i % 3 == 2:
            for _ in range(len(ring)):
                f = ring.get()
                assert frame_number(f.image) == f.index
    ring.close()
    seen = []
    while (f := ring.get(timeout=1)) is not None:
        seen.append(f.index)
        assert frame_number(f.image) == f.index
    assert seen == sorted(seen)
    assert ring.stats().got == 50 and ring.stats().dropped == 0


def test_drop_oldest_counts_drops_with_slow_consumer():
    frames = make_frames(200)
    ring = RingBuffer(8, Policy.DROP_OLDEST)
    got = []

    def consume():
        while (f := ring.get(timeout=5)) is not None:
            got.append((f.index, frame_number(f.image)))
            time.sleep(0.002)  # slow consumer

    t = threading.Thread(target=consume)
    t.start()
    for i in range(200):
        assert ring.put(_frame(i, frames))  # never blocks
    ring.close()
    t.join(10)
    stats = ring.stats()
    assert stats.dropped > 0
    assert stats.got + stats.dropped == 200  # every frame is either delivered or counted
    assert [i for i, _ in got] == sorted(i for i, _ in got)
    assert all(i == n for i, n in got)  # image content matches its index: no torn slots
    assert stats.high_water <= 8


def test_block_loses_nothing_with_slow_consumer():
    frames = make_frames(120)
    ring = RingBuffer(4, Policy.BLOCK)
    got = []

    def produce():
        for i in range(120):
            ring.put(_frame(i, frames))
        ring.close()

    t = threading.Thread(target=produce)
    t.start()
    while (f := ring.get(timeout=5)) is not None:
        got.append((f.index, frame_number(f.image)))
        assert len(ring) <= 4
        if f.index % 10 == 0:
            time.sleep(0.005)
    t.join(5)
    assert [i for i, _ in got] == list(range(120))
    assert all(i == n for i, n in got)
    assert ring.stats().dropped == 0 and ring.stats().high_water <= 4
    assert ring.stats().blocked_s > 0  # the producer really had to wait


def test_no_allocation_growth_over_10000_frames():
    image = np.zeros((36, 64, 3), np.uint8)
    ring = RingBuffer(16, Policy.DROP_OLDEST)
    for i in range(100):  # warm up: slots allocated on the first frame
        ring.put(Frame(i, 0.0, image))
        ring.get()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for i in range(10_000):
        ring.put(Frame(i, 0.0, image))
        if i % 3:
            ring.get()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - before < 16 * 1024  # only tiny bookkeeping, no per-frame images
    assert ring.nbytes == 17 * image.nbytes


def test_error_reaches_consumer_after_frames():
    frames = make_frames(3)
    ring = RingBuffer(4)
    ring.put(_frame(0, frames))
    ring.close(RuntimeError("camera unplugged"))
    assert ring.get(timeout=1).index == 0
    with pytest.raises(RuntimeError, match="camera unplugged"):
        ring.get(timeout=1)


def test_get_times_out_instead_of_hanging():
    with pytest.raises(TimeoutError):
        RingBuffer(2).get(timeout=0.05)


def test_drain_to_latest():
    frames = make_frames(5)
    ring = RingBuffer(8, Policy.DROP_OLDEST)
    for i in range(5):
        ring.put(_frame(i, frames))
    assert ring.drain_to_latest() == 4
    assert ring.get(timeout=1).index == 4
    assert ring.stats().dropped == 4


@pytest.mark.parametrize("kwargs, match", [({"capacity": 0}, "capacity"),
                                           ({"capacity": 2, "policy": "lifo"}, "policy")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RingBuffer(**kwargs)


def test_large_frames_get_a_smaller_ring_within_max_bytes():
    """64 waiting 4K frames would be 1.6 GB: the ring keeps its storage under max_bytes."""
    import numpy as np

    from engine.contracts import Frame
    ring = RingBuffer(64, Policy.DROP_OLDEST, max_bytes=13 * 2**20)
    image = np.zeros((1080, 1920, 3), np.uint8)  # 6.2 MB: one waiting + one held
    for i in range(5):
        assert ring.put(Frame(i, i / 30, image))
    assert ring.capacity == 1 and ring.nbytes <= 13 * 2**20
    assert ring.stats().dropped == 4 and ring.get().index == 4
    small = RingBuffer(64, Policy.BLOCK)
    small.put(Frame(0, 0.0, np.zeros((360, 640, 3), np.uint8)))
    assert small.capacity == 64  # 640x360: the default bound changes nothing
    with pytest.raises(ValueError, match="max_bytes"):
        RingBuffer(4, max_bytes=0)
