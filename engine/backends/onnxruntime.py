"""ONNX Runtime backend (CPU by default; any installed execution provider on request)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from engine.backends import Backend, BackendError, BackendUnavailable, TensorSpec

#: ONNX Runtime type strings → numpy dtypes (the ones our graphs use).
_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
              "tensor(double)": np.float64, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32, "tensor(bool)": np.bool_, "tensor(uint8)": np.uint8}


def available() -> tuple[bool, str]:
    """Whether onnxruntime imports here, and its version / providers (or why not)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return False, f"onnxruntime not importable ({exc})"
    providers = [p.replace("ExecutionProvider", "") for p in ort.get_available_providers()]
    return True, f"onnxruntime {ort.__version__} ({', '.join(providers)})"


def check_model_file(path: Path) -> Path:
    """Raise :class:`BackendError` (one line) unless ``path`` is an existing, non-empty file."""
    path = Path(path)
    if not path.is_file():
        raise BackendError(f"ONNX file {path} not found; export it with "
                           "`python -m engine.export` (or omit it to export on first use)")
    if path.stat().st_size == 0:
        raise BackendError(f"ONNX file {path} is empty; delete it and re-export with "
                           "`python -m engine.export`")
    return path


class OnnxRuntimeBackend(Backend):
    """Run an ONNX file with an ``onnxruntime.InferenceSession``.

    Args:
        path: the ``.onnx`` file (its external ``.onnx.data`` next to it).
        threads: intra-op threads (≥ 1); inter-op is 1 (our graphs are sequential).
        providers: execution providers, default ``["CPUExecutionProvider"]``.
        spin: let idle intra-op threads busy-wait for work. Off by default: on a
            2-core machine the pipeline's other threads need those cycles, and
            spinning threads that lose their core make p99 far worse.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int = 2,
                 providers: Sequence[str] | None = None, spin: bool = False) -> None:
        super().__init__()
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an int >= 1, got {threads!r}")
        self.path = Path(path)
        self.threads = threads
        self.providers = list(providers or ["CPUExecutionProvider"])
        self.spin = spin
        self.session = None

    def _activate(self) -> None:
        ok, why = available()
        if not ok:
            raise BackendUnavailable(f"onnxruntime backend: {why}; install it with "
                                     "`pip install onnxruntime==1.32.0` or use --engine torch")
        import onnxruntime as ort
        check_model_file(self.path)
        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendUnavailable(f"onnxruntime backend: providers {missing} not installed "
                                     f"(have {ort.get_available_providers()})")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spin else "0")
        opts.log_severity_level = 3  # errors only: no per-node warnings on the console
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendError(f"onnxruntime cannot load {self.path}: {first[:300]}; the file "
                               "is truncated or not an ONNX model — delete it and re-export "
                               "with `python -m engine.export`") from None
        self.inputs = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self.session.get_outputs())
        self._output_names = [o.name for o in self.outputs]

    def _deactivate(self) -> None:
        self.session = None

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self._output_names, dict(feed))
        return dict(zip(self._output_names, values))


def _spec(arg) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise BackendError(f"onnxruntime backend: tensor {arg.name!r} has unsupported type "
                           f"{arg.type}")
    shape = tuple(d if isinstance(d, int) and d > 0 else None for d in arg.shape)
    return TensorSpec(arg.name, shape, dtype)
