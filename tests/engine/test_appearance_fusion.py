"""Appearance fusion (issue 15): the encoder reads the real-face classifier's probabilities
and their baseline delta next to the flow — in torch, in the exported ONNX graph, through
``Engine.encode``, and in the stage chain (crops cut on the face stage)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.backends import BackendError
from engine.config import APPEARANCE_DIM, ModelConfig, StreamConfig
from engine.model import FEDN
from engine.runtime import Engine
from tests.engine.conftest import TINY, seeded_fedn

CFG = dataclasses.replace(TINY, appearance_dim=APPEARANCE_DIM)
S = StreamConfig().flow_size


@pytest.fixture(scope="module")
def model() -> FEDN:
    return seeded_fedn(CFG)


def _inputs(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    flow = rng.normal(0, 1, (n, 3, S, S)).astype(np.float32)
    valid = np.ones(n, np.float32)
    valid[-1] = 0
    app = rng.random((n, APPEARANCE_DIM)).astype(np.float32)
    return flow, valid, app


def test_config_accepts_only_off_or_the_appearance_width():
    assert ModelConfig().appearance_dim == 0  # the shipped model is flow only
    with pytest.raises(ValueError, match="appearance_dim"):
        ModelConfig(appearance_dim=5)


def test_encoder_reads_appearance_on_valid_frames_only(model):
    flow, valid, app = (torch.from_numpy(x) for x in _inputs(4))
    a = model.encoder(flow, valid, app)
    b = model.encoder(flow, valid, app + 0.5)
    assert not torch.allclose(a[:3], b[:3])  # a valid frame's feature follows its appearance
    assert torch.equal(a[3], model.encoder.no_face.detach())  # no face: the no-face feature
    assert torch.equal(b[3], a[3])
    with pytest.raises(ValueError, match="appearance must be"):
        model.encoder(flow, valid)
    with pytest.raises(ValueError, match="no appearance input"):
        FEDN(TINY).encoder(flow, valid, app)


def test_clip_encode_equals_per_frame_encoder(model):
    flow, valid, app = (torch.from_numpy(x) for x in _inputs(6, seed=1))
    clip = model.encode(flow.reshape(2, 3, 3, S, S), valid.reshape(2, 3),
                        app.reshape(2, 3, -1))  # (B, T, ...) with B = 2, T = 3
    torch.testing.assert_close(clip.reshape(6, -1), model.encoder(flow, valid, app),
                               rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_engine_encode_matches_torch_and_checks_its_input(model, backend, tmp_path):
    eng = Engine.load(backend, model=model, cache_dir=tmp_path, threads=1, log=lambda s: None)
    try:
        flow, valid, app = _inputs(5, seed=2)
        got = eng.encode(flow, valid, app)
        with torch.inference_mode():
            want = model.encoder(*(torch.from_numpy(x) for x in (flow, valid, app))).numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
        np.testing.assert_allclose(eng.padding(2), np.repeat(want[-1:], 2, 0), atol=1e-6)
        with pytest.raises(BackendError, match="needs appearance"):
            eng.encode(flow, valid)
        with pytest.raises(BackendError, match="needs appearance"):
            eng.encode(flow, valid, app[:, :7])
    finally:
        eng.close()


def test_onnx_encoder_of_a_flow_only_model_is_refused_for_a_fused_one(model, tiny_model,
                                                                     tmp_path):
    from engine.export import OnnxPair, check_pair, export_fedn
    pair = export_fedn(tiny_model.encoder, tiny_model.detector, TINY, tmp_path, flow_size=S,
                       step=False)
    check_pair(pair, TINY, S)  # its own config fits
    with pytest.raises(BackendError, match="appearance"):
        check_pair(OnnxPair(pair.encoder, pair.detector), CFG, S)


def test_flow_only_engine_refuses_appearance(tiny_model, tmp_path):
    eng = Engine.load("torch", model=tiny_model, cache_dir=tmp_path, log=lambda s: None)
    flow, valid, app = _inputs(2)
    with pytest.raises(BackendError, match="flow only"):
        eng.encode(flow, valid, app)
    eng.close()


def test_the_export_command_exports_and_checks_a_fused_checkpoint(model, tmp_path):
    """``python -m engine.export`` on a fused model: all three graphs, parity checked with the
    appearance input fed (it used to feed flow and valid only, and failed)."""
    from engine.export import main
    ckpt = tmp_path / "fused.pt"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(CFG)}, ckpt)
    assert main(["--weights", str(ckpt), "--out", str(tmp_path / "out")]) == 0
    assert {p.name for p in (tmp_path / "out").glob("*.onnx")} == {
        "encoder.onnx", "detector.onnx", "detector_step.onnx"}
