"""Live faults (issue 18 item 4): an unwritable output, signals at any moment, a camera that
goes away, a consumer that falls behind — nothing computed is lost, and the JSONL always
ends in a summary."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.contracts import Status, Summary
from stream.events import RecordList, read_jsonl
from tests.stream import media

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("mediapipe")


# --- outputs ---------------------------------------------------------------------------------
def test_events_out_on_a_full_disk_is_one_line_exit_2(cli, tmp_path):
    code, err, _, _ = cli("--source", str(media.make_cv2_video(tmp_path / "v.mp4", 10)),
                          out="/dev/full")
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot write /dev/full: No space left on device" in err


@pytest.mark.parametrize("bad", ["source", "engine"])
def test_existing_events_out_is_left_alone_when_the_run_cannot_start(cli, tmp_path, monkeypatch,
                                                                     bad):
    out = tmp_path / "keep.jsonl"
    out.write_text('{"type":"status","status":"source_ended","frame":3}\n')
    before = out.read_bytes()
    if bad == "source":
        args = ["--source", str(media.make_random_bytes(tmp_path / "noise.mp4"))]
    else:  # an engine that cannot run here
        from engine.backends import BackendError
        from engine.runtime import Engine

        def refuse(cls, *a, **k):
            raise BackendError("tensorrt: not installed (pip install tensorrt)")
        monkeypatch.setattr(Engine, "load", classmethod(refuse))
        args = ["--source", str(media.make_cv2_video(tmp_path / "v.mp4", 5))]
    code, err, _, _ = cli(*args, out=out)
    assert code == 2 and err.count("\n") == 1, err
    assert out.read_bytes() == before


# --- signals (real ones: a subprocess) -----------------------------------------------------
def _start(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "run_live.py"), "--quiet",
                             "--engine", "onnxruntime", "--events-out", str(out), *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def _valid(out: Path):
    records = list(read_jsonl(out))  # every line parses as a record
    assert isinstance(records[-1], Summary), records[-3:]
    return records


@pytest.mark.parametrize("sig, after_s", [(signal.SIGINT, 1.0), (signal.SIGINT, 2.5),
                                          (signal.SIGTERM, 1.5)],
                         ids=["SIGINT-1s", "SIGINT-2.5s", "SIGTERM-1.5s"])
def test_signal_during_start_up_leaves_jsonl_ending_in_a_summary(tmp_path, sig, after_s):
    out = tmp_path / "e.jsonl"
    proc = _start(out, "--source", "demo")
    time.sleep(after_s)  # imports / engine load / face graphs: before the first frame
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    records = _valid(out)
    assert any(isinstance(r, Status) and r.status == "interrupted" for r in records)
    assert err.strip().splitlines()[-1].startswith("fedn-live: interrupted"), err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_run_finishes_and_summarizes(tmp_path, sig):
    out = tmp_path / "e.jsonl"
    proc = _start(out, "--source", "demo", "--realtime")
    deadline = time.monotonic() + 60
    while (proc.poll() is None and not (out.exists() and out.stat().st_size)
           and time.monotonic() < deadline):
        time.sleep(0.1)  # the first record: frames are flowing
    time.sleep(1.0)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err  # a file run that did not finish says so
    records = _valid(out)
    kinds = [(r.status if isinstance(r, Status) else type(r).__name__) for r in records[-3:]]
    assert kinds == ["interrupted", "source_ended", "Summary"]
    summary = records[-1]
    assert 0 < summary.frames_processed < 750 and summary.frames_promised == 750
    assert "interrupted at frame" in err


# --- a camera that goes away, through the pipeline -----------------------------------------
def _camera_run(engine, reconnect_s):
    from stream.pipeline import Pipeline
    from stream.sources import WebcamSource
    records = RecordList()
    summary = Pipeline(WebcamSource(0, open_timeout_s=0.2, reconnect_s=reconnect_s), records,
                       engine).run()
    return records, summary


def test_camera_lost_says_so_then_stops(shared_engine, fake_camera):
    fake_camera.plan = {"frames": 12, "down_for": 10**6}
    records, summary = _camera_run(shared_engine, reconnect_s=0)
    statuses = [(r.status, r.frame) for r in records if isinstance(r, Status)]
    assert ("source_lost", 12) in statuses
    assert statuses[-1] == ("source_ended", 12) and isinstance(records[-1], Summary)
    assert summary.frames_processed == 12 and summary.policy == "drop_oldest"


def test_camera_lost_and_back_with_reconnect(shared_engine, fake_camera):
    fake_camera.plan = {"frames": 10, "down_for": 3}
    from stream.sources import WebcamSource
    from stream.pipeline import Pipeline
    records = RecordList()
    source = WebcamSource(0, open_timeout_s=0.2, reconnect_s=5)
    summary = Pipeline(source, records, shared_engine, max_frames=25).run()
    statuses = [(r.status, r.frame) for r in records if isinstance(r, Status)]
    assert ("source_lost", 10) in statuses and ("source_resumed", 10) in statuses
    assert ("source_lost", 20) in statuses and ("source_resumed", 20) in statuses
    assert summary.frames_processed == 25 and not [s for s in statuses if s[0] == "dropped"]


# --- a consumer that falls behind ------------------------------------------------------------
def test_slow_consumer_drops_are_counted_and_memory_is_bounded(shared_engine, monkeypatch):
    import psutil

    from stream.chain import StageChain
    from stream.pipeline import Pipeline
    from stream.sources import ArraySource

    real_update = StageChain.update

    def slow_update(self, frame):
        time.sleep(0.004)  # the chain is slower than the camera
        return real_update(self, frame)
    monkeypatch.setattr(StageChain, "update", slow_update)
    frames = [np.full((360, 640, 3), i % 250, np.uint8) for i in range(8)]

    class Camera(ArraySource):
        """A live source of 1500 distinct 640x360 frames, as fast as it is read."""

        def __init__(self):
            super().__init__(frames, fps=30.0, live=True)
            self._count = 1500

        def read(self):
            if self._next_index >= 1500:
                return None
            i = self._next_index
            self._next_index += 1
            self._read += 1
            from engine.contracts import Frame
            return Frame(i, i / 30.0, frames[i % 8].copy())

    rss = []  # sampled while running, after the ring and the chain are allocated
    records = RecordList()

    def progress(_):
        rss.append(psutil.Process().memory_info().rss)
    # sample often: how long the run takes depends on the machine (the face stage has a thread)
    monkeypatch.setattr("stream.pipeline.PROGRESS_EVERY_S", 0.02)
    pipe = Pipeline(Camera(), records, shared_engine, progress=progress)
    summary = pipe.run()
    dropped = sum(r.detail["count"] for r in records
                  if isinstance(r, Status) and r.status == "dropped")
    assert summary.frames_dropped > 0 and dropped == summary.frames_dropped
    assert summary.frames_read == 1500 == summary.frames_processed + summary.frames_dropped
    assert len(rss) >= 2 and max(rss) - rss[0] < 80 * 2**20  # the ring is preallocated


# --- a source that breaks mid-stream ---------------------------------------------------------
@pytest.mark.parametrize("threaded", [True, False], ids=["pipeline", "in-thread"])
def test_source_error_mid_stream_still_finishes_and_summarizes(shared_engine, threaded):
    from stream.chain import StageChain, run_frames, stamped
    from stream.pipeline import Pipeline
    from stream.sources import ArraySource

    class Breaks(ArraySource):
        def read(self):
            if self._next_index == 5:
                raise OSError(5, "Input/output error")  # the disk went away
            return super().read()

    source = Breaks(np.zeros((9, 48, 64, 3), np.uint8))
    records = RecordList()
    with pytest.raises(OSError, match="Input/output error"):
        if threaded:
            Pipeline(source, records, shared_engine).run()
        else:
            with source, StageChain(shared_engine, 30.0) as chain:
                run_frames(stamped(source), chain, records, source="x", policy="block")
    tail = records[-3:]
    assert tail[0].status == "source_short" and tail[0].detail["reason"] == "error"
    assert "Input/output error" in tail[0].detail["error"] and tail[0].frame == 5
    assert tail[1].status == "source_ended" and isinstance(tail[2], Summary)
    assert tail[2].frames_processed == 5
