"""TensorRTBackend end to end against a fake ``tensorrt`` module (ONNX Runtime underneath)
and fake device memory: build → cache → reload, dynamic shapes, buffers, one-line errors.
The real thing runs in the ``gpu``-marked test at the bottom (and in `make gpu-check`)."""
from __future__ import annotations

import contextlib
import json
import types

import numpy as np
import pytest
import torch
from torch import nn

import engine.backends.tensorrt as trt_backend
from engine.backends import BackendError
from engine.backends.tensorrt import TensorRTBackend
from engine.export import export_onnx


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x, mask):
        return {"y": torch.tanh(self.lin(x)) * mask.reshape(-1, 1),  # (n,) -> (n, 1)
                "total": self.lin(x).sum(-1)}


class FakeMemory:
    """Host arrays standing in for device buffers; pointers are dict keys."""

    stream_handle = 0

    def __init__(self) -> None:
        self.buffers: dict[int, np.ndarray] = {}

    def current(self):
        return contextlib.nullcontext()

    def alloc(self, volume, dtype):
        ptr = 4096 * (len(self.buffers) + 1)
        self.buffers[ptr] = np.zeros(volume, dtype)
        return np.zeros(volume, dtype), self.buffers[ptr], ptr

    def h2d(self, dev, host, n):
        dev[:n] = host[:n]

    def d2h(self, host, dev, n):
        host[:n] = dev[:n]

    def synchronize(self):
        pass

    def close(self):
        pass


def make_fake_trt(memory: FakeMemory, version: str = "11.4.0.fake", fail_parse: bool = False):
    """A module with the slice of the TensorRT Python API the backend uses."""
    import onnxruntime as ort
    trt = types.SimpleNamespace(__version__=version, builds=0, flags=[], fail_parse=fail_parse)

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    def session(path):
        return ort.InferenceSession(path, providers=["CPUExecutionProvider"])

    def io(path):
        s = session(path)
        spec = lambda a: (a.name, tuple(d if isinstance(d, int) else -1 for d in a.shape))  # noqa
        return s, [spec(a) for a in s.get_inputs()], [spec(a) for a in s.get_outputs()]

    class Network:
        def __init__(self):
            self.inputs = []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            name, shape = self.inputs[i]
            return types.SimpleNamespace(name=name, shape=shape)

    class Parser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path):
            if trt.fail_parse:
                self.num_errors = 1
                return False
            self.network.path = path
            self.network.inputs = io(path)[1]
            return True

        def get_error(self, i):
            return "In node 3 (Softmax): unsupported axis"

    class Config:
        def __init__(self):
            self.profiles, self.timing = [], None

        def set_memory_pool_limit(self, pool, size):
            assert pool == "workspace" and size > 0

        def set_flag(self, flag):
            trt.flags.append(flag)

        def create_timing_cache(self, data):
            return types.SimpleNamespace(serialize=lambda: b"TIMING" + bytes(data[:0]))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing = cache

        def get_timing_cache(self):
            return self.timing

        def add_optimization_profile(self, profile):
            self.profiles.append(profile.shapes)

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = [tuple(lo), tuple(opt), tuple(hi)]

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.builds += 1
            profile = config.profiles[0] if config.profiles else {}
            return b"FAKE" + json.dumps({"path": network.path, "profile": profile}).encode()

    class Context:
        def __init__(self, eng):
            self.eng, self.shapes, self.ptrs = eng, {}, {}

        def set_input_shape(self, name, shape):
            self.shapes[name] = tuple(shape)

        def get_tensor_shape(self, name):
            if name in self.shapes:
                return self.shapes[name]
            feed = {n: np.zeros(self.shapes[n], np.float32) for n, _ in self.eng.ins}
            outs = self.eng.session.run([name], feed)
            return outs[0].shape

        def set_tensor_address(self, name, ptr):
            self.ptrs[name] = ptr

        def execute_async_v3(self, stream):
            feed = {n: memory.buffers[self.ptrs[n]][: int(np.prod(self.shapes[n]))]
                    .reshape(self.shapes[n]) for n, _ in self.eng.ins}
            names = [n for n, _ in self.eng.outs]
            for name, value in zip(names, self.eng.session.run(names, feed)):
                memory.buffers[self.ptrs[name]][: value.size] = value.reshape(-1)
            return True

    class Engine:
        def __init__(self, meta):
            self.session, self.ins, self.outs = io(meta["path"])
            self.profile = meta["profile"]
            self.names = [n for n, _ in self.ins + self.outs]

        num_io_tensors = property(lambda self: len(self.names))

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            return "in" if name in dict(self.ins) else "out"

        def get_tensor_shape(self, name):
            return dict(self.ins + self.outs)[name]

        def get_tensor_dtype(self, name):
            return np.float32

        def get_tensor_profile_shape(self, name, index):
            return self.profile[name]

        def create_execution_context(self):
            return Context(self)

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            return Engine(json.loads(data[4:])) if data.startswith(b"FAKE") else None

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, Parser, Runtime
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=0)
    trt.TensorIOMode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
    trt.nptype = lambda dtype: dtype
    return trt


@pytest.fixture(scope="module")
def net_onnx(tmp_path_factory):
    torch.manual_seed(0)
    net = Net().eval()
    path = export_onnx(net, {"x": torch.randn(2, 5), "mask": torch.ones(2)},
                       tmp_path_factory.mktemp("net") / "net.onnx", ("y", "total"),
                       dynamic_dims={"x": 0, "mask": 0})
    return net, path


@pytest.fixture
def fake(monkeypatch):
    memory = FakeMemory()
    trt = make_fake_trt(memory)
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", trt)
    monkeypatch.setattr(trt_backend, "available", lambda: (True, "fake tensorrt"))
    monkeypatch.setattr(trt_backend, "gpu_name", lambda: "Fake GPU")
    monkeypatch.setattr(trt_backend, "_device_memory", lambda: memory)
    return trt


def test_build_cache_reload_and_parity(fake, net_onnx, tmp_path):
    net, path = net_onnx
    logs: list[str] = []
    profile = {"x": ((1, 5), (1, 5), (8, 5)), "mask": ((1,), (1,), (8,))}
    backend = TensorRTBackend(path, tmp_path, "fp16", profile=profile, log=logs.append)
    with backend as b:
        assert b.loaded_from == "built" and fake.builds == 1
        assert [s.name for s in b.inputs] == ["x", "mask"] and b.inputs[0].shape == (None, 5)
        rng = np.random.default_rng(0)
        for n in (1, 3, 8):  # dynamic batch inside the profile, buffers sized for 8
            x = rng.standard_normal((n, 5)).astype(np.float32)
            mask = np.ones(n, np.float32)
            mask[0] = 0
            out = b.infer({"x": x, "mask": mask})
            with torch.no_grad():
                ref = net(torch.from_numpy(x), torch.from_numpy(mask))
            assert out["y"].shape == (n, 3) and out["total"].shape == (n,)
            assert np.abs(out["y"] - ref["y"].numpy()).max() <= 1e-5
            assert np.abs(out["total"] - ref["total"].numpy()).max() <= 1e-5
        assert len(b.timings) == 3
    assert fake.flags == []  # TensorRT >= 10: precision comes from the graph, no FP16 flag
    assert any("built the fp16 net engine" in m for m in logs)
    assert list(tmp_path.glob("timing-*.cache"))  # timing cache written
    again = TensorRTBackend(path, tmp_path, "fp16", profile=profile, log=logs.append)
    with again:
        assert again.loaded_from == "cache" and fake.builds == 1
    other = TensorRTBackend(path, tmp_path, "fp32", profile=profile, log=logs.append)
    with other:  # another precision: stale entry, rebuilt, message says why
        assert other.loaded_from == "built" and fake.builds == 2
    assert any("precision fp16 -> fp32" in m for m in logs)


def test_weak_typing_flag_only_before_tensorrt_10(monkeypatch, net_onnx, tmp_path):
    memory = FakeMemory()
    old = make_fake_trt(memory, version="8.6.1")
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", old)
    monkeypatch.setattr(trt_backend, "available", lambda: (True, "fake"))
    monkeypatch.setattr(trt_backend, "gpu_name", lambda: "Fake GPU")
    monkeypatch.setattr(trt_backend, "_device_memory", lambda: memory)
    with TensorRTBackend(net_onnx[1], tmp_path, "fp16", log=lambda m: None):
        pass
    assert old.flags == ["fp16"]


def test_parse_failure_is_one_line(fake, net_onnx, tmp_path):
    fake.fail_parse = True
    with pytest.raises(BackendError) as err:
        TensorRTBackend(net_onnx[1], tmp_path, log=lambda m: None).activate()
    msg = str(err.value)
    assert "cannot parse" in msg and "Softmax" in msg and "\n" not in msg


def test_feed_outside_profile_shape_is_checked(fake, net_onnx, tmp_path):
    with TensorRTBackend(net_onnx[1], tmp_path, log=lambda m: None) as b:
        with pytest.raises(BackendError, match="dtype"):
            b.infer({"x": np.zeros((2, 5)), "mask": np.ones(2, np.float32)})


@pytest.mark.gpu
def test_real_tensorrt_fp16_parity_and_cached_start(net_onnx, tmp_path):
    ok, why = trt_backend.available()
    if not ok:
        pytest.skip(why)
    from engine.backends.fp16 import convert_to_fp16
    net, path = net_onnx
    fp16 = convert_to_fp16(path, tmp_path / "net.fp16.onnx")
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    mask = np.ones(4, np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x), torch.from_numpy(mask))
    with TensorRTBackend(fp16, tmp_path / "cache") as b:
        out = b.infer({"x": x, "mask": mask})
    assert np.abs(out["y"] - ref["y"].numpy()).max() <= 1e-2
    again = TensorRTBackend(fp16, tmp_path / "cache")
    with again:
        assert again.loaded_from == "cache" and again.load_seconds < 1.0
