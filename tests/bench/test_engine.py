"""bench.engine: every backend available here timed side by side (report["engine"])."""
from __future__ import annotations

import pytest

import engine.runtime as runtime
from bench import engine as bench_engine


def test_section_side_by_side_on_the_served_model(tmp_path, monkeypatch):
    # an empty cache: the ONNX Runtime row must come from the shipped graphs, not an export
    monkeypatch.setattr(runtime, "DEFAULT_CACHE", tmp_path)
    report: dict = {}
    lines: list[str] = []
    bench_engine.run(report, frames=20, hops=5, threads=1, log=lines.append, incremental=False)
    sec = report["engine"]
    assert sec["window"] == runtime.load_model(None, log=lambda m: None).cfg.window
    assert sec["threads"] == 1
    backends = sec["backends"]
    assert {"torch-cpu", "onnxruntime-cpu"} <= set(backends)
    for label in ("torch-cpu", "onnxruntime-cpu"):
        enc, det = backends[label]["encoder_per_frame_ms"], backends[label]["detector_per_hop_ms"]
        assert enc["n"] == 20 and det["n"] == 5
        assert 0 < enc["p50"] <= enc["p99"] and 0 < det["p50"] <= det["p99"]
        step = backends[label]["detector_step_per_hop_ms"]  # the live path: incremental
        assert step["n"] == 5 and 0 < step["p50"] <= step["p99"]
        assert any(line.strip().startswith(label) for line in lines)
    assert not list(tmp_path.rglob("*.onnx"))  # nothing was exported


def test_candidates_always_include_the_cpu_backends():
    labels = [label for label, _, _ in bench_engine.candidates()]
    assert labels[:2] == ["torch-cpu", "onnxruntime-cpu"]


@pytest.mark.slow
def test_incremental_versus_full_window_per_hop():
    lines: list[str] = []
    sec = bench_engine.bench_incremental(windows=(128,), hops=20, threads=1, log=lines.append)
    assert sec["threads"] == 1 and sec["hop"] == 8 and sec["target_ratio"] == 0.125
    for name in ("onnxruntime", "torch"):
        r = sec["windows"]["128"][name]
        assert 0 < r["incremental_ms"] and 0 < r["full_ms"]
        assert abs(r["ratio"] - r["incremental_ms"] / r["full_ms"]) < 1e-2
        assert 0 < r["cpu_ratio"] < 1  # a hop of new frames costs less than a window
        assert 0 < r["warm_cpu_ratio"] < 1 and r["warm_incremental_cpu_ms"] > 0
        assert abs(r["warm_cpu_ratio"] - r["warm_incremental_cpu_ms"]
                   / r["warm_full_cpu_ms"]) < 1e-2
    assert sum("window  128" in line for line in lines) == 2


def test_tracks_due_on_one_frame_share_one_step_call():
    lines: list[str] = []
    sec = bench_engine.bench_tracks(counts=(1, 3), frames=12, log=lines.append)
    for n in (1, 3):
        r = sec["tracks"][str(n)]
        assert 0 < r["step_batched_ms"] <= r["batched_ms"] and 0 < r["per_track_ms"]
        timed = 12 - 10  # due frames after the warm-up
        assert r["step_calls"] == {"batched": timed, "per_track": n * timed}
    assert any("3 track(s)" in line for line in lines)


def test_a_fused_model_is_timed_with_its_appearance_input(tmp_path):
    """A model with appearance fusion: the encoder is fed the appearance input it needs
    (it used to get flow and valid only and fail)."""
    import dataclasses

    from engine.config import APPEARANCE_DIM
    from tests.engine.conftest import TINY, seeded_fedn
    model = seeded_fedn(dataclasses.replace(TINY, appearance_dim=APPEARANCE_DIM))
    with runtime.Engine.load("torch", model=model, cache_dir=tmp_path, log=lambda s: None) as eng:
        out = bench_engine.bench_engine(eng, frames=3, hops=2, warmup=1)
    assert out["encoder_per_frame_ms"]["n"] == 3 and out["detector_per_hop_ms"]["n"] == 2
