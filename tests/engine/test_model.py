"""FEDN model: shapes, encoder masking, causality and the documented look-back."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.decode import OUTPUT_KEYS, pyramid_points
from engine.model import FEDN, FlowEncoder, TemporalDetector

SMALL = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                    feat_dim=24, heads=4, enc_channels=(8, 16), enc_grid=2, dropout=0.0)



def _point_frames(cfg: ModelConfig, length: int) -> np.ndarray:
    return pyramid_points(length, cfg.levels)[:, 0]


@pytest.fixture(scope="module")
def detector() -> TemporalDetector:
    torch.manual_seed(0)
    return TemporalDetector(ModelConfig(window=256, dropout=0.0)).eval()  # t up to 254


def test_output_keys_and_shapes():
    cfg = SMALL
    model = FEDN(cfg).eval()
    flow = torch.randn(2, cfg.window, 3, 32, 32)
    out = model(flow, torch.ones(2, cfg.window))
    p = len(pyramid_points(cfg.window, cfg.levels))
    assert set(out) == set(OUTPUT_KEYS)
    k, e = len(cfg.kinds), len(cfg.emotions)
    assert out["cls_logits"].shape == (2, p, k)
    assert out["emo_logits"].shape == (2, p, e)
    assert out["reg"].shape == (2, p, 2)
    assert out["act_logits"].shape == (2, cfg.window, k)
    assert out["act_emo_logits"].shape == (2, cfg.window, e)
    assert out["act_since"].shape == (2, cfg.window)
    reg = out["reg"]
    assert (reg[..., 1] >= 0).all() and (reg[..., 0] >= reg[..., 1]).all()
    assert (out["act_since"] >= 0).all()


def test_encoder_invalid_frames_give_no_face_exactly():
    enc = FlowEncoder(SMALL).eval()
    with torch.no_grad():
        enc.no_face.copy_(torch.randn(SMALL.feat_dim))
        flow = torch.randn(4, 3, 32, 32).half()
        feats = enc(flow, torch.tensor([True, False, True, False]))
        assert torch.equal(feats[1], enc.no_face) and torch.equal(feats[3], enc.no_face)
        assert not torch.allclose(feats[0], enc.no_face)
        assert torch.allclose(feats[0], enc(flow[:1], torch.ones(1))[0], atol=1e-6)


def test_fedn_encode_matches_per_frame_encoder():
    torch.manual_seed(1)
    model = FEDN(SMALL).eval()
    flow = torch.randn(2, 16, 3, 32, 32)
    valid = torch.rand(2, 16) > 0.3
    with torch.no_grad():
        feats = model.encode(flow, valid)
        ref = model.encoder(flow.reshape(32, 3, 32, 32), valid.reshape(32)).reshape(2, 16, -1)
    assert torch.allclose(feats, ref, atol=1e-6)


@pytest.mark.parametrize("t", [0, 37, 100, 200, 254])
def test_detector_is_causal(detector, t):
    """Changing features after frame t changes no output at any point/frame <= t."""
    cfg = detector.cfg
    g = torch.Generator().manual_seed(t)
    feats = torch.randn(1, cfg.window, cfg.feat_dim, generator=g)
    changed = feats.clone()
    changed[:, t + 1:] = 10 * torch.randn(1, cfg.window - t - 1, cfg.feat_dim, generator=g)
    with torch.no_grad():
        a, b = detector(feats), detector(changed)
    pts = _point_frames(cfg, cfg.window)
    frames = np.arange(cfg.window)
    for key in OUTPUT_KEYS:
        rows = pts if key in ("cls_logits", "emo_logits", "reg") else frames
        past = torch.from_numpy(rows <= t)
        assert torch.allclose(a[key][0, past], b[key][0, past], atol=1e-5), key
        # ... and the change is visible somewhere after t (the test can fail)
        assert not torch.allclose(a[key][0, ~past], b[key][0, ~past], atol=1e-3), key


def test_full_model_is_causal_through_the_encoder():
    torch.manual_seed(2)
    cfg = SMALL
    model = FEDN(cfg).eval()
    flow = torch.randn(1, cfg.window, 3, 32, 32)
    valid = torch.ones(1, cfg.window)
    t = 40
    flow2, valid2 = flow.clone(), valid.clone()
    flow2[:, t + 1:] += 5.0
    valid2[:, t + 5:] = 0
    with torch.no_grad():
        a, b = model(flow, valid), model(flow2, valid2)
    past_pts = torch.from_numpy(_point_frames(cfg, cfg.window) <= t)
    for key in ("cls_logits", "emo_logits", "reg"):
        assert torch.allclose(a[key][0, past_pts], b[key][0, past_pts], atol=1e-5)
    for key in ("act_logits", "act_emo_logits", "act_since"):
        assert torch.allclose(a[key][0, : t + 1], b[key][0, : t + 1], atol=1e-5)
        assert not torch.allclose(a[key][0, t + 1:], b[key][0, t + 1:], atol=1e-4)


@pytest.mark.parametrize("level", [0, 1, 2, 3])
def test_lookback_matches_config(detector, level):
    """A level-l point at frame f depends on frame f - lookback[l] and on nothing earlier.

    Uses the gradient's support in float64: exact zeros where there is no path,
    however small the influence through deep attention is where there is one.
    """
    cfg = detector.cfg
    lb = cfg.lookback[level]
    pts = pyramid_points(cfg.window, cfg.levels)
    row = int(np.flatnonzero(pts[:, 1] == level)[-1])  # last point of that level
    f = int(pts[row, 0])
    assert f - lb - 1 >= 0
    model = copy.deepcopy(detector).double()
    feats = torch.randn(1, cfg.window, cfg.feat_dim, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(level), requires_grad=True)
    out = model(feats)
    for key in ("cls_logits", "emo_logits"):  # no ReLU in the way of the gradient
        (grad,) = torch.autograd.grad(out[key][0, row].sum(), feats, retain_graph=True)
        support = (grad[0].abs().sum(-1) > 0).nonzero().squeeze(1)  # (T, F) -> frames
        assert int(support.min()) == f - lb, key
        assert int(support.max()) == f, key


def test_points_helper_and_other_window_lengths(detector):
    cfg = detector.cfg
    assert np.array_equal(detector.points(), pyramid_points(cfg.window, cfg.levels))
    with torch.no_grad():
        out = detector(torch.randn(1, 2 * cfg.window, cfg.feat_dim))  # on-the-fly masks
    assert out["cls_logits"].shape[1] == len(detector.points(2 * cfg.window))


def test_detector_rejects_bad_shapes(detector):
    cfg = detector.cfg
    for shape in [(1, cfg.window - 1, cfg.feat_dim), (1, cfg.window, cfg.feat_dim + 1),
                  (cfg.window, cfg.feat_dim)]:
        with pytest.raises(ValueError, match="TemporalDetector: feats must be"):
            detector(torch.zeros(shape))
