"""The two-stage baseline: regional curves, segment merging, tuning on validation."""
from __future__ import annotations

import numpy as np
import pytest

from stream.align import region_slices
from tests.training.planted import planted_video
from stream import metrics
from training import baseline
from training.infer import ground_truth

EVENTS = ((300, 309, "micro", "positive"), (700, 760, "macro", "negative"),
          (1200, 1230, "macro", "negative"))


def test_region_curves_measure_each_region():
    n, s = 10, 32
    flow = np.zeros((n, 3, s, s), np.float16)
    rows, cols = region_slices("mouth", s)
    flow[4, 0, rows, cols] = 3.0
    flow[4, 1, rows, cols] = 4.0
    valid = np.ones(n, bool)
    valid[6] = False
    flow[6] = 9.0
    c = baseline.region_curves(flow, valid)
    mouth = baseline.BASE_REGIONS.index("mouth")
    assert c.shape == (n, 3)
    assert c[4, mouth] == pytest.approx(5.0) and c[4, :mouth].max() < 5.0
    assert not c[6].any() and not c[0].any()


def test_spot_curve_merges_close_segments_and_drops_short_ones():
    x = np.zeros(100)
    x[10:14] = 10  # 4 frames
    x[20:24] = 10  # 6 frames later: merged with the first
    x[60:61] = 10  # 1 frame: dropped
    p = baseline.BaselineParams(thresh=5, merge=8, min_len=3, shift=5)
    got = baseline.spot_curve(x, p)
    assert got == [(10, 18, 10.0)]  # offset moved back by `shift` (flow looks back Δ)


def test_tuned_baseline_finds_planted_bumps():
    items = [planted_video(f"v{i}_1", n=1500, seed=i, events=EVENTS, amp=2.0) for i in range(2)]
    grid = {**baseline.GRID, "thresh": [8.0, 15.0], "merge": [6], "min_len": [3],
            "detrend": [151], "regions": [baseline.BASE_REGIONS], "shift": [0, 5]}
    params, f1 = baseline.tune(items, "negative", grid)
    assert f1 >= 0.8
    pred = baseline.predict(items, params)
    res = metrics.megc_spotting(ground_truth(items), pred)
    assert res["overall"].f1 == pytest.approx(f1)
    micro = [p for p in pred if p.kind == "micro"]
    assert micro and all(p.offset - p.onset + 1 <= 15 for p in micro)
    assert {p.emotion for p in pred} == {"negative"}


def test_most_common_emotion():
    items = [planted_video("a_1", n=1500, events=EVENTS)]
    assert baseline.most_common_emotion(items) == "negative"
