"""One-euro filter: no jitter when still, little lag when moving."""
from __future__ import annotations

import numpy as np
import pytest

from stream.smoothing import OneEuroFilter


def test_first_sample_passes_through_and_constant_stays():
    f = OneEuroFilter()
    x = np.array([[10.0, 20.0], [30.0, 40.0]])
    assert np.array_equal(f(x, 0.0), x)
    for i in range(1, 10):
        np.testing.assert_allclose(f(x, i / 30), x)


def test_still_noisy_signal_is_smoothed():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    raw = 100 + rng.normal(0, 0.5, (300, 5, 2))  # sub-pixel landmark jitter
    out = np.array([f(x, i / 30) for i, x in enumerate(raw)])
    # A 1 Hz exponential low-pass at 30 fps alone would give ~0.31×.
    assert out[50:].std() < raw[50:].std() / 2.5


def test_beta_cuts_lag_on_a_moving_point():
    t = np.arange(60) / 30
    ramp = (200.0 * t)[:, None, None] * np.ones((1, 1, 2))  # 200 px/s
    lags = {}
    for beta in (0.0, 0.05):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        out = np.array([f(x, ti) for x, ti in zip(ramp, t)])
        lags[beta] = float(np.abs(ramp[-1] - out[-1]).max())
    assert lags[0.05] < lags[0.0] / 3
    assert lags[0.05] < 5.0  # pixels behind at 200 px/s


def test_step_is_followed_faster_than_by_plain_low_pass():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    x0, x1 = np.zeros((1, 2)), np.full((1, 2), 30.0)
    f(x0, 0.0)
    out = [f(x1, i / 30) for i in range(1, 6)]
    assert out[-1][0, 0] > 25.0  # within 5 px of a 30 px jump after 5 frames


def test_reset_and_repeated_timestamps():
    f = OneEuroFilter(default_dt=1 / 30)
    f(np.zeros(3), 1.0)
    y = f(np.ones(3), 1.0)  # same timestamp: uses default_dt, no division by zero
    assert np.all(np.isfinite(y)) and np.all((y > 0) & (y < 1))
    f.reset()
    assert np.array_equal(f(np.full(3, 7.0), 2.0), np.full(3, 7.0))


@pytest.mark.parametrize("kw", [dict(min_cutoff=0), dict(beta=-1), dict(d_cutoff=0),
                                dict(default_dt=0)])
def test_bad_arguments(kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        OneEuroFilter(**kw)
