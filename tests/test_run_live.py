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


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tracker_settings_reach_the_run_and_the_summary_counts_its_events(tmp_path):
    """``--tracker appearance_hold=false`` turns the appearance hold off: the real laugh of
    ``WolfgangLanger_Pexels`` (frames 240-471) is held to the clip's end with the default
    settings and ends within two seconds without the hold. The summary's ``events`` counts
    what the file holds."""
    from training.real import clip_path
    clip = str(clip_path("WolfgangLanger_Pexels"))
    runs = {}
    for name, extra in (("held", []), ("plain", ["--tracker", "appearance_hold=false"])):
        out = tmp_path / f"{name}.jsonl"
        proc = _run("--source", clip, "--events-out", str(out), "--quiet", *extra, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "appearance hold:" in proc.stdout
        runs[name] = _records(out)
    for records in runs.values():
        counts = records[-1]["events"]
        for kind in ("event_start", "event", "event_cancel"):
            assert counts[kind] == sum(r["type"] == kind for r in records), (kind, counts)
        assert counts["truncated"] == sum(r["type"] == "event" and r["truncated"]
                                          for r in records)

    def laugh_ends(records):
        return [r["offset_frame"] for r in records if r["type"] == "event"
                and r["emotion"] == "positive" and r["offset_frame"] >= 240]
    assert max(laugh_ends(runs["held"])) >= 460 and runs["held"][-1]["events"]["held"] >= 1
    assert max(laugh_ends(runs["plain"])) < 300
    assert runs["plain"][-1]["events"]["held"] == runs["plain"][-1]["events"]["absorbed"] == 0


def test_the_console_summary_says_what_continued_an_emitted_event(tmp_path):
    """carphone's wide-eyed open mouth comes out as an onset (52-60) and a release (62-73)
    micro surprise; the release is not sent again (stream/continuations.py): the summary
    record and the console line count it."""
    from training.real import clip_path
    out = tmp_path / "carphone.jsonl"
    proc = _run("--source", str(clip_path("carphone")), "--events-out", str(out), "--quiet",
                timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = _records(out)
    assert records[-1]["events"]["joined"] == 1
    assert "1 that continued an emitted one not sent again" in proc.stdout, proc.stdout
    assert [(r["onset_frame"], r["emotion"]) for r in records if r["type"] == "event"
            and 45 <= r["onset_frame"] <= 75] == [(52, "surprise")]


@pytest.mark.parametrize("args, needle", [
    (["--tracker", "appearance_hold=maybe"], "appearance_hold takes bool"),
    (["--tracker", "no_such_field=1"], "expected FIELD=VALUE"),
    (["--tracker", "on_thresh=0.5,0.6"], "one value per field"),
    (["--tracker", "appearance_on=2"], "appearance_on must be in (0, 1]"),
    (["--ui", "gradio", "--tracker", "onset=nope"], "TrackerConfig.onset must be one of"),
])
def test_bad_tracker_settings_are_one_line_exit_2(args, needle):
    proc = _run(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


@pytest.mark.parametrize("ui, module, function", [("gradio", "ui.gradio_app", "launch"),
                                                  ("webrtc", "ui.webrtc_server", "serve")])
def test_tracker_settings_reach_the_front_ends(monkeypatch, ui, module, function):
    import importlib

    import run_live
    from engine.config import TrackerConfig
    seen = {}

    def fake(*args, **kwargs):
        seen["cfg"] = next(a for a in (*args, *kwargs.values()) if isinstance(a, TrackerConfig))
        return 0
    monkeypatch.setattr(importlib.import_module(module), function, fake)
    assert run_live.main(["--ui", ui, "--tracker", "appearance_hold=false"]) == 0
    assert seen["cfg"] == TrackerConfig(appearance_hold=False)
