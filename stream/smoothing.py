"""One-euro filter (Casiez, Roussel & Vogel, CHI 2012) for landmark arrays.

A low-pass filter whose cutoff rises with speed: a still face gets heavy
smoothing (no jitter in the aligned crop), a moving face gets little (no lag).
Time-based, so dropped frames or a changing frame rate do not change its
behaviour.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of an exponential filter with ``cutoff`` Hz sampled every ``dt`` s."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Vectorised one-euro filter over arrays of points.

    Each point (row of an N×D array) gets its own adaptive cutoff from the
    norm of its filtered velocity, so a moving mouth corner is followed
    promptly while a still eye corner stays put.

    Args:
        min_cutoff: cutoff for a still signal, Hz (lower: smoother, more lag).
        beta: speed gain, 1/(units of x): cutoff = min_cutoff + beta·|dx/dt|.
        d_cutoff: cutoff of the velocity estimate, Hz.
        default_dt: time step used when a timestamp does not advance, seconds.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05,
                 d_cutoff: float = 1.0, default_dt: float = 1 / 30) -> None:
        if not min_cutoff > 0:
            raise ValueError(f"min_cutoff must be > 0, got {min_cutoff!r}")
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta!r}")
        if not d_cutoff > 0:
            raise ValueError(f"d_cutoff must be > 0, got {d_cutoff!r}")
        if not default_dt > 0:
            raise ValueError(f"default_dt must be > 0, got {default_dt!r}")
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.default_dt = default_dt
        self._x: np.ndarray | None = None  # last filtered value, N×D
        self._dx: np.ndarray | None = None  # last filtered velocity, N×D
        self._t: float | None = None

    def reset(self) -> None:
        """Forget the state; the next sample passes through unchanged."""
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Filter one sample.

        Args:
            x: N×D (or length-N) float array, the raw sample.
            t: its timestamp, seconds.

        Returns:
            The filtered sample, same shape, float64.
        """
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t if self._t is not None and t > self._t else self.default_dt
        self._t = t if self._t is None or t > self._t else self._t + dt
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        speed = np.abs(self._dx) if self._dx.ndim == 1 else np.linalg.norm(
            self._dx, axis=-1, keepdims=True)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()
