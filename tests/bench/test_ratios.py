"""The budget ratios of one bench run: read from the other sections, targets marked."""
from __future__ import annotations

import pytest

from bench import ratios


def test_ratios_from_one_report_with_targets_and_load(tmp_path, capsys):
    report = {"pipeline": {"file_mode": {"fps": 120.0}, "speedup_vs_peer": 25.0},
              "engine": {"incremental": {"windows": {
                  "128": {"onnxruntime": {"ratio": 0.2, "warm_cpu_ratio": 0.11}},
                  "256": {"onnxruntime": {"ratio": 0.1}}}}}}
    ratios.run(report, max_frames=40, face_frames=12, rounds=3)
    sec = report["ratios"]
    v = sec["values"]
    # the face stage alone and the pipeline are measured in pairs, back to back; the ratio is
    # the median of the pairs' ratios (not the pipeline section's fps, minutes earlier)
    pairs = sec["pairs"]
    assert len(pairs) == 3 and all(p["face_alone_fps"] > 0 and p["pipeline_fps"] > 0
                                   for p in pairs)
    assert all(p["ratio"] == pytest.approx(p["pipeline_fps"] / p["face_alone_fps"], rel=0.02)
               for p in pairs)
    assert v["pipeline_over_face_alone"] == sorted(p["ratio"] for p in pairs)[1]
    assert v["pipeline_fps"] == sorted(p["pipeline_fps"] for p in pairs)[1]
    assert v["pipeline_over_realtime"] == pytest.approx(v["pipeline_fps"] / 30.0, abs=0.01)
    assert v["pipeline_over_peer"] == 25.0 and v["incremental_over_full_w128"] == 0.2
    assert v["incremental_over_full_w128_warm"] == 0.11 and "incremental_over_full_w256_warm" \
        not in v  # reported where the engine section measured it
    assert len(sec["load"]["pairs"]) == 3
    # each pipeline run's CPU per frame by stage, and the ratio that cost allows
    for p in pairs:
        c = p["cpu_ms_per_frame"]
        assert c["face"] > 0 and c["chain"] > 0 and c["capture"] >= 0  # /proc ticks: 10 ms
        assert c["total"] == pytest.approx(c["face"] + c["chain"] + c["capture"] + c["other"],
                                           abs=0.01)
        assert 0 < p["cores_busy"] <= 2.2 and p["face_alone_cpu_ms"] > 0
        assert p["ceiling"] == pytest.approx(ratios.cpu_ceiling(c["total"], p["face_alone_fps"]),
                                             abs=2e-3)  # from the unrounded figures
    assert v["face_cpu_in_pipeline_over_alone"] == pytest.approx(sorted(
        p["cpu_ms_per_frame"]["face"] / p["face_alone_cpu_ms"] for p in pairs)[1], abs=1e-3)
    assert v["pipeline_over_face_alone_ceiling"] == sorted(p["ceiling"] for p in pairs)[1]
    assert set(sec["per_face"]) == {"1", "2", "4"}
    # every face of the 1, 2 and 4-face scenes is tracked (the 2-face scene once tracked 1)
    assert all(c["faces_tracked"] == int(n) and c["all_tracked"] >= 0.8
               for n, c in sec["per_face"].items())
    assert {"face_per_extra_ms", "rest_per_extra_ms"} <= set(sec["per_face"]["4"])
    assert all(c["face_stage_ms"] > 0 and c["rest_ms"] > 0 for c in sec["per_face"].values())
    out = capsys.readouterr().out
    assert "incremental_over_full_w128" in out and "MISSED" in out  # 0.2 > 1/8
    assert "incremental_over_full_w256" in out
    assert "pipeline CPU per frame: face" in out
    ratios.save_png(sec, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 5000


def test_ratios_need_a_pair_of_runs():
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        ratios.run({}, rounds=0)


def test_the_ceiling_is_what_the_cores_allow():
    # 2 cores, 12.5 ms of CPU a frame: at most 160 fps; the face stage alone at 200 fps
    assert ratios.cpu_ceiling(12.5, 200.0, cores=2) == pytest.approx(0.8)
    assert ratios.cpu_ceiling(5.0, 200.0, cores=2) == 1.0  # the face stage stays the floor
