"""CUDA backend: the torch modules on an NVIDIA GPU, each call replayed as a CUDA graph.

At batch 1 the model is launch-bound on a GPU: eager torch CUDA spends its time
launching a few hundred small kernels (detector 3.5 ms per hop on an H200, slower
than ONNX Runtime on the CPU), while a CUDA graph of the same call is one launch
(the detector alone, as ``TorchBackend(cuda_graph=True)``: 0.92 ms per hop). This
backend is what ``--engine auto`` takes on a GPU without TensorRT.

:class:`GraphRunner` holds static input buffers per input shape and, on CUDA, one
graph captured over them (warm-up on a side stream, then ``torch.cuda.graph``);
a call copies the feed in, replays, and copies the outputs out. A batched input
(dynamic leading dim: the encoder's faces per frame) is padded up to the next of
:data:`BATCH_BUCKETS` — the extra rows repeat the last real one and are dropped
from the outputs — so a handful of graphs covers every batch; a batch past the
largest bucket runs in chunks of it. Every bucket (or the one static shape) is
captured on activation; any other new shape on first use. FP32 throughout. With
``graphs=False`` (and on the CPU, where the tests run it) the same buffers and
padding are used and the module runs eagerly on them, so every step but capture /
replay is checked against the torch backend without a GPU.

``torch.cuda`` is only touched when a graph is captured or replayed: this module
imports anywhere.
"""
from __future__ import annotations

import threading
from typing import Callable, Mapping, Sequence

import numpy as np

from engine.backends import BackendError, TensorSpec
from engine.backends.torch import TorchBackend

#: Batch sizes a graph is captured for (the encoder's faces per frame): n rows run in the
#: smallest bucket ≥ n; more than the largest run in chunks of it.
BATCH_BUCKETS: tuple[int, ...] = (1, 2, 4, 8)
#: Eager calls on a side stream before each capture (allocator, cuDNN algorithm choice).
WARMUP_CALLS = 3
#: Most input shapes one runner keeps buffers (and a graph) for; later shapes run eagerly.
MAX_GRAPHS = 16
#: Held around every runner call (copy in, replay or capture, copy out): the buffers are
#: shared state, one engine may serve several sessions' threads, and a capture must not
#: overlap another runner's work on the GPU.
_LOCK = threading.Lock()


def available() -> tuple[bool, str]:
    """Whether torch sees a CUDA GPU here (what this backend needs), and why not."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a hard dependency
        return False, f"torch not importable ({exc})"
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA GPU"
    return True, f"torch {torch.__version__} CUDA graphs on {torch.cuda.get_device_name(0)}"


def bucket(n: int, buckets: Sequence[int] = BATCH_BUCKETS) -> int:
    """The padded batch size ``n`` rows run at: the smallest bucket ≥ n (n ≤ max bucket)."""
    if not 1 <= n <= buckets[-1]:
        raise ValueError(f"batch size must be in 1..{buckets[-1]}, got {n!r}")
    return next(b for b in buckets if b >= n)


def check_buckets(buckets: Sequence[int]) -> tuple[int, ...]:
    """``buckets`` as a tuple; ValueError unless a non-empty, increasing run of ints ≥ 1."""
    out = tuple(buckets)
    if not out or any(not isinstance(b, int) or b < 1 for b in out) or list(out) != sorted(
            set(out)):
        raise ValueError(f"buckets must be increasing ints >= 1, got {buckets!r}")
    return out


class _Slot:
    """Static buffers of one input shape, and its graph and graph outputs once captured."""

    def __init__(self, inputs: dict) -> None:
        self.inputs = inputs  # name -> tensor on the device, the padded shape
        self.graph = None  # torch.cuda.CUDAGraph after capture
        self.outputs: dict | None = None  # the graph's static outputs


class GraphRunner:
    """Run ``call`` over static, bucketed input buffers; on CUDA as CUDA graphs.

    Args:
        call: the module call: input name → tensor in, output name → tensor out
            (:meth:`TorchBackend._run`).
        inputs: input specs; either every input has a dynamic leading dim (a batch:
            padded to ``buckets``) or none has.
        device: where the buffers live ("cpu", "cuda", "cuda:1").
        graphs: capture and replay CUDA graphs (a CUDA ``device``: the backend checks;
            the tests fake ``torch.cuda`` on the CPU); False runs ``call`` eagerly on the
            same buffers.
        buckets: padded batch sizes (batched inputs only).

    Attributes:
        captures: shape keys graphs were captured for, in capture order.
    """

    def __init__(self, call: Callable[[dict], dict], inputs: Sequence[TensorSpec],
                 device: str, graphs: bool = True, buckets: Sequence[int] = BATCH_BUCKETS
                 ) -> None:
        dynamic = [s.shape[:1] == (None,) for s in inputs]
        if any(dynamic) and not all(dynamic):
            raise ValueError("inputs must all have a dynamic leading (batch) dim or none, got "
                             f"{[s.describe() for s in inputs]}")
        self.call, self.inputs, self.device, self.graphs = call, tuple(inputs), device, graphs
        self.batched = bool(inputs) and all(dynamic)
        self.buckets = check_buckets(buckets)
        self.captures: list[tuple] = []
        self._slots: dict[tuple, _Slot] = {}

    def prepare(self) -> None:
        """Capture now every shape known now — each bucket of a batched input, or the one
        static shape — so that no capture (tens of ms) lands in the middle of a live stream.
        Inputs with another dynamic dim are captured on first use instead."""
        rest = [s.shape[1:] if self.batched else s.shape for s in self.inputs]
        if not self.graphs or any(None in r for r in rest):
            return
        for b in self.buckets if self.batched else (None,):
            lead = () if b is None else (b,)
            self._run({s.name: np.zeros(lead + r, s.dtype) for s, r in zip(self.inputs, rest)},
                      b)

    def run(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs of ``call`` on ``feed`` (numpy in, numpy out, owned by the caller)."""
        if not self.batched:
            return self._run(feed, None)
        sizes = {s.name: feed[s.name].shape[0] for s in self.inputs}
        if len(set(sizes.values())) != 1:
            raise BackendError(f"cuda backend: batched inputs disagree on the batch size: "
                               f"{sizes}; give every input the same number of rows")
        n, top = next(iter(sizes.values())), self.buckets[-1]
        if n <= top:
            return self._run(feed, n)
        parts = [self._run({k: v[i:i + top] for k, v in feed.items()}, min(top, n - i))
                 for i in range(0, n, top)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _run(self, feed: Mapping[str, np.ndarray], n: int | None) -> dict[str, np.ndarray]:
        """One call: ``n`` real rows padded to their bucket (None: not batched)."""
        import torch
        padded = bucket(n, self.buckets) if n else None
        key = tuple((s.name, feed[s.name].shape if padded is None
                     else (padded,) + feed[s.name].shape[1:]) for s in self.inputs)
        with _LOCK, torch.inference_mode():
            slot = self._slots.get(key)
            if slot is None and n != 0 and len(self._slots) < MAX_GRAPHS:
                slot = self._slots[key] = _Slot({s.name: torch.empty(
                    shape, dtype=_torch_dtype(s.dtype), device=self.device)
                    for s, (_, shape) in zip(self.inputs, key)})
            if slot is None:  # an empty batch, or past MAX_GRAPHS shapes: eager, fresh tensors
                out = self.call({s.name: torch.from_numpy(np.ascontiguousarray(feed[s.name]))
                                 .to(self.device) for s in self.inputs})
            else:
                self._copy_in(slot, feed, n, padded)
                out = self._replay(slot, key) if self.graphs else self.call(slot.inputs)
                if padded is not None:
                    self._check_batch(out, padded)
            return {k: (v if padded is None else v[:n]).detach().to("cpu", copy=True).numpy()
                    for k, v in out.items()}  # a copy: graph outputs are static buffers

    @staticmethod
    def _check_batch(out: Mapping, padded: int) -> None:
        bad = [k for k, v in out.items() if v.shape[:1] != (padded,)]
        if bad:
            raise BackendError(f"cuda backend: outputs {bad} of a batched module do not have "
                               "the batch as their leading dim, so padded rows cannot be "
                               "dropped; give the inputs a fixed batch size")

    def _copy_in(self, slot: _Slot, feed: Mapping[str, np.ndarray], n: int | None,
                 padded: int | None) -> None:
        import torch
        for s in self.inputs:
            buf, value = slot.inputs[s.name], torch.from_numpy(np.ascontiguousarray(feed[s.name]))
            if padded is None:
                buf.copy_(value)
                continue
            buf[:n].copy_(value)
            if padded > n:  # pad rows repeat the last real row: valid input, dropped after
                buf[n:].copy_(buf[n - 1:n].expand_as(buf[n:]))

    def _replay(self, slot: _Slot, key: tuple) -> dict:
        import torch
        with torch.cuda.device(self.device):
            if slot.graph is None:
                self._capture(slot)
                self.captures.append(key)
            slot.graph.replay()
        return slot.outputs

    def _capture(self, slot: _Slot) -> None:
        """Warm up on a side stream (the buffers hold the first feed), then capture."""
        import torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_CALLS):
                self.call(slot.inputs)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:  # thread_local: other threads' CUDA work (outside this module) may go on meanwhile
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                outputs = self.call(slot.inputs)
        except RuntimeError as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise BackendError(f"cuda backend: CUDA graph capture failed ({first}); use "
                               "--engine torch, or Engine.load(..., cuda_graphs=False)") from exc
        slot.graph, slot.outputs = graph, outputs


def _torch_dtype(dtype: np.dtype):
    import torch
    return torch.from_numpy(np.empty(0, dtype)).dtype


class CudaGraphBackend(TorchBackend):
    """A torch module behind :class:`Backend`, run by a :class:`GraphRunner`.

    Args:
        module: the network (moved to ``device`` and set to eval on activation).
        inputs: input specs, in the order of the module's positional arguments.
        output_names: the module's outputs, in return order (a dict's keys if None).
        device: "cuda[:i]"; "cpu" with ``graphs=False`` (the tests).
        graphs: capture CUDA graphs; False runs eagerly with the same bucketing.
        buckets: padded batch sizes of batched inputs.
    """

    name = "cuda"

    def __init__(self, module, inputs: Sequence[TensorSpec],
                 output_names: Sequence[str] | None = None, device: str = "cuda",
                 graphs: bool = True, buckets: Sequence[int] = BATCH_BUCKETS) -> None:
        super().__init__(module, inputs, output_names, device=device)
        if graphs and not device.startswith("cuda"):
            raise ValueError(f"graphs=True needs a CUDA device, got device={device!r}; pass "
                             "graphs=False to run eagerly")
        self.graphs, self.buckets = graphs, check_buckets(buckets)
        self.runner: GraphRunner | None = None

    def _activate(self) -> None:
        super()._activate()
        self.runner = GraphRunner(self._run, self.inputs, self.device, self.graphs, self.buckets)
        self.runner.prepare()  # the graphs of every bucket, before the stream starts

    def _deactivate(self) -> None:
        self.runner = None  # drops the buffers and graphs
        super()._deactivate()

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.runner.run(feed)
        if self.outputs == ():
            self.outputs = tuple(TensorSpec(k, (None,) + v.shape[1:] if self.runner.batched
                                            else v.shape, v.dtype) for k, v in out.items())
        return out


__all__ = ["BATCH_BUCKETS", "CudaGraphBackend", "GraphRunner", "available", "bucket"]
