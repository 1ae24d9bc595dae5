"""The encoder and the detector export with the dynamo ONNX exporter and match in onnxruntime."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.decode import OUTPUT_KEYS
from engine.model import FEDN, DetectorOutputs

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CFG = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                  feat_dim=24, heads=4, enc_channels=(8, 16, 16), enc_grid=2)



def _export(module: torch.nn.Module, args: tuple, path, inputs, outputs) -> "ort.InferenceSession":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), dynamo=True, input_names=inputs,
                          output_names=outputs, verbose=False)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def test_encoder_and_detector_onnx_parity(tmp_path):
    torch.manual_seed(0)
    model = FEDN(CFG).eval()
    with torch.no_grad():
        model.encoder.no_face.normal_()
    flow = torch.randn(1, 3, 32, 32)
    enc = _export(model.encoder, (flow, torch.ones(1)), tmp_path / "enc.onnx",
                  ["flow", "valid"], ["feat"])
    for valid in (1.0, 0.0):
        got = enc.run(None, {"flow": flow.numpy(), "valid": np.array([valid], np.float32)})[0]
        with torch.no_grad():
            ref = model.encoder(flow, torch.tensor([valid])).numpy()
        assert got.shape == ref.shape == (1, CFG.feat_dim)
        assert np.abs(got - ref).max() <= 1e-4

    feats = torch.randn(1, CFG.window, CFG.feat_dim)
    det = _export(DetectorOutputs(model.detector), (feats,), tmp_path / "det.onnx",
                  ["feats"], list(OUTPUT_KEYS))
    assert [o.name for o in det.get_outputs()] == list(OUTPUT_KEYS)
    other = torch.randn(1, CFG.window, CFG.feat_dim)  # not the example input
    got = dict(zip(OUTPUT_KEYS, det.run(None, {"feats": other.numpy()})))
    with torch.no_grad():
        ref = model.detector(other)
    for key in OUTPUT_KEYS:
        assert got[key].shape == tuple(ref[key].shape), key
        assert np.abs(got[key] - ref[key].numpy()).max() <= 1e-4, key
