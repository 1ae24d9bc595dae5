"""`make gpu-check` without a GPU: one clear line and exit 0; its steps run on CPU."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import engine.runtime as runtime
from engine import gpu_check
from engine.config import ModelConfig
from engine.model import FEDN

CFG = ModelConfig(window=32, hop=8, segment=4, attn_window=4, levels=2, channels=32, heads=2,
                  feat_dim=16, enc_channels=(8, 16), enc_grid=2, range_base=8)


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


def test_module_runs_as_script_here():
    res = subprocess.run([sys.executable, "-m", "engine.gpu_check"], capture_output=True,
                         text=True, timeout=120, cwd=gpu_check.ROOT)
    assert res.returncode == 0
    if "no GPU" not in res.stdout:
        pytest.skip("this machine has an NVIDIA GPU: the full check ran")
    assert len(res.stdout.strip().splitlines()) == 1


def test_prepare_and_worker_steps_on_cpu(monkeypatch, tmp_path, capsys):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    small = FEDN(CFG).eval()
    real_load = runtime.load_model
    monkeypatch.setattr(runtime, "load_model",
                        lambda weights=None, log=print: small if weights is None
                        else real_load(weights, log=log))
    monkeypatch.setattr("engine.bench.bench_engine",
                        lambda eng, frames=0, hops=0: {"encoder_per_frame_ms": {"p50": 1.0,
                                                                               "p99": 2.0},
                                                        "detector_per_hop_ms": {"p50": 1.0,
                                                                                "p99": 2.0}})
    def fake_demo(work):  # the real one runs MediaPipe over the 750-frame demo clip
        rng = np.random.default_rng(0)
        flow = rng.standard_normal((40, 3, 64, 64)).astype(np.float16)
        valid = rng.random(40) > 0.2
        np.save(work / "demo_flow.npy", flow)
        np.save(work / "demo_valid.npy", valid)
        return flow, valid

    monkeypatch.setattr(gpu_check, "prepare_demo", fake_demo)
    monkeypatch.setattr(gpu_check, "DEMO_THRESH", 0.0)  # every point a candidate: strict
    first = gpu_check.prepare(tmp_path)
    assert first["onnxruntime-cpu"]["parity_max_abs"] <= 1e-4
    assert (tmp_path / "onnx" / "detector.fp16.onnx").is_file()
    data = np.load(tmp_path / "inputs.npz")
    assert data["windows"].shape[1:] == (CFG.window, CFG.feat_dim)
    results = gpu_check.worker(tmp_path, device="cpu")
    json.dumps(results)  # serialisable for gpu_results.json
    assert results["torch-cpu"]["score_max_abs"] == 0.0  # same weights, same device as reference
    assert results["torch-cpu"]["same_candidates"] is True
    assert results["torch-cpu"]["demo_same_candidates"] is True
    assert results["torch-cpu"]["demo_candidates"][0] > 0  # something was compared
    out = capsys.readouterr().out
    from engine.backends.tensorrt import available
    if not available()[0]:
        assert "TensorRT: unavailable" in out and "unavailable" in results["tensorrt-fp16"]


def test_demo_flow_maps_carried_in_the_work_dir_are_reused(tmp_path, monkeypatch):
    """A GPU image without MediaPipe reuses flow maps made elsewhere, not re-extracts them."""
    flow = np.random.default_rng(0).standard_normal((5, 3, 8, 8)).astype(np.float16)
    valid = np.array([1, 0, 1, 1, 1], np.float32)
    np.save(tmp_path / "demo_flow.npy", flow)
    np.save(tmp_path / "demo_valid.npy", valid)
    import training.features

    def no_extraction(*a, **k):
        raise AssertionError("extract_video called although flow maps were carried")
    monkeypatch.setattr(training.features, "extract_video", no_extraction)
    got = gpu_check.prepare_demo(tmp_path)
    assert got is not None
    np.testing.assert_array_equal(got[0], flow)
    np.testing.assert_array_equal(got[1], valid)
