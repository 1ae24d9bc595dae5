"""Per-stage latency samples and their percentiles (bounded memory)."""
from __future__ import annotations

import time
from collections import deque
from contextlib import contextmanager
from typing import Iterator

import numpy as np

#: Samples kept per stage; older ones fall off so memory stays flat on endless streams.
MAX_SAMPLES = 100_000


class LatencyStats:
    """Collects milliseconds per named stage; ``summary()`` gives p50/p95/p99/mean/n."""

    def __init__(self, max_samples: int = MAX_SAMPLES) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.max_samples = max_samples
        self._samples: dict[str, deque[float]] = {}

    def add(self, stage: str, ms: float) -> None:
        self._samples.setdefault(stage, deque(maxlen=self.max_samples)).append(ms)

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, (time.perf_counter() - start) * 1e3)

    def samples(self) -> dict[str, np.ndarray]:
        """The kept samples of each stage, milliseconds."""
        return {stage: np.fromiter(s, float, len(s)) for stage, s in self._samples.items()}

    def summary(self) -> dict[str, dict[str, float]]:
        """``{stage: {"p50", "p95", "p99", "mean", "n"}}`` in milliseconds."""
        out = {}
        for stage, a in self.samples().items():
            p50, p95, p99 = np.percentile(a, [50, 95, 99])
            out[stage] = {"p50": round(float(p50), 4), "p95": round(float(p95), 4),
                          "p99": round(float(p99), 4), "mean": round(float(a.mean()), 4),
                          "n": int(a.size)}
        return out
