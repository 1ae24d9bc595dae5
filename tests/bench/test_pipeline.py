"""bench.pipeline: the whole-pipeline section on the first second of the demo clip."""
from __future__ import annotations

import pytest

pytest.importorskip("mediapipe")

from bench import pipeline  # noqa: E402
from engine.contracts import Event  # noqa: E402


def test_run_adds_file_mode_realtime_and_the_latency_png(tmp_path, capsys):
    report: dict = {}
    png = tmp_path / "latency.png"
    pipeline.run(report, png=png, max_frames=40)
    sec = report["pipeline"]
    fm = sec["file_mode"]
    assert fm["frames_processed"] == 40 and fm["fps"] > 0 and fm["missing_stages"] == []
    assert {"face", "flow", "encoder"} <= set(fm["latency_ms"])
    for s in fm["latency_ms"].values():
        assert 0 <= s["p50"] <= s["p95"] <= s["p99"]
    assert sec["realtime"]["events"] >= 0 and set(sec["realtime"]["emission_delay_ms"]) == {
        "all_p50", "all_max", "micro_max"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and sec["latency_png"] == str(png)
    assert "pipeline:" in capsys.readouterr().out


def test_emission_delays_of_final_events():
    def ev(kind, ms):
        return Event(onset_frame=0, apex_frame=1, offset_frame=2, onset_s=0.0, offset_s=0.07,
                     kind=kind, emotion="positive", score=0.9, latency_ms=ms)
    got = pipeline.emission_delays([ev("micro", 100.0), ev("macro", 300.0), ev("micro", 200.0)])
    assert got == {"all_p50": 200.0, "all_max": 300.0, "micro_max": 200.0}
    assert pipeline.emission_delays([]) == {"all_p50": None, "all_max": None, "micro_max": None}
