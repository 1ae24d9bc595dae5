"""Shared fixtures for the stream tests: real face images placed in 640×360 frames."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest


def _grace_hopper() -> np.ndarray:
    """matplotlib's sample portrait (a real face, ships with matplotlib), BGR uint8."""
    from matplotlib import cbook
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    img = cv2.imread(str(path))
    assert img is not None, f"cannot read {path}"
    return img


@pytest.fixture(scope="session")
def face_bgr() -> np.ndarray:
    """A real face photo, 280×240 BGR uint8 (face fills most of it)."""
    return cv2.resize(_grace_hopper(), (240, 280), interpolation=cv2.INTER_AREA)


def place_face(face: np.ndarray, frame: np.ndarray | None = None, center=(320.0, 180.0),
               angle: float = 0.0, scale: float = 1.0, size=(640, 360),
               background: int = 90) -> np.ndarray:
    """Paste ``face`` rotated (degrees, CCW) and scaled about its centre at ``center``.

    Returns an H×W×3 uint8 frame (a copy of ``frame`` when given).
    """
    out = (np.full((size[1], size[0], 3), background, np.uint8) if frame is None
           else frame.copy())
    h, w = face.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += np.array(center) - np.array([w / 2, h / 2])
    cv2.warpAffine(face, m, (out.shape[1], out.shape[0]), dst=out,
                   flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_TRANSPARENT)
    return out


@pytest.fixture(scope="session")
def face_scene():
    """The ``place_face`` helper, as a fixture."""
    return place_face


@pytest.fixture(scope="module")
def shared_engine():
    """One ONNX Runtime engine for a test module (the shipped weights)."""
    from engine.runtime import Engine
    with Engine.load("onnxruntime", log=lambda _: None) as engine:
        yield engine


@pytest.fixture
def cli(shared_engine, monkeypatch, capsys, tmp_path):
    """``run_live`` in-process with ``shared_engine`` (``Engine.load`` hands it out and does
    not close it). ``cli(*args, out=None)`` returns (exit code, stderr, records of
    ``--events-out`` or None when no file was written, seconds); ``cli.stdout`` is the
    last run's standard output."""
    import contextlib
    import json
    import time

    from engine.runtime import Engine
    from run_live import main as run_live

    @contextlib.contextmanager
    def shared():
        yield shared_engine

    monkeypatch.setattr(Engine, "load", classmethod(lambda cls, *a, **k: shared()))

    def run(*args: str, out=None):
        out = tmp_path / "events.jsonl" if out is None else out
        start = time.monotonic()
        code = run_live(["--quiet", "--engine", "onnxruntime", "--events-out", str(out),
                         *args])
        took = time.monotonic() - start
        captured = capsys.readouterr()
        err, run.stdout = captured.err, captured.out
        records = ([json.loads(line) for line in Path(out).read_text().splitlines()]
                   if Path(out).is_file() else None)  # not /dev/full: endless zeros
        return code, err, records, took
    run.stdout = ""
    return run


class FakeCamera:
    """Stands in for cv2.VideoCapture(index): gives ``frames`` frames per connection, then
    fails; reopening works once ``down_for`` further open attempts have failed."""

    plan = {"frames": 5, "down_for": 0}
    opens = 0

    def __init__(self, index):
        FakeCamera.opens += 1
        self.ok = FakeCamera.opens == 1 or FakeCamera.opens > 1 + self.plan["down_for"]
        self.left = self.plan["frames"]

    def isOpened(self):
        return self.ok

    def set(self, *a):
        return True

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        if not self.ok or self.left <= 0:
            return False, None
        self.left -= 1
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self):
        self.ok = False


@pytest.fixture
def fake_camera(monkeypatch):
    """cv2.VideoCapture replaced by :class:`FakeCamera`, reconnect retries fast."""
    from stream.sources import WebcamSource

    FakeCamera.opens = 0
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    monkeypatch.setattr(WebcamSource, "RETRY_EVERY_S", 0.01)
    return FakeCamera
