"""`make gpu-check` without a GPU: one clear line and exit 0; its steps run on CPU."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

import engine.runtime as runtime
from bench import gpu_check
from engine.config import APPEARANCE_DIM, ModelConfig
from engine.model import FEDN

CFG = ModelConfig(window=32, hop=8, segment=4, attn_window=4, levels=2, channels=32, heads=2,
                  feat_dim=16, enc_channels=(8, 16), enc_grid=2, range_base=8, gain_ref=0.0)
FAKE_LATENCY = {"encoder_per_frame_ms": {"p50": 1.0, "p99": 2.0},
                "detector_per_hop_ms": {"p50": 1.0, "p99": 2.0}}


def test_no_gpu_line_and_exit_zero(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check.shutil, "which", lambda name: None)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["gpu-check: no GPU (nvidia-smi not found); nothing to check on this "
                   "machine. OK."]


def test_nvidia_smi_listing_no_gpu(monkeypatch):
    monkeypatch.setattr(gpu_check.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    monkeypatch.setattr(gpu_check.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 0, stdout="No devices were found\n", stderr=""))
    assert gpu_check.gpu_present() == (False, "nvidia-smi lists no GPU")


def test_gpu_extra_pins_come_from_setup_cfg():
    reqs = gpu_check.gpu_extra()
    assert any(r.startswith("tensorrt==") for r in reqs)
    assert all("==" in r for r in reqs)


def test_module_runs_as_script_from_the_repository_root():
    res = subprocess.run([sys.executable, "-m", "bench.gpu_check", "--no-install"],
                         capture_output=True, text=True, timeout=120, cwd=gpu_check.ROOT)
    assert res.returncode == 0, res.stderr
    if "no GPU" not in res.stdout:
        pytest.skip("this machine has an NVIDIA GPU: the full check ran")
    assert len(res.stdout.strip().splitlines()) == 1


def _fake_demo(work, appearance=False):
    """Stands in for the real demo flow maps (MediaPipe over the 750-frame demo clip)."""
    rng = np.random.default_rng(0)
    flow = rng.standard_normal((40, 3, 64, 64)).astype(np.float16)
    valid = rng.random(40) > 0.2
    app = rng.random((40, APPEARANCE_DIM)).astype(np.float32) if appearance else None
    np.save(work / "demo_flow.npy", flow)
    np.save(work / "demo_valid.npy", valid)
    if app is not None:
        np.save(work / "demo_appearance.npy", app)
    return flow, valid, app


def _prepare(work, cfg):
    """Step 3 (export, inputs, torch CPU reference) in ``work`` with a small model of ``cfg``."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    small = FEDN(cfg).eval()
    real_load = runtime.load_model
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runtime, "load_model", lambda weights=None, log=print: small
                   if weights is None else real_load(weights, log=log))
        mp.setattr("bench.engine.bench_engine", lambda eng, frames=0, hops=0: FAKE_LATENCY)
        mp.setattr(gpu_check, "prepare_demo", _fake_demo)
        mp.setattr(gpu_check, "DEMO_THRESH", 0.0)  # every point a candidate: strict
        return gpu_check.prepare(work)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A work dir after step 3 with a small flow-only model."""
    work = tmp_path_factory.mktemp("gpu_check")
    return work, _prepare(work, CFG)


@pytest.fixture
def quick_worker(monkeypatch):
    monkeypatch.setattr("bench.engine.bench_engine", lambda eng, frames=0, hops=0: FAKE_LATENCY)
    monkeypatch.setattr(gpu_check, "DEMO_THRESH", 0.0)


def test_prepare_and_worker_steps_on_cpu(prepared, quick_worker, capsys):
    work, first = prepared
    assert first["onnxruntime-cpu"]["parity_max_abs"] <= 1e-4
    assert (work / "onnx" / "detector.fp16.onnx").is_file()
    data = np.load(work / "inputs.npz")
    assert data["windows"].shape[1:] == (CFG.window, CFG.feat_dim)
    results = gpu_check.worker(work, device="cpu")
    json.dumps(results)  # serialisable for gpu_results.json
    assert results["torch-cpu"]["score_max_abs"] == 0.0  # same weights, same device as reference
    assert results["torch-cpu"]["same_candidates"] is True
    assert results["torch-cpu"]["demo_same_candidates"] is True
    assert results["torch-cpu"]["demo_candidates"][0] > 0  # something was compared
    assert not [k for k in results if k.endswith("-error")], results
    cuda = results["cuda-eager-cpu"]  # the cuda backend's buffers and padding, eager on CPU
    assert cuda["parity_max_abs"] <= 1e-4 and cuda["step_max_abs"] <= 1e-4
    assert cuda["same_candidates"] is True and cuda["demo_same_candidates"] is True
    assert cuda["encoder_batch_ms"]["faces"] == gpu_check.BATCH_FACES
    assert results["torch-cpu"]["step_max_abs"] == 0.0  # the reference against itself
    out = capsys.readouterr().out
    assert "cuda-graph: skipped (CUDA graphs need a GPU)" in out
    assert "onnxruntime CUDA EP: not installed" in out  # the CPU wheel here
    from engine.backends.tensorrt import available
    if not available()[0]:
        assert "TensorRT: unavailable" in out and "unavailable" in results["tensorrt-fp16"]


def test_a_model_with_appearance_fusion_is_checked_with_its_appearance_input(
        tmp_path, quick_worker):
    """A fused model's encoder needs the appearance input: parity, demo and batch timing feed
    it (they used to call encode without it and fail)."""
    work = tmp_path
    first = _prepare(work, replace(CFG, appearance_dim=APPEARANCE_DIM))
    assert first["onnxruntime-cpu"]["parity_max_abs"] <= 1e-4
    assert np.load(work / "inputs.npz")["appearance"].shape == (8, APPEARANCE_DIM)
    assert (work / "demo_appearance.npy").is_file()
    results = gpu_check.worker(work, device="cpu")
    assert not [k for k in results if k.endswith("-error")], results
    assert results["torch-cpu"]["demo_same_candidates"] is True
    assert results["torch-cpu"]["demo_candidates"][0] > 0
    cuda = results["cuda-eager-cpu"]
    assert cuda["parity_max_abs"] <= 1e-4 and cuda["encoder_batch_ms"]["faces"] > 0


def test_onnxruntime_cuda_branch_runs_with_a_cuda_provider_listed(prepared, quick_worker,
                                                                   monkeypatch, capsys):
    """The ORT CUDA EP step builds its Engine and measures (here on CPU, providers faked)."""
    import onnxruntime as ort
    work, _ = prepared
    asked: list[list[str]] = []
    real_session = ort.InferenceSession

    def session(path, opts=None, providers=None, **kw):
        asked.append(list(providers or []))  # what the step asked for ...
        return real_session(path, opts, providers=["CPUExecutionProvider"], **kw)  # ... runs on CPU

    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", session)
    results = gpu_check.worker(work, device="cpu")
    out = capsys.readouterr().out
    assert "onnxruntime-cuda-error" not in results, results["onnxruntime-cuda-error"]
    assert "FAILED" not in out
    assert asked == [["CUDAExecutionProvider"]] * 2  # encoder and detector sessions
    res = results["onnxruntime-cuda"]
    assert res["score_max_abs"] <= 1e-3 and res["same_candidates"] is True
    assert res["demo_same_candidates"] is True


def test_table_has_one_row_per_backend():
    ms = {"p50": 0.5, "p99": 0.75}
    rows = gpu_check.table({
        "cuda-graph": {"parity_max_abs": 2e-6, "score_max_abs": 1e-6, "encoder_per_frame_ms": ms,
                       "detector_per_hop_ms": ms, "detector_step_per_hop_ms": ms,
                       "encoder_batch_ms": {**ms, "faces": 5}},
        "tensorrt-fp16": {"unavailable": "tensorrt not installed"}})
    assert len(rows) == 3 and "step/hop" in rows[0]
    assert rows[1].split()[:3] == ["cuda-graph", "2.0e-06", "1.0e-06"]
    assert rows[1].count("0.500/  0.750") == 4
    assert rows[2].split() == ["tensorrt-fp16", "tensorrt", "not", "installed"]


def test_a_parity_failure_of_the_cuda_backend_fails_the_check(monkeypatch, tmp_path, capsys):
    """Past 1e-4 from torch CPU, the cuda backend's rows make the exit code 1."""
    monkeypatch.setattr(gpu_check, "gpu_present", lambda: (True, "GPU 0: fake"))
    monkeypatch.setattr(gpu_check, "prepare", lambda work: {})
    monkeypatch.setattr(gpu_check, "find_cuda_python", lambda pref: ("python-x", "fake"))

    def fake_worker(cmd, **kw):
        (tmp_path / "gpu_results.json").write_text(json.dumps(
            {"cuda-graph": {"parity_max_abs": 3e-4}, "cuda-eager": {"parity_max_abs": 1e-6}}))
        return subprocess.CompletedProcess(cmd, 0)
    monkeypatch.setattr(gpu_check.subprocess, "run", fake_worker)
    assert gpu_check.main(["--no-install", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAILED: cuda-graph" in out and "cuda-eager" not in out.split("FAILED:")[1]
    assert json.loads((tmp_path / "gpu_check.json").read_text())["cuda-graph"]


def test_demo_flow_maps_carried_in_the_work_dir_are_reused(tmp_path, monkeypatch):
    """A GPU image without MediaPipe reuses flow maps made elsewhere, not re-extracts them."""
    flow = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float16)
    valid = np.array([1, 0, 1, 1, 1], np.float32)
    np.save(tmp_path / "demo_flow.npy", flow)
    np.save(tmp_path / "demo_valid.npy", valid)

    def no_extraction(*a, **k):
        raise AssertionError("demo flow maps extracted although they were carried")
    monkeypatch.setattr(gpu_check, "demo_flow_maps", no_extraction)
    got = gpu_check.prepare_demo(tmp_path)
    assert got is not None
    np.testing.assert_array_equal(got[0], flow)
    np.testing.assert_array_equal(got[1], valid)


def test_no_training_import():
    """The check runs on a bare GPU image: it must not need the training package."""
    code = "import sys, bench.gpu_check; sys.exit(any(m.startswith('training') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], timeout=60,
                          cwd=gpu_check.ROOT).returncode == 0


def test_demo_flow_maps_follow_the_primary_face_through_the_stage_chain(tmp_path):
    """The real extraction, on the first second of the demo clip."""
    pytest.importorskip("mediapipe")
    import cv2

    from stream.sources import DEMO_CLIP
    cap = cv2.VideoCapture(str(DEMO_CLIP))
    clip = tmp_path / "first_second.mp4"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    for _ in range(30):
        ok, img = cap.read()
        assert ok
        out.write(img)
    out.release()
    cap.release()
    flow, valid, app = gpu_check.demo_flow_maps(clip)
    assert app is None  # a flow-only model's check: no appearance stage
    assert flow.shape == (30, 3, 64, 64) and flow.dtype == np.float16 and valid.shape == (30,)
    # Δ = 0.2 s at 30 fps is 6 frames; a reference within ±50 % of it is accepted
    assert not valid[:3].any() and valid[6:].all()
    assert np.abs(flow[valid]).max() > 0 and not flow[~valid].any()
