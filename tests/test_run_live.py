import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def _run(*args, timeout=60):
    return subprocess.run([sys.executable, str(ROOT / "run_live.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_file_run_writes_status_and_summary(tmp_path, small_video):
    out = tmp_path / "events.jsonl"
    proc = _run("--source", str(small_video), "--events-out", str(out))
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records[-1]["type"] == "summary"
    summary = records[-1]
    assert summary["frames_read"] == summary["frames_processed"] == 40
    assert summary["frames_dropped"] == 0
    assert "ring_wait" in summary["latency_ms"]
    assert {"p50", "p95", "p99"} <= set(summary["latency_ms"]["ring_wait"])
    assert any(r["type"] == "status" and r["status"] == "source_ended" for r in records)
    assert not any(r["type"] == "event" for r in records if summary["missing_stages"])
    assert "summary:" in proc.stdout


def test_max_frames_limits_the_run(tmp_path, small_video):
    out = tmp_path / "e.jsonl"
    assert _run("--source", str(small_video), "--max-frames", "7", "--events-out",
                str(out)).returncode == 0
    assert json.loads(out.read_text().splitlines()[-1])["frames_processed"] == 7


_HELD = []  # sockets kept open so their ports stay busy for the test's subprocess


def _busy_port() -> int:
    """A 127.0.0.1 port something already listens on (the front ends must say so, exit 2)."""
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    _HELD.append(sock)
    return sock.getsockname()[1]


def _noise_file(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(os.urandom(10_000))
    return str(path)


@pytest.mark.parametrize("make_args, needle", [
    (lambda p: ["--source", "nosuchsource"], "unknown source"),
    (lambda p: ["--source", str(p / "missing.mp4")], "unknown source"),
    (lambda p: ["--source", _noise_file(p)], "cannot decode"),
    (lambda p: ["--max-frames", "0"], "--max-frames"),
    (lambda p: ["--max-frames", "abc"], "--max-frames"),
    (lambda p: ["--engine", "cuda"], "--engine"),
    (lambda p: ["--ui", "gradio", "--port", str(_busy_port())], "cannot listen"),
    (lambda p: ["--ui", "webrtc", "--port", str(_busy_port())], "cannot listen"),
    (lambda p: ["--source", "webcam:zero"], "webcam:N"),
    (lambda p: ["--source", str(p), "--fps", "-3"], "--fps"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, make_args, needle):
    proc = _run(*make_args(tmp_path))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_console_entry_point_matches_script():
    import run_live
    assert run_live.main(["--max-frames", "-1"]) == 2


def test_an_error_after_a_signal_counts_as_that_signal():
    """A signal landing in an extension module's import surfaces as ImportError
    ("initialization failed"); once a signal came, that is the stop, not a failure."""
    import signal

    import run_live

    sigs = run_live._Signals()
    with pytest.raises(ImportError):  # no signal: a real error stays one
        with sigs.as_interrupt():
            raise ImportError("no such module")
    sigs.signum = signal.SIGTERM
    with pytest.raises(KeyboardInterrupt):
        with sigs.as_interrupt():
            raise ImportError("initialization failed")
    assert sigs.code == 128 + signal.SIGTERM
