"""The Backend interface: torch and ONNX Runtime behind one context manager, checked feeds,
per-call timing, one-line errors; TensorRT reports itself unavailable without a GPU."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from engine.backends import Backend, BackendError, BackendUnavailable, TensorSpec, percentiles_ms
from engine.backends.onnxruntime import OnnxRuntimeBackend
from engine.backends.torch import TorchBackend
from engine.export import export_onnx

SPECS = (TensorSpec("x", (None, 6), np.float32), TensorSpec("mask", (None,), np.float32))
NAMES = ("y", "score")


class Tiny(nn.Module):
    """Two inputs, dict output: y = relu(Wx) * mask, score = sigmoid(sum y)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(6, 4)
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        y = torch.relu(self.norm(self.lin(x))) * mask.reshape(-1, 1)  # (n,) -> (n, 1)
        return {"y": y, "score": torch.sigmoid(y.sum(-1))}



@pytest.fixture(scope="module")
def tiny() -> Tiny:
    torch.manual_seed(0)
    return Tiny().eval()


@pytest.fixture(scope="module")
def tiny_onnx(tiny, tmp_path_factory):
    example = {"x": torch.randn(3, 6), "mask": torch.ones(3)}
    return export_onnx(tiny, example, tmp_path_factory.mktemp("tiny") / "tiny.onnx", NAMES,
                       dynamic_dims={"x": 0, "mask": 0})


@pytest.fixture(params=["torch", "onnxruntime"])
def backend(request, tiny, tiny_onnx) -> Backend:
    if request.param == "torch":
        return TorchBackend(tiny, SPECS, NAMES)
    return OnnxRuntimeBackend(tiny_onnx, threads=1)


def feed(n: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((n, 6)).astype(np.float32),
            "mask": np.array([1, 0] * (n // 2) + [1] * (n % 2), np.float32)}


def test_infer_names_outputs_and_records_timing(backend):
    with backend as b:
        assert b.is_active
        assert [s.name for s in b.inputs] == ["x", "mask"]
        for n in (1, 2, 5):  # dynamic first dim
            out = b.infer(feed(n))
            assert set(out) == set(NAMES)
            assert out["y"].shape == (n, 4) and out["score"].shape == (n,)
            assert np.all(out["y"][1::2] == 0)  # masked rows
        assert len(b.timings) == 3 and b.last_inference_time > 0
        stats = percentiles_ms(b.timings)
        assert stats["n"] == 3 and 0 < stats["p50"] <= stats["p99"]
    assert not backend.is_active


def test_onnxruntime_matches_torch(tiny, tiny_onnx):
    data = feed(7, seed=3)
    with TorchBackend(tiny, SPECS, NAMES) as ref, OnnxRuntimeBackend(tiny_onnx, threads=1) as got:
        a, b = ref.infer(data), got.infer(data)
    for name in NAMES:
        assert np.abs(a[name] - b[name]).max() <= 1e-4


@pytest.mark.parametrize("bad, fragment", [
    ({"x": np.zeros((2, 6), np.float32)}, "missing ['mask']"),
    ({**feed(), "extra": np.zeros(2, np.float32)}, "unexpected ['extra']"),
    ({"x": np.zeros((2, 6), np.float64), "mask": np.ones(2, np.float32)}, ".astype(np.float32)"),
    ({"x": np.zeros((2, 5), np.float32), "mask": np.ones(2, np.float32)}, "shape (2, 5)"),
    ({"x": np.zeros((2, 6, 1), np.float32), "mask": np.ones(2, np.float32)}, "x[?,6]"),
    ({"x": [[0.0] * 6], "mask": np.ones(1, np.float32)}, "numpy array"),
])
def test_bad_feed_is_one_line_error(backend, bad, fragment):
    with backend as b:
        with pytest.raises(BackendError) as err:
            b.infer(bad)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert b.name in str(err.value)


def test_infer_before_activate(backend):
    with pytest.raises(BackendError, match="activate"):
        backend.infer(feed())


def test_tensor_spec_matching():
    spec = TensorSpec("f", (1, -1, 8), "float32")
    assert spec.shape == (1, None, 8) and spec.dtype == np.float32
    assert spec.matches((1, 99, 8)) and not spec.matches((2, 99, 8))
    assert not spec.matches((1, 8)) and spec.describe() == "f[1,?,8] float32"


@pytest.mark.parametrize("kwargs, name", [({"threads": 0}, "threads"),
                                          ({"threads": 1.5}, "threads")])
def test_onnxruntime_argument_checks(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        OnnxRuntimeBackend(tmp_path / "x.onnx", **kwargs)


@pytest.mark.parametrize("content, fragment", [(None, "not found"), (b"", "is empty"),
                                               (b"\x08\x07garbage" * 10, "cannot load")])
def test_onnxruntime_bad_model_file(tmp_path, content, fragment):
    path = tmp_path / "model.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(BackendError) as err:
        OnnxRuntimeBackend(path, threads=1).activate()
    msg = str(err.value)
    assert fragment in msg and "engine.export" in msg and "\n" not in msg


def test_truncated_onnx_is_one_line_error(tiny_onnx, tmp_path):
    data = tiny_onnx.read_bytes()
    bad = tmp_path / "tiny.onnx"
    bad.write_bytes(data[: len(data) // 2])
    (tmp_path / "tiny.onnx.data").write_bytes(
        tiny_onnx.with_name(tiny_onnx.name + ".data").read_bytes())
    with pytest.raises(BackendError) as err:
        OnnxRuntimeBackend(bad, threads=1).activate()
    assert "\n" not in str(err.value) and "re-export" in str(err.value)


def test_torch_backend_checks():
    with pytest.raises(ValueError, match="inputs"):
        TorchBackend(Tiny(), (), NAMES)
    with pytest.raises(ValueError, match="cuda_graph"):
        TorchBackend(Tiny(), SPECS, NAMES, device="cpu", cuda_graph=True)
    with TorchBackend(Tiny(), SPECS, ("only_one",)) as b:
        with pytest.raises(BackendError, match="missing outputs"):
            b.infer(feed())


def test_torch_cuda_unavailable_is_one_line(tiny):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailable) as err:
        TorchBackend(tiny, SPECS, NAMES, device="cuda").activate()
    assert "\n" not in str(err.value) and "onnxruntime" in str(err.value)


@pytest.mark.gpu
def test_torch_cuda_and_cuda_graph_match_cpu(tiny):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    specs = (TensorSpec("x", (4, 6), np.float32), TensorSpec("mask", (4,), np.float32))
    data = feed(4)
    with TorchBackend(tiny, specs, NAMES) as cpu:
        ref = cpu.infer(data)
    for graph in (False, True):
        with TorchBackend(copy.deepcopy(tiny), specs, NAMES, device="cuda",
                          cuda_graph=graph) as gpu:
            for seed in (1, 0):  # a graph replays with new inputs copied in
                out = gpu.infer(feed(4, seed))
            assert all(np.abs(out[k] - ref[k]).max() <= 1e-3 for k in NAMES)
