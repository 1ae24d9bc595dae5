"""Balanced window sampling, window slicing and targets."""
from __future__ import annotations

import numpy as np
import pytest

from engine.config import ModelConfig
from tests.training.planted import planted_video
from training.sampling import (Window, WindowSampler, window_flow, window_intervals,
                               window_targets)

CFG = ModelConfig(window=64, hop=8, segment=2, attn_window=4, levels=3, channels=16, heads=2,
                  feat_dim=16, enc_channels=(4, 8), enc_grid=2)


def _has_offset(item, w: Window) -> bool:
    return any(w.start <= off < w.start + w.length for _, off, _, _ in item.intervals)


@pytest.mark.parametrize("pos_frac", [0.0, 0.5, 1.0])
def test_pos_frac_controls_event_windows(pos_frac):
    items = [planted_video("a_1", n=2000, seed=1, events=((500, 510, "micro", "others"),))]
    s = WindowSampler(items, 64, pos_frac, seed=3)
    hits = np.mean([_has_offset(items[w.video], w) for w in s.batch(600)])
    background = 64 / 2000  # chance a uniform window holds the one offset
    assert abs(hits - (pos_frac + (1 - pos_frac) * background)) < 0.07


def test_micro_frac_oversamples_micro():
    evs = ((100, 108, "micro", "positive"),) + tuple(
        (200 + 100 * i, 240 + 100 * i, "macro", "negative") for i in range(9))
    items = [planted_video("a_1", n=1400, events=evs)]
    s = WindowSampler(items, 32, 1.0, seed=0, micro_frac=0.5)
    micro = np.mean([any(on <= w.start + 31 and off >= w.start and k == "micro"
                         for on, off, k, _ in evs) for w in s.batch(400)])
    assert 0.4 < micro < 0.6  # natural share would be 0.1


def test_window_outside_video_is_no_face():
    item = planted_video("a_1", n=100, events=((50, 60, "micro", "others"),), invalid=None)
    flow, valid = window_flow(item, Window(0, -10, 32))
    assert flow.shape == (32, 3, 16, 16) and valid.shape == (32,)
    assert not valid[:10].any() and valid[10:].all() and not flow[:10].any()
    np.testing.assert_array_equal(flow[10:], item.flow[:22].astype(np.float32))
    flow, valid = window_flow(item, Window(0, 90, 32))
    assert valid[:10].all() and not valid[10:].any()


def test_window_intervals_in_window_positions():
    item = planted_video("a_1", n=480)
    got = window_intervals(item, Window(0, 240, 64), CFG)
    assert [(g.onset, g.offset) for g in got] == [(10, 50)]
    assert CFG.kinds[got[0].kind] == "macro" and CFG.emotions[got[0].emotion] == "negative"
    tg = window_targets([item], [Window(0, 240, 64), Window(0, 0, 64)], CFG)
    assert tg.pos[0].any() and not tg.pos[1].any()
    assert tg.act[0, 10:51, 1].all() and not tg.act[0, :10].any()


@pytest.mark.parametrize("kwargs,word", [({"length": 0}, "length"), ({"pos_frac": 2}, "pos_frac"),
                                         ({"micro_frac": -1}, "micro_frac")])
def test_bad_arguments(kwargs, word):
    args = {"items": [planted_video("a_1")], "length": 32, **kwargs}
    with pytest.raises(ValueError, match=word):
        WindowSampler(**args)
    with pytest.raises(ValueError, match="items"):
        WindowSampler([], 32)


def test_seeded_and_resumable():
    items = [planted_video("a_1", n=900)]
    a, b = WindowSampler(items, 32, 0.5, seed=5), WindowSampler(items, 32, 0.5, seed=5)
    a.batch(7)
    b.set_state(a.state())
    assert a.batch(20) == b.batch(20)
