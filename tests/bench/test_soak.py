"""bench/soak.py's pieces (the soak itself is ``make soak``, 2 × 10 minutes, not in the suite)."""
from __future__ import annotations

import numpy as np
import pytest

from bench.soak import growth, loop_source


def test_growth_is_measured_after_the_warm_up():
    flat = [(t, 500.0 + (80.0 if t < 60 else 3.0 * np.sin(t))) for t in range(0, 600, 10)]
    g = growth(flat, warmup_s=60, limit_mb=50)
    assert g["ok"] and g["max_growth_mb"] < 7 and abs(g["slope_mb_per_min"]) < 1
    leak = [(t, 500.0 + 0.2 * t) for t in range(0, 600, 10)]  # 12 MB / min
    g = growth(leak, warmup_s=60, limit_mb=50)
    assert not g["ok"] and g["max_growth_mb"] == pytest.approx(106, abs=1)
    assert g["slope_mb_per_min"] == pytest.approx(12, abs=0.1)
    assert not growth(leak[:6], warmup_s=60, limit_mb=50)["ok"]  # nothing after warm-up


def test_loop_source_plays_the_clip_again_with_running_indices_and_times():
    src = loop_source(seconds=30.0)  # the demo is 25 s: one loop and 5 s more
    with src:
        frames = []
        while (f := src.read()) is not None:
            frames.append((f.index, f.t_capture))
    idx, t = np.array(frames).T
    assert src.loops == 1 and len(frames) == 900
    assert (np.diff(idx) == 1).all() and (np.diff(t) > 0).all()
    assert t[-1] == pytest.approx(899 / 30, abs=1e-3)
