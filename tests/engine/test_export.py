"""ONNX export of a (small) FEDN: valid opset-18 graphs, static window, dynamic encoder batch,
ONNX Runtime parity ≤ 1e-4, FP16 graph hygiene, first-use cache, one-line errors."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest

from engine.backends import BackendError
from engine.backends.fp16 import KEEP_FP32, fp32_islands
from engine.backends.onnxruntime import OnnxRuntimeBackend
from engine.decode import OUTPUT_KEYS, sigmoid, softmax
from engine.export import (OPSET, OnnxPair, check_pair, ensure_onnx, export_fedn, main,
                           model_fingerprint, parity)
from engine.model import FEDN
from tests.engine.conftest import TINY

CFG = TINY
FLOW = 16  # flow map side for these tests (the stream uses StreamConfig().flow_size)



@pytest.fixture(scope="module")
def model(tiny_model) -> FEDN:
    return tiny_model


@pytest.fixture(scope="module")
def pair(model, tmp_path_factory) -> OnnxPair:
    return export_fedn(model.encoder, model.detector, CFG, tmp_path_factory.mktemp("onnx"),
                       fp16=True, flow_size=FLOW)


def _inputs(path) -> dict:
    m = onnx.load(str(path), load_external_data=False)
    return {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in m.graph.input}


def test_graphs_are_valid_opset18_with_expected_io(pair):
    for path in (pair.encoder, pair.detector, pair.encoder_fp16, pair.detector_fp16):
        onnx.checker.check_model(str(path), full_check=True)
        m = onnx.load(str(path), load_external_data=False)
        assert {o.domain: o.version for o in m.opset_import}.get("", None) == OPSET
        assert path.with_name(path.name + ".data").is_file()
    enc, det = _inputs(pair.encoder), _inputs(pair.detector)
    assert list(enc) == ["flow", "valid"] and isinstance(enc["flow"][0], str)  # dynamic n
    assert enc["flow"][1:] == [3, FLOW, FLOW] and enc["valid"][0] == enc["flow"][0]
    assert det == {"features": [1, CFG.window, CFG.feat_dim]}  # static window
    det_model = onnx.load(str(pair.detector), load_external_data=False)
    assert [o.name for o in det_model.graph.output] == list(OUTPUT_KEYS)


def test_onnxruntime_parity_encoder_any_batch(model, pair):
    rng = np.random.default_rng(1)
    for n in (1, 3, 7):
        flow = rng.standard_normal((n, 3, FLOW, FLOW)).astype(np.float32)
        valid = (rng.random(n) > 0.3).astype(np.float32)
        diffs = parity(model.encoder, pair.encoder, {"flow": flow, "valid": valid}, threads=1)
        assert diffs["features"] <= 1e-4


def test_onnxruntime_parity_detector(model, pair):
    feats = np.random.default_rng(2).standard_normal((1, CFG.window, CFG.feat_dim))
    diffs = parity(model.detector, pair.detector, {"features": feats.astype(np.float32)},
                   threads=1)
    assert set(diffs) == set(OUTPUT_KEYS) and max(diffs.values()) <= 1e-4


def test_fp16_graph_hygiene(pair):
    islands = fp32_islands(pair.detector_fp16)
    assert islands.get("LayerNormalization"), "the detector has LayerNorms"
    assert set(islands["LayerNormalization"]) == {"FLOAT"}  # every LayerNorm reads float32
    assert set(islands.get("Softmax", ["FLOAT"])) == {"FLOAT"}
    m = onnx.load(str(pair.detector_fp16))
    types = {t.data_type for t in m.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    consumers = {}
    for node in m.graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    for t in m.graph.initializer:  # float32 weights only where float32 ops use them
        if t.data_type == onnx.TensorProto.FLOAT:
            assert consumers[t.name] <= KEEP_FP32, (t.name, consumers[t.name])
    for vi in list(m.graph.input) + list(m.graph.output):  # float32 I/O for every backend
        assert vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_fp16_graph_scores_close_to_fp32(pair):
    feats = np.random.default_rng(3).standard_normal((1, CFG.window, CFG.feat_dim))
    feed = {"features": feats.astype(np.float32)}
    with OnnxRuntimeBackend(pair.detector, threads=1) as a, \
            OnnxRuntimeBackend(pair.detector_fp16, threads=1) as b:
        ref, got = a.infer(feed), b.infer(feed)
    assert np.abs(sigmoid(got["cls_logits"]) - sigmoid(ref["cls_logits"])).max() <= 1e-2
    assert np.abs(softmax(got["emo_logits"]) - softmax(ref["emo_logits"])).max() <= 1e-2
    assert np.abs(got["reg"] - ref["reg"]).max() <= 0.05 * (1 + np.abs(ref["reg"]).max())
    flow = np.random.default_rng(4).standard_normal((2, 3, FLOW, FLOW)).astype(np.float32)
    feed = {"flow": flow, "valid": np.array([1, 0], np.float32)}
    with OnnxRuntimeBackend(pair.encoder, threads=1) as a, \
            OnnxRuntimeBackend(pair.encoder_fp16, threads=1) as b:
        ref, got = a.infer(feed)["features"], b.infer(feed)["features"]
    assert np.abs(got - ref).max() <= 1e-2 * (1 + np.abs(ref).max())


def test_check_pair_accepts_matching_files(pair):
    check_pair(pair, CFG, FLOW)  # no error


@pytest.mark.parametrize("problem, fragment", [
    ("missing", "not found"), ("no_data", ".data not found"), ("window", "window"),
    ("flow", "flow"), ("garbage", "not a readable ONNX file")])
def test_check_pair_one_line_errors(pair, tmp_path, problem, fragment):
    enc, det = tmp_path / "encoder.onnx", tmp_path / "detector.onnx"
    for src, dst in ((pair.encoder, enc), (pair.detector, det)):
        dst.write_bytes(src.read_bytes())
        dst.with_name(dst.name + ".data").write_bytes(
            src.with_name(src.name + ".data").read_bytes())
    cfg, flow = CFG, FLOW
    if problem == "missing":
        det.unlink()
    elif problem == "no_data":
        det.with_name("detector.onnx.data").unlink()
    elif problem == "window":
        cfg = replace(CFG, window=64)
    elif problem == "flow":
        flow = 32
    else:
        det.write_bytes(b"\x00garbage" * 8)
    with pytest.raises(BackendError) as err:
        check_pair(OnnxPair(enc, det), cfg, flow)
    msg = str(err.value)
    assert fragment in msg and "engine.export" in msg and "\n" not in msg


def test_ensure_onnx_exports_once_per_model(model, tmp_path):
    logs: list[str] = []
    first = ensure_onnx(model.encoder, model.detector, CFG, tmp_path, FLOW, log=logs.append)
    assert len(logs) == 1 and "first use" in logs[0] and first.detector.is_file()
    again = ensure_onnx(model.encoder, model.detector, CFG, tmp_path, FLOW, log=logs.append)
    assert again == first and len(logs) == 1  # cached: no second export
    other = FEDN(CFG).eval()  # different weights -> another cache entry
    assert first.detector.parent.name == model_fingerprint((model.encoder, model.detector),
                                                           CFG, FLOW)
    assert model_fingerprint((other.encoder, other.detector), CFG, FLOW) != \
        first.detector.parent.name
    assert model_fingerprint((model.encoder, model.detector), CFG, 32) != \
        first.detector.parent.name


def test_cli_missing_weights_is_one_line(tmp_path, capsys):
    assert main(["--weights", str(tmp_path / "nope.pt"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not found" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_cli_exports_default_model_with_parity(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--fp16"]) == 0
    out = capsys.readouterr().out
    assert "parity" in out and "OK" in out
    assert (tmp_path / "detector.fp16.onnx").is_file()


def test_polygraphy_inspects_the_graphs(pair):
    """TensorRT's own tooling reads the exported graphs (when polygraphy is installed)."""
    pytest.importorskip("polygraphy")
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    tool = Path(sys.executable).parent / "polygraphy"
    tool = str(tool) if tool.is_file() else shutil.which("polygraphy")
    if tool is None:
        pytest.skip("polygraphy command not found")
    for path, name in ((pair.detector, "features"), (pair.detector_fp16, "features"),
                       (pair.encoder, "flow")):
        res = subprocess.run([tool, "inspect", "model", str(path)], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-500:]
        assert "ONNX Opset: 18" in res.stdout
        assert f"{name} [dtype=float32" in res.stdout  # FP32 I/O (FP16 inside the fp16 graph)
