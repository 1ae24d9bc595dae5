import time

import numpy as np
import pytest

from stream.capture import CaptureThread, default_policy
from engine.contracts import Frame
from stream.ring import Policy, RingBuffer
from stream.sources import ArraySource


class _EndlessCamera:
    """A live source that produces frames forever, ~1 kHz."""

    live = True
    fps, size, frame_count = 1000.0, (8, 8), None

    def __init__(self):
        self.i = 0

    def read(self):
        time.sleep(0.001)
        self.i += 1
        return Frame(self.i - 1, time.monotonic(), np.zeros((8, 8, 3), np.uint8))


class _FailingSource(_EndlessCamera):
    live = False

    def read(self):
        if self.i == 3:
            raise OSError("device disappeared")
        return super().read()


def test_default_policy():
    assert default_policy(_EndlessCamera()) is Policy.DROP_OLDEST
    assert default_policy(ArraySource(np.zeros((1, 2, 2, 3), np.uint8))) is Policy.BLOCK


def test_stop_returns_within_one_second_even_when_consumer_is_gone():
    ring = RingBuffer(2, Policy.BLOCK)  # full ring, nobody reading: producer blocks
    capture = CaptureThread(_EndlessCamera(), ring).start()
    time.sleep(0.1)
    start = time.monotonic()
    capture.stop()
    assert time.monotonic() - start < 1.0
    assert not capture.alive


def test_live_source_never_blocks_and_counts_drops():
    ring = RingBuffer(4, Policy.DROP_OLDEST)
    cam = _EndlessCamera()
    capture = CaptureThread(cam, ring, max_frames=300).start()
    got = []
    while (f := ring.get(timeout=5)) is not None:
        got.append(f.index)
        time.sleep(0.005)
    capture.stop()
    stats = ring.stats()
    assert capture.frames_read == 300
    assert stats.dropped > 0 and stats.got + stats.dropped == 300
    assert got == sorted(got)


def test_source_error_reaches_consumer():
    ring = RingBuffer(8)
    capture = CaptureThread(_FailingSource(), ring).start()
    got = []
    with pytest.raises(OSError, match="device disappeared"):
        while (f := ring.get(timeout=5)) is not None:
            got.append(f.index)
    assert got == [0, 1, 2]
    capture.stop()


def test_realtime_paces_at_source_fps():
    frames = np.zeros((15, 4, 4, 3), np.uint8)
    src = ArraySource(frames, fps=50).open()
    ring = RingBuffer(32)
    start = time.monotonic()
    capture = CaptureThread(src, ring, realtime=True).start()
    while ring.get(timeout=5) is not None:
        pass
    elapsed = time.monotonic() - start
    capture.stop()
    assert 14 / 50 * 0.9 <= elapsed < 1.0  # 15 frames at 50 fps take ~0.28 s


def test_bad_max_frames():
    with pytest.raises(ValueError, match="max_frames"):
        CaptureThread(_EndlessCamera(), RingBuffer(2), max_frames=0)
