"""The cuda backend: bucketing, padding and the eager path on CPU (against the torch
backend), `auto`'s choice of it, and — marked `gpu`, skipped without CUDA — graph parity."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import engine.backends.cuda as cuda
from engine.backends import BackendError, BackendUnavailable, TensorSpec
from engine.backends.cuda import BATCH_BUCKETS, CudaGraphBackend, GraphRunner, bucket
from engine.backends.torch import TorchBackend
from engine.config import StreamConfig
from engine.runtime import Engine, select_backend
from tests.engine.conftest import TINY, probe_with

S = StreamConfig().flow_size
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
QUIET = lambda m: None  # noqa: E731


def flows(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + n)
    return (rng.standard_normal((n, 3, S, S)).astype(np.float32),
            (rng.random(n) > 0.3).astype(np.float32))


@pytest.fixture(scope="module")
def engines(tiny_model):
    """The torch backend, and the cuda backend's eager path (same buffers and padding) on CPU."""
    with Engine.load("torch", model=tiny_model, log=QUIET) as ref, \
            Engine.load("cuda", model=tiny_model, device="cpu", cuda_graphs=False,
                        probe=probe_with(cuda=True), log=QUIET) as eng:
        yield ref, eng


# --- buckets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n, want", [(1, 1), (2, 2), (3, 4), (4, 4), (5, 8), (8, 8)])
def test_bucket_is_the_smallest_that_fits(n, want):
    assert bucket(n) == want


@pytest.mark.parametrize("bad", [(), (2, 1), (1, 1, 2), (0, 1), (1.5,)])
def test_bad_buckets_are_rejected(bad):
    with pytest.raises(ValueError, match="buckets must be increasing"):
        GraphRunner(lambda t: t, (TensorSpec("x", (None, 2), np.float32),), "cpu",
                    graphs=False, buckets=bad)


def test_constructor_checks():
    spec = TensorSpec("x", (None, 2), np.float32)
    with pytest.raises(ValueError, match="needs a CUDA device"):
        CudaGraphBackend(torch.nn.Identity(), (spec,), ("y",), device="cpu")
    with pytest.raises(ValueError, match="dynamic leading"):
        GraphRunner(lambda t: t, (spec, TensorSpec("z", (1, 2), np.float32)), "cpu",
                    graphs=False)
    with pytest.raises(ValueError, match="batch size must be in"):
        bucket(BATCH_BUCKETS[-1] + 1)


# --- the eager path on CPU against the torch backend -------------------------------------------
def test_engine_load_builds_cuda_backends_with_a_stepper(engines):
    _, eng = engines
    assert eng.name == "cuda" and eng.can_step
    assert all(isinstance(b, CudaGraphBackend) for b in (eng.encoder, eng.detector, eng.stepper))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8])
def test_encoder_padding_is_dropped_exactly(engines, n):
    """n faces run padded to their bucket; the real rows equal the torch backend's on the
    padded batch bit for bit (and its unpadded batch within rounding)."""
    ref, eng = engines
    flow, valid = flows(n)
    got = eng.encode(flow, valid)
    b = bucket(n)
    pad = np.concatenate([flow, np.repeat(flow[-1:], b - n, 0)])
    pad_valid = np.concatenate([valid, np.repeat(valid[-1:], b - n)])
    np.testing.assert_array_equal(got, ref.encode(pad, pad_valid)[:n])
    assert got.shape == (n, TINY.feat_dim) and np.abs(got - ref.encode(flow, valid)).max() <= 1e-6
    slot = eng.encoder.runner._slots[(("flow", (b, 3, S, S)), ("valid", (b,)))]
    assert torch.equal(slot.inputs["flow"][n:], torch.from_numpy(flow[-1:]).expand(b - n, -1, -1,
                                                                                    -1))


def test_encoder_batches_past_the_largest_bucket_run_in_chunks(engines):
    ref, eng = engines
    flow, valid = flows(19)
    got = eng.encode(flow, valid)
    assert got.shape == (19, TINY.feat_dim)
    assert np.abs(got - ref.encode(flow, valid)).max() <= 1e-6
    keys = {k[0][1][0] for k in eng.encoder.runner._slots}  # batch sizes with buffers
    assert keys <= set(BATCH_BUCKETS) and 8 in keys and 4 in keys  # 19 = 8 + 8 + 3 -> 4


def test_empty_batch(engines):
    ref, eng = engines
    flow, valid = flows(0)
    assert eng.encoder.infer({"flow": flow, "valid": valid})["features"].shape == (0,
                                                                                 TINY.feat_dim)


def test_detector_step_and_initial_state_equal_the_torch_backend(engines):
    ref, eng = engines
    rng = np.random.default_rng(1)
    window = rng.standard_normal((TINY.window, TINY.feat_dim)).astype(np.float32)
    a, b = ref.detect(window), eng.detect(window)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    s_ref, s_eng = ref.initial_state(), eng.initial_state()
    np.testing.assert_array_equal(s_ref, s_eng)
    for _ in range(3):  # the state goes out and comes back in through the static buffers
        hop = rng.standard_normal((TINY.hop, TINY.feat_dim)).astype(np.float32)
        (oa, s_ref), (ob, s_eng) = ref.detect_step(hop, s_ref), eng.detect_step(hop, s_eng)
        for k in oa:
            np.testing.assert_array_equal(oa[k], ob[k])
        np.testing.assert_array_equal(s_ref, s_eng)


def test_steps_of_several_streams_are_padded_to_a_bucket(engines):
    """Where one detect_step call takes a batch of streams, 3 of them run padded to 4."""
    ref, eng = engines
    if not getattr(eng, "step_batch", False):
        pytest.skip("this Engine steps one stream per call")
    rng = np.random.default_rng(3)
    state = np.concatenate([ref.initial_state()] * 3)  # (3, rows, C)
    hops = rng.standard_normal((3, TINY.hop, TINY.feat_dim)).astype(np.float32)
    (oa, sa), (ob, sb) = ref.detect_step(hops, state), eng.detect_step(hops, state)
    for k in oa:
        assert ob[k].shape[0] == 3 and np.abs(oa[k] - ob[k]).max() <= 1e-6
    assert sb.shape == sa.shape and np.abs(sa - sb).max() <= 1e-6
    assert (("features", (4, TINY.hop, TINY.feat_dim)), ("state", (4,) + sa.shape[1:])) in \
        eng.stepper.runner._slots


def test_outputs_are_owned_by_the_caller(engines):
    _, eng = engines
    flow, valid = flows(3)
    first = eng.encode(flow, valid)
    keep = first.copy()
    eng.encode(*flows(3, seed=5))  # same bucket, new data
    np.testing.assert_array_equal(first, keep)


def test_batched_inputs_must_agree_and_outputs_carry_the_batch():
    spec = (TensorSpec("x", (None, 2), np.float32), TensorSpec("y", (None,), np.float32))
    runner = GraphRunner(lambda t: {"s": t["x"].sum(1) + t["y"]}, spec, "cpu", graphs=False)
    with pytest.raises(BackendError, match="disagree on the batch size"):
        runner.run({"x": np.zeros((3, 2), np.float32), "y": np.zeros(2, np.float32)})
    out = runner.run({"x": np.ones((3, 2), np.float32), "y": np.arange(3, dtype=np.float32)})
    np.testing.assert_array_equal(out["s"], [2.0, 3.0, 4.0])
    total = GraphRunner(lambda t: {"s": t["x"].sum()}, spec[:1], "cpu", graphs=False)
    with pytest.raises(BackendError, match="leading dim"):
        total.run({"x": np.ones((3, 2), np.float32)})


class FakeGraph:
    """Stands in for ``torch.cuda.CUDAGraph`` on the CPU: replay re-runs what was captured
    into the captured output tensors (static outputs, inputs read from the static buffers)."""

    capturing: "FakeGraph | None" = None

    def __init__(self) -> None:
        self.rerun = None
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        self.rerun()


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda's stream / graph API faked, so the runner's graph path runs on the CPU."""
    from contextlib import contextmanager, nullcontext

    class Stream:
        def wait_stream(self, other) -> None:
            pass

    @contextmanager
    def graph(g, capture_error_mode="global"):
        assert capture_error_mode == "thread_local"
        FakeGraph.capturing = g
        try:
            yield
        finally:
            FakeGraph.capturing = None

    for name, value in {"Stream": Stream, "stream": lambda s: nullcontext(),
                        "current_stream": Stream, "CUDAGraph": FakeGraph, "graph": graph,
                        "device": lambda d: nullcontext()}.items():
        monkeypatch.setattr(torch.cuda, name, value)


def doubling(calls: list):
    """A module call y = 2x + 1 that a FakeGraph capture records."""
    def call(t: dict) -> dict:
        calls.append(FakeGraph.capturing)
        out = {"y": t["x"] * 2 + 1}
        g = FakeGraph.capturing
        if g is not None:
            g.rerun = lambda: out["y"].copy_(t["x"] * 2 + 1)
        return out
    return call


def test_graph_path_copies_in_replays_and_copies_out(fake_cuda):
    calls: list = []
    runner = GraphRunner(doubling(calls), (TensorSpec("x", (None, 2), np.float32),), "cpu")
    a = np.arange(6, dtype=np.float32).reshape(3, 2)
    first = runner.run({"x": a})
    np.testing.assert_array_equal(first["y"], 2 * a + 1)
    assert len(calls) == cuda.WARMUP_CALLS + 1 and calls[-1] is not None  # warm-up, capture
    second = runner.run({"x": -a})  # same bucket: no new capture, new data replayed
    np.testing.assert_array_equal(second["y"], -2 * a + 1)
    np.testing.assert_array_equal(first["y"], 2 * a + 1)  # the caller's copy is untouched
    assert len(calls) == cuda.WARMUP_CALLS + 1
    slot = runner._slots[(("x", (4, 2)),)]
    assert slot.graph.replays == 2 and runner.captures == [(("x", (4, 2)),)]
    runner.run({"x": a[:1]})  # a new bucket: a new capture
    assert runner.captures == [(("x", (4, 2)),), (("x", (1, 2)),)]


def test_activation_captures_every_bucket(fake_cuda, monkeypatch):
    calls: list = []
    spec = (TensorSpec("x", (None, 2), np.float32),)
    runner = GraphRunner(doubling(calls), spec, "cpu")
    runner.prepare()
    assert [k[0][1][0] for k in runner.captures] == list(BATCH_BUCKETS)
    done = len(calls)
    out = runner.run({"x": np.ones((3, 2), np.float32)})
    np.testing.assert_array_equal(out["y"], np.full((3, 2), 3.0))
    assert len(calls) == done  # replayed: nothing captured in the stream
    dynamic = GraphRunner(doubling([]), (TensorSpec("x", (1, None), np.float32),), "cpu")
    dynamic.prepare()
    assert dynamic.captures == []  # its shape is only known on first use
    prepared: list = []
    monkeypatch.setattr(GraphRunner, "prepare", lambda self: prepared.append(self))
    monkeypatch.setattr(TorchBackend, "_activate", lambda self: None)  # no GPU to move to
    with CudaGraphBackend(torch.nn.Identity(), spec, ("y",), device="cuda:0") as backend:
        assert prepared == [backend.runner]


def test_a_failed_capture_is_one_line(fake_cuda, monkeypatch):
    def broken(g, capture_error_mode="global"):
        raise RuntimeError("operation not permitted when stream is capturing\nmore")
    monkeypatch.setattr(torch.cuda, "graph", broken)
    runner = GraphRunner(doubling([]), (TensorSpec("x", (1, 2), np.float32),), "cpu")
    with pytest.raises(BackendError) as err:
        runner.run({"x": np.ones((1, 2), np.float32)})
    msg = str(err.value)
    assert "capture failed (operation not permitted" in msg and "\n" not in msg
    assert "cuda_graphs=False" in msg


def test_shapes_past_max_graphs_run_eagerly(monkeypatch):
    monkeypatch.setattr(cuda, "MAX_GRAPHS", 1)
    spec = (TensorSpec("x", (1, None), np.float32),)
    runner = GraphRunner(lambda t: {"y": t["x"] * 2}, spec, "cpu", graphs=False)
    for width in (2, 3, 4):
        out = runner.run({"x": np.ones((1, width), np.float32)})
        np.testing.assert_array_equal(out["y"], np.full((1, width), 2.0))
    assert len(runner._slots) == 1


# --- selection ----------------------------------------------------------------------------------
@pytest.mark.parametrize("ok, expect", [
    ({"tensorrt": True, "cuda": True, "onnxruntime": True, "torch": True}, "tensorrt"),
    ({"cuda": True, "onnxruntime": True, "torch": True}, "cuda"),
    ({"onnxruntime": True, "torch": True}, "onnxruntime"),
    ({"torch": True}, "torch"),
])
def test_auto_decision_table(ok, expect):
    lines: list[str] = []
    sel = select_backend("auto", probe=probe_with(**ok), log=lines.append)
    assert sel.name == expect and lines == [sel.line()]
    if expect == "cuda":
        assert lines[0] == ("engine: cuda (auto: cuda here; skipped tensorrt: tensorrt absent)")
    if expect in ("onnxruntime", "torch"):
        assert "cuda: cuda absent" in lines[0]


def test_named_cuda_unavailable_is_one_line():
    with pytest.raises(BackendUnavailable) as err:
        select_backend("cuda", probe=probe_with(), log=None)
    msg = str(err.value)
    assert msg.startswith("--engine cuda cannot run here") and "\n" not in msg
    assert "--engine onnxruntime" in msg


def test_real_probe_follows_torch_cuda(monkeypatch):
    """The real probe: no CUDA -> cuda unavailable; torch seeing a GPU -> auto picks cuda
    (TensorRT absent), naming the GPU."""
    from engine.backends.tensorrt import available as trt_available
    if not HAS_CUDA:
        ok, why = cuda.available()
        assert not ok and "sees no CUDA GPU" in why
        assert select_backend("auto", log=None).name != "cuda"
    if trt_available()[0]:
        pytest.skip("TensorRT is installed here: auto takes it")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU 9000")
    sel = select_backend("auto", log=None)
    assert sel.name == "cuda" and "CUDA graphs on Fake GPU 9000" in sel.reason
    assert "skipped tensorrt" in sel.reason


# --- on a GPU (marked gpu: deselected by default, skipped without CUDA) -------------------------
@pytest.fixture(scope="module")
def gpu_engines(tiny_model):
    import copy
    model = copy.deepcopy(tiny_model)  # Engine.load moves the modules to the GPU
    with Engine.load("torch", model=tiny_model, log=QUIET) as ref, \
            Engine.load("cuda", model=model, log=QUIET) as eng:
        yield ref, eng


@pytest.mark.gpu
@needs_cuda
def test_graphs_match_the_torch_cpu_reference(gpu_engines):
    ref, eng = gpu_engines
    for n in (1, 3, 8, 11):
        flow, valid = flows(n)
        assert np.abs(eng.encode(flow, valid) - ref.encode(flow, valid)).max() <= 1e-4
    captured = [k[0][1][0] for k in eng.encoder.runner.captures]
    assert captured == list(BATCH_BUCKETS)  # one graph per bucket, all on activation
    rng = np.random.default_rng(2)
    for _ in range(2):  # a second call replays the same graph on new data
        window = rng.standard_normal((TINY.window, TINY.feat_dim)).astype(np.float32)
        a, b = ref.detect(window), eng.detect(window)
        assert max(np.abs(a[k] - b[k]).max() for k in a) <= 1e-4
    assert len(eng.detector.runner.captures) == 1
    s_ref, s_eng = ref.initial_state(), eng.initial_state()
    assert np.abs(s_ref - s_eng).max() <= 1e-4
    for _ in range(4):
        hop = rng.standard_normal((TINY.hop, TINY.feat_dim)).astype(np.float32)
        (oa, s_ref), (ob, s_eng) = ref.detect_step(hop, s_ref), eng.detect_step(hop, s_eng)
        assert max(np.abs(oa[k] - ob[k]).max() for k in oa) <= 1e-4
        assert np.abs(s_ref - s_eng).max() <= 1e-4
    stepper = eng.stepper.runner  # one graph, or one per bucket where it steps a batch
    assert len(stepper.captures) == (len(BATCH_BUCKETS) if stepper.batched else 1)


@pytest.mark.gpu
@needs_cuda
def test_graph_backend_matches_eager_on_the_same_gpu():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.GELU(), torch.nn.Linear(5, 3))
    spec = (TensorSpec("x", (None, 6), np.float32),)
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    with TorchBackend(net, spec, ("y",), device="cuda") as eager, \
            CudaGraphBackend(net, spec, ("y",), device="cuda") as graph:
        want = eager.infer({"x": x})["y"]
        assert np.abs(graph.infer({"x": x})["y"] - want).max() <= 1e-6
        assert np.abs(graph.infer({"x": x[:2]})["y"] - want[:2]).max() <= 1e-6
        assert [k[0][1][0] for k in graph.runner.captures] == list(BATCH_BUCKETS)
