"""bench.peer: the MEGC-style feature path (landmarks, aligned crop, TV-L1) on the demo clip."""
from __future__ import annotations

import pytest

pytest.importorskip("mediapipe")

from bench import peer  # noqa: E402
from stream.sources import DEMO_CLIP  # noqa: E402


def test_peer_times_the_frames_that_compute_a_flow_pair():
    frames, fps = peer.read_frames(DEMO_CLIP, 3)
    res = peer.run_peer(frames, fps)
    assert fps == pytest.approx(30.0) and res["k"] == 6 and len(frames) == 3 + res["k"]
    assert res["frames"] == 3 and res["ms_per_frame"] > 0
    assert res["fps"] == pytest.approx(1e3 / res["ms_per_frame"], rel=0.01)


def test_run_adds_the_peer_and_the_ratio_to_the_pipeline_section(capsys):
    report = {"pipeline": {"file_mode": {"fps": 100.0}}}
    peer.run(report, peer_frames=2)
    sec = report["pipeline"]
    assert sec["megc_peer"]["frames"] == 2
    assert sec["speedup_vs_peer"] == pytest.approx(100.0 / sec["megc_peer"]["fps"], abs=0.06)
    assert "x faster" in capsys.readouterr().out


def test_too_few_frames_is_an_error_naming_k():
    frames, fps = peer.read_frames(DEMO_CLIP, 0)
    with pytest.raises(ValueError, match="k=6"):
        peer.run_peer(frames, fps)
