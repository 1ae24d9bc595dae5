"""Target assignment, the loss terms, and that the joint loss can overfit a tiny batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from engine.config import ModelConfig
from engine.decode import pyramid_points
from engine.model import FEDN, FEDNLoss, GTInterval, assign_targets
from engine.model.losses import diou_loss_1d, sigmoid_focal_loss
from engine.model.targets import assign_window

CFG = ModelConfig(window=256)  # window 256, levels 4, range_base 16, end_margin 6
PTS = pyramid_points(CFG.window, CFG.levels)



def _pos_points(t: dict) -> np.ndarray:
    return PTS[t["pos"]]


# ---------------------------------------------------------------- target assignment
def test_micro_interval_anchors_at_level0_offset_plus_margin():
    t = assign_window([GTInterval(10, 20, kind=0, emotion=1)], CFG)  # 11 frames
    pos = _pos_points(t)
    assert set(pos[:, 1]) == {0}
    assert list(pos[:, 0]) == list(range(20, 20 + CFG.end_margin + 1))
    rows = np.flatnonzero(t["pos"])
    assert np.array_equal(t["cls"][rows], np.tile([1.0, 0.0], (len(rows), 1)))
    assert (t["emo"][rows] == 1).all() and (t["emo"][~t["pos"]] == -1).all()
    assert np.array_equal(t["reg"][rows, 0], pos[:, 0] - 10)
    assert np.array_equal(t["reg"][rows, 1], pos[:, 0] - 20)
    assert t["cls"][~t["pos"]].sum() == 0


def test_long_interval_goes_to_coarsest_level_with_one_point_at_least():
    t = assign_window([(100, 199, "macro", "surprise")], CFG)  # 100 frames >= 64
    pos = _pos_points(t)
    assert set(pos[:, 1]) == {3}
    assert len(pos) == 1 and 199 <= pos[0, 0] <= 199 + 7 and (pos[0, 0] + 1) % 8 == 0
    assert t["cls"][t["pos"]][0].tolist() == [0.0, 1.0]
    assert t["emo"][t["pos"]][0] == CFG.emotions.index("surprise")


@pytest.mark.parametrize("duration, level", [(1, 0), (15, 0), (16, 1), (31, 1), (32, 2),
                                             (63, 2), (64, 3), (240, 3)])
def test_level_by_duration(duration, level):
    t = assign_window([(250 - duration + 1 - 7, 250 - 7, 1, 0)], CFG)
    assert set(_pos_points(t)[:, 1]) == {level}


def test_interval_ending_after_the_window_has_no_anchor_but_is_active():
    t = assign_window([(240, 300, 1, 2)], CFG)
    assert not t["pos"].any()
    assert t["act"][240:, 1].all() and not t["act"][:240].any()
    assert (t["act_emo"][240:] == 2).all()
    assert np.array_equal(t["act_since"][240:], np.arange(16))


def test_interval_started_before_the_window_regresses_past_the_start():
    t = assign_window([(-5, 8, 0, 3)], CFG)
    rows = np.flatnonzero(t["pos"])
    assert len(rows) and (t["reg"][rows, 0] == PTS[rows, 0] + 5).all()
    assert t["act"][:9, 0].all() and t["act_since"][0] == 5


def test_shared_point_goes_to_the_shorter_interval_and_active_to_latest_onset():
    t = assign_window([(0, 20, 1, 0), (12, 20, 0, 1)], CFG)  # both end at 20, level 0 & 1
    lvl0 = np.flatnonzero(t["pos"] & (PTS[:, 1] == 0))
    assert len(lvl0) and (t["emo"][lvl0] == 1).all()  # the 9-frame micro
    t2 = assign_window([(5, 14, 1, 0), (8, 14, 0, 1)], CFG)  # both level 0: shorter wins
    rows = np.flatnonzero(t2["pos"])
    assert (t2["emo"][rows] == 1).all() and (t2["cls"][rows, 0] == 1).all()
    assert (t2["cls"][rows, 1] == 0).all()
    assert t2["act"][10].tolist() == [1.0, 1.0]  # both kinds under way
    assert t2["act_emo"][10] == 1 and t2["act_since"][10] == 2  # latest onset (8)
    assert t2["act_emo"][6] == 0 and t2["act_since"][6] == 1


def test_names_and_indices_agree_and_batch_stacks():
    a = assign_targets([[(10, 20, "micro", "positive")], []], CFG)
    b = assign_targets([[GTInterval(10, 20, 0, 1)], []], CFG)
    for name in ("cls", "pos", "reg", "emo", "act", "act_emo", "act_since"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert a.cls.shape == (2, len(PTS), 2) and a.act.shape == (2, CFG.window, 2)
    assert not a.pos[1].any() and a.pos[0].any()


@pytest.mark.parametrize("item, needle", [
    ((20, 10, 0, 0), "onset 20 > offset 10"),
    ((1, 2, "huge", 0), "kind"),
    ((1, 2, 0, 9), "emotion"),
    ((1, 2, 0), "must be"),
])
def test_bad_intervals_raise(item, needle):
    with pytest.raises(ValueError, match=needle):
        assign_targets([[item]], CFG)


def test_flat_list_instead_of_batch_raises():
    with pytest.raises(ValueError, match="list of interval lists"):
        assign_targets([GTInterval(1, 2, 0, 0)], CFG)
    with pytest.raises(ValueError, match="at least one window"):
        assign_targets([], CFG)


# ---------------------------------------------------------------- loss terms
def test_focal_reduces_to_bce_and_downweights_easy_examples():
    logits = torch.randn(50)
    target = (torch.rand(50) > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert torch.allclose(sigmoid_focal_loss(logits, target, alpha=-1, gamma=0.0), bce)
    easy = sigmoid_focal_loss(torch.tensor([6.0]), torch.tensor([1.0]), alpha=-1, gamma=2.0)
    hard = sigmoid_focal_loss(torch.tensor([-6.0]), torch.tensor([1.0]), alpha=-1, gamma=2.0)
    assert easy / hard < 1e-4


def test_diou_1d_values():
    t = torch.tensor([[10.0, 0.0]])  # frames -10 .. 0, 11 frames
    assert diou_loss_1d(t, t).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.tensor([[5.0, 0.0]])  # -5 .. 0: IoU 6/11, centres -2 and -4.5, enclosing 11
    assert diou_loss_1d(half, t).item() == pytest.approx(1 - 6 / 11 + (2.5 / 11) ** 2, rel=1e-5)
    far = torch.tensor([[40.0, 30.0]])  # disjoint: IoU 0 plus a centre penalty
    assert diou_loss_1d(far, t).item() > 1.0
    near = torch.tensor([[30.0, 20.0]])
    assert diou_loss_1d(near, t).item() < diou_loss_1d(far, t).item()


def test_loss_parts_and_shape_mismatch():
    torch.manual_seed(0)
    det = FEDN(CFG).detector
    out = det(torch.randn(2, CFG.window, CFG.feat_dim))
    targets = assign_targets([[(10, 20, 0, 1), (60, 150, 1, 2)], []], CFG)
    total, parts = FEDNLoss(CFG)(out, targets)
    assert set(parts) == {"total", "cls", "reg", "emo", "act", "act_emo", "act_since"}
    assert all(np.isfinite(v) and v >= 0 for v in parts.values())
    total.backward()
    assert det.head.reg[0].weight.grad is not None
    other = assign_targets([[]], ModelConfig(window=128, hop=8, levels=3, attn_window=8))
    with pytest.raises(ValueError, match="cls_logits"):
        FEDNLoss(CFG)(out, other)


def test_joint_loss_overfits_a_tiny_batch():
    torch.manual_seed(0)
    cfg = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                      feat_dim=32, heads=4, enc_channels=(8, 16), enc_grid=2, dropout=0.0,
                      range_base=8)
    model = FEDN(cfg)
    flow = 0.1 * torch.randn(2, cfg.window, 3, 16, 16)
    gts = [[(10, 17, "micro", "positive"), (30, 50, "macro", "surprise")],
           [(5, 40, "macro", "negative")]]
    for b, items in enumerate(gts):  # make the intervals visible in the flow
        for on, off, *_ in items:
            flow[b, on:off + 1, :, 4:12, 4:12] += 2.0
    valid = torch.ones(2, cfg.window)
    targets = assign_targets(gts, cfg)
    loss_fn = FEDNLoss(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        total, parts = loss_fn(model(flow, valid), targets)
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append(parts)
    assert history[-1]["total"] < 0.5 * history[0]["total"]
    for name in ("cls", "reg", "act"):
        assert history[-1][name] < history[0][name], name


def test_every_interval_gets_an_anchor_within_its_levels_stride_of_the_offset():
    """Bounds the emission delay: the first positive point is at most 2**l - 1 frames late."""
    rng = np.random.default_rng(0)
    for _ in range(200):
        dur = int(rng.integers(1, 200))
        offset = int(rng.integers(0, CFG.window - 8))
        t = assign_window([(offset - dur + 1, offset, int(rng.integers(0, 2)), 0)], CFG)
        pos = _pos_points(t)
        level = int(pos[0, 1])
        assert CFG.level_ranges[level][0] <= dur < CFG.level_ranges[level][1]
        assert 0 <= pos[:, 0].min() - offset <= 2 ** level - 1
        assert pos[:, 0].max() - offset <= CFG.level_margin(level)
