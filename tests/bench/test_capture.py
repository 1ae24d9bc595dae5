"""bench.capture: the generated clip, and the capture / ring sections."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2

from bench import capture

ROOT = Path(__file__).resolve().parents[2]


def test_test_video_has_the_frames_and_size_asked_for(tmp_path):
    path = capture.write_test_video(tmp_path / "v.mp4", 12, size=(160, 96))
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 160
    cap.release()


def test_run_adds_capture_and_ring_sections(capsys):
    report: dict = {}
    capture.run(report, frames=30)
    assert report["capture"]["frames"] == 30 and report["capture"]["fps"] > 0
    assert report["capture"]["size"] == [640, 360]
    assert report["ring"]["put_get_us"] > 0 and report["ring"]["ring_bytes"] > 0
    out = capsys.readouterr().out
    assert "capture:" in out and "ring:" in out


def test_bad_frames_is_a_usage_error():
    res = subprocess.run([sys.executable, "-m", "bench.capture", "--frames", "0"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 2 and "--frames must be >= 1" in res.stderr
