"""TensorRT backend: ONNX → serialized engine (cached on disk) → ``execute_async_v3``.

Written to NVIDIA's documented Python API for TensorRT 10 / 11 (name-based I/O
tensors: ``num_io_tensors``, ``get_tensor_name``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and Polygraphy's runner pattern.

Precision. TensorRT 11 removed the weak-typing builder flags (``BuilderFlag.FP16``
and friends): networks are strongly typed and precision comes from the graph.
So FP16 is decided at export time — :func:`engine.export.export_onnx` with
``fp16=True`` writes a graph with FP16 weights and activations, FP32 I/O and
LayerNorm / softmax kept in FP32 — and this backend builds whatever graph it
is given, strongly typed on TensorRT ≥ 10. Only on TensorRT < 10 (no strong
typing) does ``precision="fp16"`` set ``BuilderFlag.FP16`` on an FP32 graph.

Device memory: pycuda (the optional ``gpu`` extra) when it imports, else torch
CUDA tensors; either way pinned host buffers, one CUDA stream, async copies.

Imports of ``tensorrt``, ``pycuda`` and ``torch.cuda`` happen inside functions,
so this module imports on any machine.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from engine.backends import Backend, BackendError, BackendUnavailable, TensorSpec
from engine.backends.cache import EngineCache, EngineKey, Lookup, onnx_sha256
from engine.backends.onnxruntime import check_model_file

PRECISIONS = ("fp16", "fp32")
#: Default batch range of dynamic dims when no profile is given: (min, opt, max).
DEFAULT_DYNAMIC = (1, 1, 32)
INSTALL_HINT = ("install the `gpu` extra on an NVIDIA machine (`pip install -e .[gpu]`, needs "
                "NVIDIA's package index) or use --engine onnxruntime")


def available() -> tuple[bool, str]:
    """Whether TensorRT can run here (importable and a CUDA GPU visible), and why."""
    try:
        import tensorrt as trt
    except ModuleNotFoundError:
        return False, "tensorrt not installed"
    except Exception as exc:  # ImportError / OSError: installed but libnvinfer will not load
        return False, f"tensorrt not importable ({type(exc).__name__}: {str(exc)[:120]})"
    name = gpu_name()
    if name is None:
        return False, f"tensorrt {trt.__version__} imports but no CUDA GPU is visible"
    return True, f"tensorrt {trt.__version__} on {name}"


def gpu_name() -> str | None:
    """Name of CUDA device 0 (via torch, else pycuda), or None when there is none."""
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:
        pass
    try:
        import pycuda.driver as cuda
        cuda.init()
        return cuda.Device(0).name() if cuda.Device.count() else None
    except Exception:
        return None


def profile_text(profile: Mapping[str, tuple]) -> str:
    """Canonical text of an optimization profile (part of the cache key)."""
    return ";".join(f"{n}:{'/'.join('x'.join(map(str, s)) for s in shapes)}"
                    for n, shapes in sorted(profile.items()))


def load_or_build(cache: EngineCache, key: EngineKey, build: Callable[[], bytes],
                  deserialize: Callable[[bytes], object | None],
                  log: Callable[[str], None] = print) -> tuple[object, str]:
    """Deserialize the cached engine for ``key``, or build, store and deserialize one.

    Args:
        cache: where engines live.
        key: what this engine depends on.
        build: returns serialized engine bytes (slow: seconds to minutes).
        deserialize: bytes → engine, or None when TensorRT rejects them.
        log: where the one-line cache messages go.

    Returns:
        (engine, how) with how in {"cache", "built"}.
    """
    found: Lookup = cache.lookup(key)
    if found.message:
        log(found.message)
    if found.status == "hit":
        engine = deserialize(found.engine)
        if engine is not None:
            return engine, "cache"
        log(cache.invalidate(key, "TensorRT could not deserialize it"))
    start = time.perf_counter()
    data = build()
    engine = deserialize(data)
    if engine is None:
        raise BackendError(f"TensorRT built the {key.name} engine but cannot deserialize it; "
                           "check the TensorRT / driver installation")
    path = cache.store(key, data)
    log(f"TensorRT: built the {key.precision} {key.name} engine in "
        f"{time.perf_counter() - start:.1f} s, cached at {path}")
    return engine, "built"


class TensorRTBackend(Backend):
    """Build (or load from cache) and run a TensorRT engine for one ONNX graph.

    Args:
        onnx_path: the graph; for ``precision="fp16"`` on TensorRT ≥ 10 pass the
            FP16 export (``*.fp16.onnx``).
        cache_dir: engine + timing cache directory.
        precision: "fp16" or "fp32" (part of the cache key).
        profile: input name → (min, opt, max) shapes for dynamic inputs; dynamic
            dims without one get :data:`DEFAULT_DYNAMIC`.
        workspace_mb: builder workspace limit.
        log: where one-line status messages go.
    """

    name = "tensorrt"

    def __init__(self, onnx_path: str | Path, cache_dir: str | Path, precision: str = "fp16",
                 profile: Mapping[str, tuple] | None = None, workspace_mb: int = 1024,
                 log: Callable[[str], None] = print) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if workspace_mb <= 0:
            raise ValueError(f"workspace_mb must be > 0, got {workspace_mb!r}")
        self.onnx_path = Path(onnx_path)
        self.cache = EngineCache(cache_dir)
        self.precision = precision
        self.profile = dict(profile or {})
        self.workspace_mb = workspace_mb
        self.log = log
        self.loaded_from: str | None = None  # "cache" | "built"
        self.load_seconds: float | None = None
        self._engine = self._context = self._mem = None
        self._host: dict[str, np.ndarray] = {}
        self._dev: dict[str, object] = {}

    # --- activation ---------------------------------------------------------------------
    def _activate(self) -> None:
        ok, why = available()
        if not ok:
            raise BackendUnavailable(f"tensorrt backend: {why}; {INSTALL_HINT}")
        import tensorrt as trt
        check_model_file(self.onnx_path)
        start = time.perf_counter()
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        key = EngineKey(self.onnx_path.stem, onnx_sha256(self.onnx_path), trt.__version__,
                        gpu_name() or "?", self.precision, profile_text(self.profile))
        self._engine, self.loaded_from = load_or_build(
            self.cache, key, self._build, self._runtime.deserialize_cuda_engine, self.log)
        self._context = self._engine.create_execution_context()
        self._mem = _device_memory()
        self._describe_and_allocate()
        self.load_seconds = time.perf_counter() - start

    def _build(self) -> bytes:
        trt = self._trt
        major = int(trt.__version__.split(".")[0])
        builder = trt.Builder(self._logger)
        flags = 0
        if major == 10 and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # 11: always on
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse_from_file(str(self.onnx_path)):  # reads the external .onnx.data too
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT cannot parse {self.onnx_path}: {errors[:300]}; "
                               "re-export it with `python -m engine.export`")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_mb << 20)
        if self.precision == "fp16" and major < 10:  # weak typing exists only before 10
            config.set_flag(trt.BuilderFlag.FP16)
        timing_path = self.cache.timing_cache_path(trt.__version__, gpu_name() or "?")
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file()
                                            else b"")
        config.set_timing_cache(timing, ignore_mismatch=True)  # a foreign cache is just ignored
        dynamic = [network.get_input(i) for i in range(network.num_inputs)
                   if any(d < 0 for d in network.get_input(i).shape)]
        if dynamic:
            opt_profile = builder.create_optimization_profile()
            for tensor in dynamic:
                lo, opt, hi = self.profile.get(tensor.name) or _default_range(tensor.shape)
                opt_profile.set_shape(tensor.name, lo, opt, hi)
            config.add_optimization_profile(opt_profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT failed to build an engine from {self.onnx_path} "
                               "(see the TensorRT log above)")
        timing_path.parent.mkdir(parents=True, exist_ok=True)
        timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
        return bytes(serialized)

    def _describe_and_allocate(self) -> None:
        trt, engine, ctx = self._trt, self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        ins = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if n not in ins]
        self.inputs = tuple(TensorSpec(n, tuple(engine.get_tensor_shape(n)),
                                       _np_dtype(trt, engine.get_tensor_dtype(n))) for n in ins)
        for n in ins:  # size every buffer for the largest shape the profile allows
            shape = tuple(engine.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                shape = tuple(engine.get_tensor_profile_shape(n, 0)[2])
            ctx.set_input_shape(n, shape)
        self.outputs = tuple(TensorSpec(n, tuple(engine.get_tensor_shape(n)),
                                        _np_dtype(trt, engine.get_tensor_dtype(n))) for n in outs)
        for n in ins + outs:
            spec = next(s for s in self.inputs + self.outputs if s.name == n)
            volume = int(np.prod(tuple(ctx.get_tensor_shape(n)))) or 1
            self._host[n], self._dev[n], ptr = self._mem.alloc(volume, spec.dtype)
            ctx.set_tensor_address(n, ptr)

    def _deactivate(self) -> None:
        self._host, self._dev = {}, {}
        self._context = self._engine = None
        if self._mem is not None:
            self._mem.close()
            self._mem = None

    # --- inference ----------------------------------------------------------------------
    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ctx, mem = self._context, self._mem
        with mem.current():
            for spec in self.inputs:
                value = np.ascontiguousarray(feed[spec.name])
                if None in spec.shape:
                    ctx.set_input_shape(spec.name, value.shape)
                host = self._host[spec.name]
                np.copyto(host[: value.size], value.reshape(-1))
                mem.h2d(self._dev[spec.name], host, value.size)
            if not ctx.execute_async_v3(mem.stream_handle):
                raise BackendError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            shapes = {s.name: tuple(ctx.get_tensor_shape(s.name)) for s in self.outputs}
            sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
            for name, size in sizes.items():
                mem.d2h(self._host[name], self._dev[name], size)
            mem.synchronize()
        return {n: self._host[n][: sizes[n]].reshape(shapes[n]).copy() for n in shapes}


def _default_range(shape) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(d if d >= 0 else DEFAULT_DYNAMIC[i] for d in shape) for i in range(3))


def _np_dtype(trt, dtype) -> np.dtype:
    return np.dtype(trt.nptype(dtype))


# --- device memory: pycuda when present, torch CUDA otherwise ------------------------------
def _device_memory():
    try:
        import pycuda.driver  # noqa: F401
        return _PyCudaMemory()
    except ImportError:
        pass
    try:
        import torch
        if torch.cuda.is_available():
            return _TorchCudaMemory()
    except ImportError:
        pass
    raise BackendUnavailable(f"tensorrt backend: neither pycuda nor torch CUDA can allocate "
                             f"device memory; {INSTALL_HINT}")


class _Current:
    def __init__(self, enter=None, exit_=None) -> None:
        self._enter, self._exit = enter, exit_

    def __enter__(self):
        if self._enter:
            self._enter()

    def __exit__(self, *exc):
        if self._exit:
            self._exit()


class _PyCudaMemory:
    """Pinned host + device buffers and one stream through pycuda (primary context)."""

    def __init__(self) -> None:
        import pycuda.driver as cuda
        cuda.init()
        self.cuda = cuda
        self.ctx = cuda.Device(0).retain_primary_context()  # the context torch / TRT use
        self.ctx.push()
        try:
            self.stream = cuda.Stream()
        finally:
            self.ctx.pop()
        self.stream_handle = self.stream.handle
        self._allocs: list = []

    def current(self) -> _Current:  # the caller's thread may differ from activate()'s
        return _Current(self.ctx.push, self.cuda.Context.pop)

    def alloc(self, volume: int, dtype: np.dtype):
        with self.current():
            host = self.cuda.pagelocked_empty(volume, dtype)
            dev = self.cuda.mem_alloc(host.nbytes)
        self._allocs.append(dev)
        return host, dev, int(dev)

    def h2d(self, dev, host: np.ndarray, n: int) -> None:
        self.cuda.memcpy_htod_async(dev, host[:n], self.stream)  # a slice of pinned stays pinned

    def d2h(self, host: np.ndarray, dev, n: int) -> None:
        self.cuda.memcpy_dtoh_async(host[:n], dev, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        with self.current():  # free while the context is current (not at some later GC)
            for dev in self._allocs:
                dev.free()
            self.stream = None
        self._allocs.clear()


class _TorchCudaMemory:
    """The same through torch: pinned CPU tensors, CUDA tensors, a torch CUDA stream."""

    def __init__(self) -> None:
        import torch
        self.torch = torch
        self.stream = torch.cuda.Stream()
        self.stream_handle = self.stream.cuda_stream
        self._pinned: dict[int, object] = {}  # numpy buffer address -> its pinned tensor

    def current(self) -> _Current:
        return _Current()

    def alloc(self, volume: int, dtype: np.dtype):
        torch = self.torch
        tdtype = torch.from_numpy(np.zeros(1, dtype)).dtype
        host_t = torch.empty(volume, dtype=tdtype, pin_memory=True)
        dev = torch.empty(volume, dtype=tdtype, device="cuda")
        host = host_t.numpy()  # shares the pinned memory
        self._pinned[host.ctypes.data] = host_t
        return host, dev, dev.data_ptr()

    def h2d(self, dev, host: np.ndarray, n: int) -> None:
        with self.torch.cuda.stream(self.stream):
            dev[:n].copy_(self._pinned[host.ctypes.data][:n], non_blocking=True)

    def d2h(self, host: np.ndarray, dev, n: int) -> None:
        with self.torch.cuda.stream(self.stream):
            self._pinned[host.ctypes.data][:n].copy_(dev[:n], non_blocking=True)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self._pinned.clear()


__all__ = ["TensorRTBackend", "available", "gpu_name", "load_or_build", "profile_text",
           "PRECISIONS"]
