"""engine.gain: causal per-track cell gains, identical live (FlowGain) and offline (video_gains)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.gain import FlowGain, apply_gain, cell_motion, video_gains
from engine.model import FEDN
from tests.engine.streaming_reference import StreamingFEDN
from engine.runtime import Engine
from engine.streaming import StreamingDetector
from engine.contracts import FlowFrame

CFG = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                  feat_dim=24, heads=4, enc_channels=(8, 16), enc_grid=2, dropout=0.0,
                  score_thresh=0.05, max_candidates=1000, gain_ref=0.25, gain_grid=4,
                  gain_window=40, gain_min_frames=10)


def _clip(n: int, sigma, size: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, size, size) float16 noise flow; ``sigma`` per frame (n,) or per pixel (S, S);
    ~10 % of frames invalid."""
    g = np.random.default_rng(seed)
    sigma = np.asarray(sigma, np.float64)
    scale = sigma[:, None, None, None] if sigma.ndim == 1 else sigma[None, None]
    flow = (g.standard_normal((n, 3, size, size)) * scale).astype(np.float16)
    return flow, g.random(n) > 0.1


def test_on_by_default_as_shipped_and_off_at_zero():
    """The defaults are the shipped model (gain 0.2 px per 8x8 cell); gain_ref 0 is off,
    which is what a checkpoint from before the gain loads with (engine.checkpoint)."""
    flow, valid = _clip(50, np.full(50, 3.0))
    on = ModelConfig()
    assert (on.gain_ref, on.gain_grid) == (0.2, 8)
    assert video_gains(flow, valid, on)[-1].max() < 1.0  # a 3 px noise floor is scaled down
    off = replace(on, gain_ref=0.0)
    assert np.all(video_gains(flow, valid, off) == 1.0)
    track = FlowGain(off)
    assert all(np.all(track.update(f, bool(v)) == 1.0) for f, v in zip(flow, valid))


def test_cells_and_apply_gain_line_up():
    flow = np.zeros((2, 3, 16, 16), np.float32)
    flow[:, :2, :4, 12:] = 3.0  # top-right cell of a 4x4 grid: |(u, v)| = 3·√2
    motion = cell_motion(flow, 4)
    assert motion.shape == (2, 4, 4)
    assert motion[0, 0, 3] == pytest.approx(3 * np.sqrt(2))
    assert motion[0].sum() == pytest.approx(motion[0, 0, 3])  # no other cell moves
    gain = np.ones((2, 4, 4), np.float32)
    gain[:, 0, 3] = 0.5
    out = apply_gain(np.ones_like(flow), gain)
    assert np.all(out[:, :, :4, 12:] == 0.5)  # that cell, all three channels
    out[:, :, :4, 12:] = 1.0
    assert np.all(out == 1.0)  # every other cell untouched
    with pytest.raises(ValueError, match="gain_grid"):
        cell_motion(np.zeros((3, 10, 10)), 4)


def test_noisy_region_is_scaled_to_the_reference_floor_quiet_region_untouched():
    sigma = np.full((16, 16), 0.05)
    sigma[:, :8] = 1.0  # left half of the crop noisy (background / hair of a side-on face)
    flow, valid = _clip(200, sigma)
    g = video_gains(flow, valid, CFG)
    first = np.flatnonzero(np.cumsum(valid) >= CFG.gain_min_frames)[0]
    assert np.all(g[:first] == 1.0)  # not enough history yet
    assert np.all(g[first:, :, 2:] == 1.0)  # quiet cells untouched
    floor = np.median(cell_motion(flow[valid], 4)[:, :, :2])
    assert g[-1, :, :2].mean() == pytest.approx(CFG.gain_ref / floor, rel=0.1)
    out = cell_motion(apply_gain(flow[first:], g[first:]), 4)
    assert np.median(out[:, :, :2]) == pytest.approx(CFG.gain_ref, rel=0.15)


def test_causal_and_robust_to_a_short_expression():
    flow, valid = _clip(300, np.full(300, 0.6))
    g = video_gains(flow, valid, CFG)
    burst = flow.copy()
    burst[200:212] *= 8  # a strong, short motion: the median barely moves
    g2 = video_gains(burst, valid, CFG)
    assert np.array_equal(g[:200], g2[:200])  # nothing before the change moves
    assert np.abs(g2[200:] - g[200:]).max() < 0.25 * g[200:].max()


def test_live_track_gives_the_same_gains_as_the_offline_pass():
    sigma = np.concatenate([np.full(120, 0.1), np.full(180, 1.5)])  # the floor changes mid-way
    flow, valid = _clip(300, sigma, seed=3)
    track = FlowGain(CFG)
    live = np.stack([track.update(f, bool(v)).copy() for f, v in zip(flow, valid)])
    np.testing.assert_allclose(live, video_gains(flow, valid, CFG, chunk=7), rtol=1e-6)
    assert live.min() < 0.5  # the noisy part really is scaled


class _Recording:
    """Engine wrapper that keeps every flow map handed to the encoder."""

    def __init__(self, eng):
        self.eng, self.inputs = eng, []

    def encode(self, flow_batch, valid):
        self.inputs.append(np.asarray(flow_batch, np.float32)[0].copy())
        return self.eng.encode(flow_batch, valid)

    def detect(self, window):
        return self.eng.detect(window)

    def padding(self, n):
        return self.eng.padding(n)


def test_streaming_detector_feeds_the_encoder_gained_flow_like_the_reference():
    torch.manual_seed(0)
    model = FEDN(CFG).eval()
    with torch.no_grad():
        model.detector.head.cls[-1].weight.mul_(20.0)
        model.encoder.no_face.normal_()
    n = 160
    flow, valid = _clip(n, np.concatenate([np.full(60, 0.1), np.full(100, 2.0)]), size=64,
                        seed=5)
    gains = video_gains(flow, valid, CFG)
    ref = StreamingFEDN(model)
    with Engine.load(engine="torch", model=model, log=lambda _: None) as eng:
        rec = _Recording(eng)
        det = StreamingDetector(rec, CFG)
        hops = 0
        for i in range(n):
            want = ref.push(flow[i], bool(valid[i]))
            got = det.update(FlowFrame(i, i / 30, flow[i], bool(valid[i])))
            assert (got is None) == (want is None)
            hops += got is not None
        assert hops == n // CFG.hop
    np.testing.assert_allclose(np.stack(rec.inputs), apply_gain(flow, gains), rtol=1e-6)
    # the reference loop applies the same gain: switching it off changes its features
    off = StreamingFEDN(FEDN(replace(CFG, gain_ref=0.0)).eval())
    off.model.load_state_dict(model.state_dict())
    for i in range(n):
        off.push(flow[i], bool(valid[i]))
    assert not torch.allclose(off.ring, ref.ring)


def test_offline_encoding_for_training_and_evaluation_applies_the_same_gain():
    from training.infer import encode_video

    torch.manual_seed(1)
    model = FEDN(CFG).eval()
    flow, valid = _clip(120, np.concatenate([np.full(40, 0.1), np.full(80, 1.5)]), size=64,
                        seed=2)
    gains = video_gains(flow, valid, CFG)
    assert gains.min() < 0.5
    with torch.no_grad():
        want = model.encoder(torch.from_numpy(apply_gain(flow, gains)),
                             torch.from_numpy(valid.astype(np.float32)))
        got = encode_video(model, flow, valid)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_training_windows_carry_the_gain_of_the_whole_video_history():
    from training.features import VideoFeatures
    from training.sampling import Window, window_flow

    flow, valid = _clip(100, np.concatenate([np.full(30, 0.1), np.full(70, 2.0)]), seed=4)
    item = VideoFeatures(subject="s", video="v", flow=flow, valid=valid, fps=30.0, intervals=[])
    gains = video_gains(flow, valid, CFG)
    got, _ = window_flow(item, Window(0, 80, 32), gains)  # runs 12 frames past the end
    np.testing.assert_allclose(got[:20], apply_gain(flow[80:], gains[80:]), rtol=1e-6)
    assert np.all(got[20:] == 0)
    assert gains[80:].max() < 0.5  # the window's gain comes from the frames before it


@pytest.mark.parametrize("kw,match", [({"gain_min_frames": 0}, "gain_min_frames"),
                                      ({"gain_window": 0}, "gain_window"),
                                      ({"gain_min_frames": 400}, "gain_min_frames"),
                                      ({"gain_ref": -0.1}, "gain_ref"),
                                      ({"gain_grid": 0}, "gain_grid")])
def test_bad_gain_settings_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        ModelConfig(**kw)
