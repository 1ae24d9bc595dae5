"""The budget ratios of one bench run: read from the other sections, targets marked."""
from __future__ import annotations

import pytest

from bench import ratios


def test_ratios_from_one_report_with_targets_and_load(tmp_path, capsys):
    report = {"pipeline": {"file_mode": {"fps": 120.0}, "speedup_vs_peer": 25.0},
              "engine": {"incremental": {"windows": {
                  "128": {"onnxruntime": {"ratio": 0.2, "warm_cpu_ratio": 0.11}},
                  "256": {"onnxruntime": {"ratio": 0.1}}}}}}
    ratios.run(report, max_frames=40, face_frames=12)
    sec = report["ratios"]
    v = sec["values"]
    assert v["pipeline_fps"] == 120.0 and v["pipeline_over_realtime"] == 4.0
    # (the ratio is taken before face_alone_fps is rounded to 0.1 fps: allow that rounding,
    # large at the few fps a loaded machine gives this 12-frame run)
    fps = v["face_alone_fps"]
    assert fps > 0 and v["pipeline_over_face_alone"] == pytest.approx(
        120.0 / fps, rel=0.05 / fps + 2e-3)
    assert v["pipeline_over_peer"] == 25.0 and v["incremental_over_full_w128"] == 0.2
    assert v["incremental_over_full_w128_warm"] == 0.11 and "incremental_over_full_w256_warm" \
        not in v  # reported where the engine section measured it
    assert {"pipeline", "face_alone"} <= set(sec["load"])
    assert set(sec["per_face"]) == {"1", "2", "4"}
    # every face of the 1, 2 and 4-face scenes is tracked (the 2-face scene once tracked 1)
    assert all(c["faces_tracked"] == int(n) and c["all_tracked"] >= 0.8
               for n, c in sec["per_face"].items())
    assert {"face_per_extra_ms", "rest_per_extra_ms"} <= set(sec["per_face"]["4"])
    assert all(c["face_stage_ms"] > 0 and c["rest_ms"] > 0 for c in sec["per_face"].values())
    out = capsys.readouterr().out
    assert "incremental_over_full_w128" in out and "MISSED" in out  # 0.2 > 1/8
    assert "incremental_over_full_w256" in out
    ratios.save_png(sec, tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 5000
