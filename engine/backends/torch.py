"""PyTorch backend: runs an ``nn.Module`` eagerly (CPU or CUDA), optionally as a CUDA graph.

The reference every other backend is checked against (parity tests). The
module is called with the inputs positionally, in ``inputs`` order, and may
return a tensor, a tuple / list of tensors or a dict of tensors;
``output_names`` names them in that order (a dict's own keys when omitted).
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from engine.backends import Backend, BackendError, BackendUnavailable, TensorSpec


def available(device: str = "cpu") -> tuple[bool, str]:
    """Whether torch can run here on ``device`` ("cpu" or "cuda"), and why not."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a hard dependency
        return False, f"torch not importable ({exc})"
    if device.startswith("cuda") and not torch.cuda.is_available():
        return False, f"torch {torch.__version__} has no CUDA device"
    return True, f"torch {torch.__version__} on {device}"


class TorchBackend(Backend):
    """Run a torch module behind the :class:`Backend` interface.

    Args:
        module: the network; called as ``module(*inputs)`` (spec order) in eval
            mode under ``torch.inference_mode``.
        inputs: input specs, in the order of the module's positional arguments.
        output_names: names for the module's outputs, in return order; for a
            dict return, None keeps the dict's keys.
        device: "cpu" or "cuda[:i]".
        cuda_graph: capture one CUDA graph of the whole call on first use and
            replay it (static shapes only; CUDA only). Cuts launch overhead.
    """

    name = "torch"

    def __init__(self, module, inputs: Sequence[TensorSpec],
                 output_names: Sequence[str] | None = None, device: str = "cpu",
                 cuda_graph: bool = False) -> None:
        super().__init__()
        if not inputs:
            raise ValueError("inputs must name at least one input")
        if cuda_graph and not device.startswith("cuda"):
            raise ValueError(f"cuda_graph=True needs a CUDA device, got device={device!r}")
        if cuda_graph and any(None in s.shape for s in inputs):
            raise ValueError("cuda_graph=True needs static input shapes, got "
                             f"{[s.describe() for s in inputs]}")
        self.module = module
        self.inputs = tuple(inputs)
        self.output_names = tuple(output_names) if output_names is not None else None
        self.device = device
        self.cuda_graph = cuda_graph
        self._graph = None
        self._static_in: dict = {}
        self._static_out: dict = {}

    def _activate(self) -> None:
        ok, why = available(self.device)
        if not ok:
            raise BackendUnavailable(f"torch backend: {why}; use --engine onnxruntime or a "
                                     "machine with a CUDA GPU")
        self.module = self.module.to(self.device).eval()

    def _deactivate(self) -> None:
        self._graph, self._static_in, self._static_out = None, {}, {}

    def _name_outputs(self, result) -> dict:
        import torch
        if isinstance(result, torch.Tensor):
            result = (result,)
        if isinstance(result, Mapping):
            names = self.output_names or tuple(result)
            missing = [n for n in names if n not in result]
            if missing:
                raise BackendError(f"torch backend: module returned {sorted(result)}, "
                                   f"missing outputs {missing}")
            return {n: result[n] for n in names}
        result = tuple(result)
        names = self.output_names or tuple(f"output_{i}" for i in range(len(result)))
        if len(names) != len(result):
            raise BackendError(f"torch backend: module returned {len(result)} outputs, "
                               f"output_names has {len(names)}: {list(names)}")
        return dict(zip(names, result))

    def _run(self, tensors: dict) -> dict:
        import torch
        with torch.inference_mode():
            return self._name_outputs(self.module(*(tensors[s.name] for s in self.inputs)))

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        if self.cuda_graph:
            return self._infer_graph(feed)
        tensors = {s.name: torch.from_numpy(np.ascontiguousarray(feed[s.name])).to(self.device)
                   for s in self.inputs}
        out = self._run(tensors)
        if self.outputs == ():
            self.outputs = tuple(TensorSpec(n, tuple(v.shape), _np_dtype(v))
                                 for n, v in out.items())
        return {n: v.detach().to("cpu").numpy() for n, v in out.items()}

    def _infer_graph(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        if self._graph is None:
            self._static_in = {s.name: torch.from_numpy(np.ascontiguousarray(feed[s.name]))
                               .to(self.device) for s in self.inputs}
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up outside the graph (allocator, cuDNN)
                for _ in range(3):
                    self._run(self._static_in)
            torch.cuda.current_stream().wait_stream(side)
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._static_out = self._run(self._static_in)
            self.outputs = tuple(TensorSpec(n, tuple(v.shape), _np_dtype(v))
                                 for n, v in self._static_out.items())
        for s in self.inputs:
            self._static_in[s.name].copy_(torch.from_numpy(np.ascontiguousarray(feed[s.name])),
                                          non_blocking=False)
        self._graph.replay()
        return {n: v.to("cpu").numpy().copy() for n, v in self._static_out.items()}


def _np_dtype(tensor) -> np.dtype:
    import torch
    return np.dtype(torch.empty((), dtype=tensor.dtype).numpy().dtype)
