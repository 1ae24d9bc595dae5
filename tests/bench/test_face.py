"""bench.face fills report["face_flow"] (a short clip, not a timing test)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mediapipe")

from bench import face  # noqa: E402


def test_synthetic_clip_is_640x360_with_motion():
    clip = face.make_face_clip(12)
    assert len(clip) == 12 and clip[0].shape == (360, 640, 3) and clip[0].dtype == np.uint8
    assert np.abs(clip[0].astype(int) - clip[11]).mean() > 1.0


def test_run_adds_the_face_flow_section(capsys):
    report: dict = {}
    face.run(report, clip=face.make_face_clip(24))
    sec = report["face_flow"]
    for mode in ("default", "single_face"):
        d = sec[mode]
        assert d["frames"] == 24
        assert d["tracked_fraction"] >= 0.95
        assert 0 < d["valid_flow_fraction"] < 1  # the first ~Δ has no reference
        assert d["face_stage_ms"]["p50"] > 0 and d["flow_ms"]["p99"] >= d["flow_ms"]["p50"]
        assert d["detection_ms"]["n"] + d["tracking_ms"]["n"] == 24
    assert sec["no_face_false_detection_fraction"] <= 0.01
    assert "face+flow" in capsys.readouterr().out


def test_module_imports_without_loading_mediapipe():
    import subprocess
    import sys
    code = "import sys, bench.face; sys.exit('mediapipe' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
