"""engine.gain: causal per-track input gain, identical live (FlowGain) and offline (video_gains)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.gain import FlowGain, frame_motion, video_gains
from engine.model import FEDN, StreamingFEDN
from engine.runtime import Engine
from engine.streaming import StreamingDetector
from stream.contracts import FlowFrame

CFG = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                  feat_dim=24, heads=4, enc_channels=(8, 16), enc_grid=2, dropout=0.0,
                  score_thresh=0.05, max_candidates=1000, gain_ref=0.25, gain_window=40,
                  gain_min_frames=10)


def _clip(n: int, sigma: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, 16, 16) float16 noise flow of per-frame std ``sigma``, ~10 % frames invalid."""
    g = np.random.default_rng(seed)
    flow = (g.standard_normal((n, 3, 16, 16)) * sigma[:, None, None, None]).astype(np.float16)
    valid = g.random(n) > 0.1
    return flow, valid


def test_off_by_default_and_for_old_checkpoints():
    flow, valid = _clip(50, np.full(50, 3.0))
    assert ModelConfig().gain_ref == 0
    assert np.all(video_gains(flow, valid, ModelConfig()) == 1.0)
    track = FlowGain(ModelConfig())
    assert all(track.update(f, bool(v)) == 1.0 for f, v in zip(flow, valid))


def test_noisy_face_is_scaled_to_the_reference_floor_quiet_face_untouched():
    quiet, valid = _clip(200, np.full(200, 0.05))
    noisy, _ = _clip(200, np.full(200, 1.0))
    assert np.all(video_gains(quiet, valid, CFG) == 1.0)
    g = video_gains(noisy, valid, CFG)
    first = np.flatnonzero(np.cumsum(valid) >= CFG.gain_min_frames)[0]
    assert np.all(g[:first] == 1.0)  # not enough history yet
    floor = np.median(frame_motion(noisy[valid]))
    assert g[-1] == pytest.approx(CFG.gain_ref / floor, rel=0.1)
    assert np.median(frame_motion(noisy[first:] * g[first:, None, None, None])) == \
        pytest.approx(CFG.gain_ref, rel=0.15)


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
    live = np.array([track.update(f, bool(v)) for f, v in zip(flow, valid)], np.float32)
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
    sigma = np.concatenate([np.full(60, 0.1), np.full(100, 2.0)])
    g = np.random.default_rng(5)
    flow = (g.standard_normal((n, 3, 64, 64)) * sigma[:, None, None, None]).astype(np.float16)
    valid = g.random(n) > 0.1
    gains = video_gains(flow, valid, CFG)
    ref = StreamingFEDN(model)
    with Engine.load(engine="torch", model=model, log=lambda _: None) as eng:
        rec = _Recording(eng)
        det = StreamingDetector(rec, CFG)
        hops = 0
        for i in range(n):
            want = ref.push(flow[i], bool(valid[i]))
            got = det.push(FlowFrame(i, i / 30, flow[i], bool(valid[i])))
            assert (got is None) == (want is None)
            hops += got is not None
        assert hops == n // CFG.hop
    np.testing.assert_allclose(np.stack(rec.inputs),
                               flow.astype(np.float32) * gains[:, None, None, None], rtol=1e-6)
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
    flow, valid = _clip(120, np.concatenate([np.full(40, 0.1), np.full(80, 1.5)]), seed=2)
    flow = np.repeat(np.repeat(flow, 4, axis=2), 4, axis=3)  # (N, 3, 64, 64)
    gains = video_gains(flow, valid, CFG)
    assert gains.min() < 0.5
    with torch.no_grad():
        want = model.encoder(torch.from_numpy(flow.astype(np.float32)
                                              * gains[:, None, None, None]),
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
    np.testing.assert_allclose(got[:20], flow[80:].astype(np.float32)
                               * gains[80:, None, None, None], rtol=1e-6)
    assert np.all(got[20:] == 0)
    assert gains[80:].max() < 0.5  # the window's gain comes from the frames before it
