"""Per-thread CPU by stage (bench.threads): time lands on the thread that spent it."""
from __future__ import annotations

import threading
import time

import pytest

from bench import threads

pytestmark = pytest.mark.skipif(not threads.available(), reason="needs Linux /proc")


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_cpu_lands_on_the_stage_whose_thread_spent_it():
    # a "face-ahead" thread that ends inside the block keeps what it had used when last
    # sampled (here: all of it, it idles a while before ending)
    burnt, done = threading.Event(), threading.Event()

    def face_thread() -> None:
        _burn(0.3)
        burnt.set()
        done.wait(2.0)

    with threads.ThreadCPU(interval=0.01) as cpu:
        worker = threading.Thread(target=face_thread, name="face-ahead")
        worker.start()
        _burn(0.1)  # the block's own thread: "chain"
        assert burnt.wait(5.0)
        time.sleep(0.1)
        done.set()
        worker.join()
    g = cpu.groups()
    assert g["face"] == pytest.approx(0.3, abs=0.05)
    assert g["chain"] == pytest.approx(0.1, abs=0.05)
    assert g["capture"] < 0.02
    assert sum(g.values()) == pytest.approx(cpu.total_s, abs=0.02)  # nothing left out
    assert cpu.wall_s >= 0.3


def test_thread_names_map_to_stages():
    assert threads.group_of("mediapipe/1234") == "face"
    assert threads.group_of("face-ahead") == "face"
    assert threads.group_of("capture") == "capture"
    assert threads.group_of("av:h264:df0") == "capture"
    assert threads.group_of("ort-worker") == "other"
