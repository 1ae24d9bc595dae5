"""One interface for every inference backend: ``tensorrt``, ``cuda``, ``onnxruntime``, ``torch``.

A backend is a context manager (Polygraphy's runner pattern)::

    with OnnxRuntimeBackend("detector.onnx", threads=2) as det:
        out = det.infer({"features": window})  # dict[str, np.ndarray]
        det.last_inference_time                # seconds, the call just made

``infer`` checks the feed against the backend's input metadata (names, shapes,
dtypes) before it touches the runtime, so a wrong feed is a one-line
:class:`BackendError`, never a stack trace from deep inside a runtime. Heavy
libraries (onnxruntime, tensorrt, pycuda) are imported inside the backend
that needs them: every module in this package imports on a machine without
CUDA.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Mapping

import numpy as np

#: Backend names, in the order ``--engine auto`` prefers them.
BACKEND_NAMES: tuple[str, ...] = ("tensorrt", "cuda", "onnxruntime", "torch")


class BackendError(ValueError):
    """A user-facing backend problem (bad feed, missing/corrupt model file): one line."""


class BackendUnavailable(BackendError):
    """The requested backend's library (or GPU) is not present on this machine."""


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one graph input or output.

    Attributes:
        name: tensor name in the graph (the feed / output dict key).
        shape: one entry per dimension: an int for a fixed size, ``None`` for a
            dynamic one (any size ≥ 1 accepted).
        dtype: numpy dtype of the tensor.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(None if d is None or (isinstance(d, int) and d < 0)
                                                else d for d in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype))

    def matches(self, shape: tuple[int, ...]) -> bool:
        """Whether a concrete ``shape`` fits this spec (same rank, fixed dims equal)."""
        return len(shape) == len(self.shape) and all(
            want is None or want == got for want, got in zip(self.shape, shape))

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype.name}"


class Backend:
    """Base class: metadata checks, per-call timing, context management.

    Subclasses set :attr:`name`, fill :attr:`inputs` / :attr:`outputs` in
    :meth:`_activate` (or ``__init__``) and implement :meth:`_infer`.

    Attributes:
        inputs: input specs, graph order.
        outputs: output specs, graph order (dims may be ``None`` when dynamic).
        timings: seconds per :meth:`infer` call, the last ``keep_timings`` calls.
    """

    name: str = "base"

    def __init__(self, keep_timings: int = 10_000) -> None:
        if keep_timings <= 0:
            raise ValueError(f"keep_timings must be > 0, got {keep_timings!r}")
        self.inputs: tuple[TensorSpec, ...] = ()
        self.outputs: tuple[TensorSpec, ...] = ()
        self.timings: deque[float] = deque(maxlen=keep_timings)
        self.is_active = False

    # --- context management -------------------------------------------------------------
    def activate(self) -> "Backend":
        """Load the model / build the engine; idempotent. Returns self."""
        if not self.is_active:
            self._activate()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        """Free runtime resources; idempotent."""
        if self.is_active:
            self.is_active = False
            self._deactivate()

    def __enter__(self) -> "Backend":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    # --- inference ----------------------------------------------------------------------
    def infer(self, feed: Mapping[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        """Run one inference.

        Args:
            feed: input name → array; every input of :attr:`inputs`, nothing else.
            check: verify names, shapes and dtypes first (cheap; leave on).

        Returns:
            output name → numpy array (owned by the caller).

        Raises:
            BackendError: the backend is not active, or the feed does not fit.
        """
        if not self.is_active:
            raise BackendError(f"{self.name} backend: infer() before activate(); use it as "
                               "`with backend:` or call activate() first")
        if check:
            self.check_feed(feed)
        start = time.perf_counter()
        out = self._infer(feed)
        self.timings.append(time.perf_counter() - start)
        return out

    @property
    def last_inference_time(self) -> float | None:
        """Seconds taken by the latest :meth:`infer` call (None before the first)."""
        return self.timings[-1] if self.timings else None

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`BackendError` (one line) unless ``feed`` fits :attr:`inputs`."""
        want = {spec.name for spec in self.inputs}
        missing, extra = sorted(want - set(feed)), sorted(set(feed) - want)
        if missing or extra:
            raise BackendError(f"{self.name} backend: feed has inputs {sorted(feed)}, expected "
                               f"{[s.describe() for s in self.inputs]} (missing {missing}, "
                               f"unexpected {extra})")
        for spec in self.inputs:
            value = feed[spec.name]
            if not isinstance(value, np.ndarray):
                raise BackendError(f"{self.name} backend: input {spec.name!r} must be a numpy "
                                   f"array, got {type(value).__name__}")
            if value.dtype != spec.dtype:
                raise BackendError(f"{self.name} backend: input {spec.name!r} has dtype "
                                   f"{value.dtype}, expected {spec.describe()}; cast it with "
                                   f".astype(np.{spec.dtype.name})")
            if not spec.matches(value.shape):
                raise BackendError(f"{self.name} backend: input {spec.name!r} has shape "
                                   f"{tuple(value.shape)}, expected {spec.describe()}")

    # --- to implement -------------------------------------------------------------------
    def _activate(self) -> None:
        """Load the model; fill inputs/outputs."""

    def _deactivate(self) -> None:
        """Release resources."""

    def _infer(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def __repr__(self) -> str:
        ins = ", ".join(s.describe() for s in self.inputs)
        return f"{type(self).__name__}({ins}; active={self.is_active})"


def percentiles_ms(timings: "deque[float] | list[float]", qs: tuple[float, ...] = (50, 99)
                   ) -> dict[str, float]:
    """{"p50": ms, "p99": ms, "n": count} of recorded per-call seconds."""
    if not timings:
        return {**{f"p{int(q)}": float("nan") for q in qs}, "n": 0}
    ms = np.asarray(timings, dtype=np.float64) * 1e3
    return {**{f"p{int(q)}": round(float(np.percentile(ms, q)), 4) for q in qs}, "n": len(ms)}


__all__ = ["BACKEND_NAMES", "Backend", "BackendError", "BackendUnavailable", "TensorSpec",
           "percentiles_ms"]
