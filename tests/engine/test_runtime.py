"""Backend selection (auto / named, one status line, one-line errors), the Engine facade
(torch vs ONNX Runtime parity, batching, padding) and weight loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import engine.runtime as runtime
from engine.backends import BackendError, BackendUnavailable
from engine.config import StreamConfig
from engine.decode import OUTPUT_KEYS
from engine.model import FEDN
from tests.engine.conftest import TINY, probe_with
from engine.runtime import Engine, load_model, select_backend

CFG = TINY
S = StreamConfig().flow_size


@pytest.fixture(scope="module")
def model(tiny_model) -> FEDN:
    return tiny_model


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("ok, expect", [
    ({"tensorrt": True, "onnxruntime": True, "torch": True}, "tensorrt"),
    ({"onnxruntime": True, "torch": True}, "onnxruntime"),
    ({"torch": True}, "torch"),
])
def test_auto_prefers_tensorrt_then_onnxruntime_then_torch(ok, expect):
    lines: list[str] = []
    sel = select_backend("auto", probe=probe_with(**ok), log=lines.append)
    assert sel.name == expect and len(lines) == 1
    assert lines[0].startswith(f"engine: {expect} (auto:")
    if expect != "tensorrt":
        assert "skipped tensorrt: tensorrt absent" in lines[0]  # says why


def test_auto_with_nothing_available():
    with pytest.raises(BackendUnavailable) as err:
        select_backend("auto", probe=probe_with(), log=None)
    assert "\n" not in str(err.value) and "pip install onnxruntime" in str(err.value)


@pytest.mark.parametrize("name, hint", [("tensorrt", "gpu"), ("onnxruntime", "pip install"),
                                        ("torch", "pip install torch")])
def test_named_backend_not_installed_is_one_line(name, hint):
    with pytest.raises(BackendUnavailable) as err:
        select_backend(name, probe=probe_with(), log=None)
    msg = str(err.value)
    assert msg.startswith(f"--engine {name} cannot run here") and hint in msg and "\n" not in msg


def test_named_backend_available_and_bad_choice():
    lines: list[str] = []
    assert select_backend("torch", probe=probe_with(torch=True), log=lines.append).name == "torch"
    assert lines == ["engine: torch (requested; torch here)"]
    with pytest.raises(ValueError, match="engine must be one of"):
        select_backend("tflite", probe=probe_with(), log=None)


def test_real_probe_on_this_machine():
    sel = select_backend("auto", log=None)  # real availability: onnxruntime here
    assert sel.name in ("tensorrt", "cuda", "onnxruntime")
    from engine.backends.cuda import available as cuda_available
    from engine.backends.tensorrt import available
    if not available()[0] and not cuda_available()[0]:
        assert sel.name == "onnxruntime" and "tensorrt" in sel.reason


@pytest.fixture(scope="module")
def engines(model, cache):
    with Engine.load("torch", model=model, log=lambda m: None) as ref, \
            Engine.load("onnxruntime", model=model, cache_dir=cache, threads=1,
                        log=lambda m: None) as ort:
        yield ref, ort


def test_engine_torch_and_onnxruntime_agree(engines):
    ref, ort = engines
    assert (ref.name, ort.name) == ("torch", "onnxruntime")
    rng = np.random.default_rng(0)
    flow = rng.standard_normal((5, 3, S, S)).astype(np.float16)  # FlowFrame dtype
    valid = np.array([True, True, False, True, False])
    a, b = ref.encode(flow, valid), ort.encode(flow, valid)
    assert a.shape == (5, CFG.feat_dim) and a.dtype == np.float32
    assert np.abs(a - b).max() <= 1e-4
    window = rng.standard_normal((CFG.window, CFG.feat_dim)).astype(np.float32)
    oa, ob = ref.detect(window), ort.detect(window[None])
    assert list(oa) == list(OUTPUT_KEYS) and set(ob) == set(OUTPUT_KEYS)
    for k in OUTPUT_KEYS:
        assert oa[k].shape[0] == 1 and np.abs(oa[k] - ob[k]).max() <= 1e-4


def test_engine_padding_is_no_face(engines, model):
    for eng in engines:
        pad = eng.padding(3)
        assert pad.shape == (3, CFG.feat_dim)
        assert np.allclose(pad, model.encoder.no_face.detach().numpy()[None], atol=1e-6)


def test_engine_encode_chunks_large_batches(engines, monkeypatch):
    _, ort = engines
    flow = np.random.default_rng(1).standard_normal((5, 3, S, S)).astype(np.float32)
    valid = np.ones(5, np.float32)
    whole = ort.encode(flow, valid)
    calls = len(ort.encoder.timings)
    monkeypatch.setattr(runtime, "MAX_ENCODE_BATCH", 2)
    chunked = ort.encode(flow, valid)
    assert len(ort.encoder.timings) - calls == 3  # 2 + 2 + 1
    assert np.abs(whole - chunked).max() <= 1e-5


@pytest.mark.parametrize("call, fragment", [
    (lambda e: e.encode(np.zeros((2, 3, S, S)), np.ones(3)), "must be (n, 3, S, S)"),
    (lambda e: e.detect(np.zeros((CFG.window - 1, CFG.feat_dim))), "shape"),
])
def test_engine_bad_shapes_are_one_line(engines, call, fragment):
    for eng in engines:
        with pytest.raises(BackendError) as err:
            call(eng)
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_engine_tensorrt_unavailable_here(model, cache):
    from engine.backends.tensorrt import available
    if available()[0]:
        pytest.skip("TensorRT is available here")
    with pytest.raises(BackendUnavailable, match="--engine tensorrt"):
        Engine.load("tensorrt", model=model, cache_dir=cache, log=lambda m: None)


def test_engine_uses_given_onnx_dir_and_checks_it(model, cache, tmp_path):
    with pytest.raises(BackendError, match="not found"):
        Engine.load("onnxruntime", model=model, onnx_dir=tmp_path, log=lambda m: None)


def test_load_model_checkpoint_round_trip(model, tmp_path):
    from dataclasses import asdict
    path = tmp_path / "fedn.pt"
    torch.save({"model": model.state_dict(), "config": asdict(CFG)}, path)
    loaded = load_model(path, log=lambda m: None)
    assert loaded.cfg == CFG
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k


@pytest.mark.parametrize("problem, fragment", [("missing", "not found"),
                                               ("truncated", "truncated"),
                                               ("mismatch", "do not fit")])
def test_load_model_bad_weights_one_line(model, tmp_path, problem, fragment):
    path = tmp_path / "fedn.pt"
    if problem == "truncated":
        torch.save(model.state_dict(), path)
        path.write_bytes(path.read_bytes()[:1000])
    elif problem == "mismatch":
        torch.save(model.state_dict(), path)  # small weights, default (large) config
    with pytest.raises(BackendError) as err:
        load_model(path, log=lambda m: None)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_load_model_without_shipped_weights_says_so(monkeypatch, tmp_path):
    from engine import checkpoint
    monkeypatch.setattr(checkpoint, "WEIGHTS_DIR", tmp_path)
    lines: list[str] = []
    m = load_model(None, log=lines.append)
    assert isinstance(m, FEDN) and len(lines) == 1 and "untrained" in lines[0]


def test_shipped_onnx_used_only_when_exported_from_these_weights(model, cache, tmp_path,
                                                                  monkeypatch):
    import json

    from engine.export import export_fedn, model_fingerprint
    export_fedn(model.encoder, model.detector, CFG, tmp_path, flow_size=S)
    monkeypatch.setattr(runtime, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(runtime, "load_model", lambda *a, **k: model)
    fingerprint = model_fingerprint((model.encoder, model.detector), CFG, S)
    (tmp_path / "manifest.json").write_text(json.dumps({"fingerprint": fingerprint}))
    with Engine.load("onnxruntime", cache_dir=cache, threads=1, log=lambda m: None) as eng:
        assert eng.encoder.path == tmp_path / "encoder.onnx"  # the shipped files
    (tmp_path / "manifest.json").write_text(json.dumps({"fingerprint": "other-weights"}))
    lines: list[str] = []
    with Engine.load("onnxruntime", cache_dir=cache, threads=1, log=lines.append) as eng:
        assert eng.encoder.path.parent.name == fingerprint  # a fresh export in the cache
    assert any("exported from other weights" in line for line in lines)
