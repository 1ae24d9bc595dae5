"""Streaming equivalence: encoder per frame + ring + detector per hop == one pass over the video.

What "same" means: hop h ends at stream frame c-1 (c = (h+1)·hop frames read) and
is responsible for the points and frames at stream positions c-hop .. c-1 (the
last ``hop`` positions of its window). The whole-video reference is one forward
pass over the video preceded by ``window`` "no face" frames (the state of a
fresh stream). For every hop, the raw outputs at its responsible positions and
the candidates decoded from them (threshold + soft-NMS over those points) must
match the reference's at the same stream positions: frames, kind and emotion
exactly, scores within 1e-5.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.decode import OUTPUT_KEYS, decode_active, decode_window, pyramid_points
from engine.model import FEDN
from tests.engine.streaming_reference import StreamingFEDN

N_FRAMES = 320



@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    # the shipped model's sizes; no input gain: the offline forward takes the flow as given
    cfg = ModelConfig(dropout=0.0, score_thresh=0.05, max_candidates=1000, gain_ref=0.0)
    model = FEDN(cfg).eval()
    with torch.no_grad():  # spread the untrained kind scores so decoding has work to do
        model.detector.head.cls[-1].weight.mul_(20.0)
        model.detector.head.cls[-1].bias.zero_()
        model.encoder.no_face.normal_()
    g = torch.Generator().manual_seed(1)
    flow = torch.randn(N_FRAMES, 3, 64, 64, generator=g).half()
    valid = torch.rand(N_FRAMES, generator=g) > 0.1
    valid[100:130] = False  # face lost for a second
    with torch.no_grad():
        full = model(flow.unsqueeze(0), valid.unsqueeze(0), pad=cfg.window)
    full = {k: v.numpy() for k, v in full.items()}
    stream = StreamingFEDN(model)
    hops = []
    for i in range(N_FRAMES):
        res = stream.push(flow[i].numpy(), bool(valid[i]))
        assert (res is not None) == ((i + 1) % cfg.hop == 0)
        if res is not None:
            hops.append((i + 1, *res))
    return cfg, full, hops


def test_raw_outputs_match_at_responsible_positions(setup):
    cfg, full, hops = setup
    pad = cfg.window
    pts_win = pyramid_points(cfg.window, cfg.levels)[:, 0]
    pts_full = pyramid_points(pad + N_FRAMES, cfg.levels)[:, 0]
    assert len(hops) == N_FRAMES // cfg.hop
    for count, out, offset in hops:
        assert offset == count - cfg.window
        lo = count - cfg.hop  # first responsible stream frame
        for key in OUTPUT_KEYS:
            per_point = key in ("cls_logits", "emo_logits", "reg")
            win_rows = pts_win if per_point else np.arange(cfg.window)
            full_rows = pts_full if per_point else np.arange(pad + N_FRAMES)
            a = out[key][0][(win_rows + offset >= lo) & (win_rows + offset < count)]
            b = full[key][0][(full_rows - pad >= lo) & (full_rows - pad < count)]
            assert a.shape == b.shape and len(a) > 0
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"{key} hop@{count}")


def test_candidates_match(setup):
    cfg, full, hops = setup
    pad = cfg.window
    total = 0
    for count, out, offset in hops:
        got = decode_window(out, cfg, frame_offset=offset,
                            frame_range=(cfg.window - cfg.hop, cfg.window))
        ref = decode_window({k: v[0] for k, v in full.items()}, cfg, frame_offset=-pad,
                            frame_range=(pad + count - cfg.hop, pad + count))
        assert len(got) == len(ref)
        for a, b in zip(got, ref):
            assert (a.onset_frame, a.offset_frame, a.kind, a.emotion, a.anchor_frame, a.level) == \
                (b.onset_frame, b.offset_frame, b.kind, b.emotion, b.anchor_frame, b.level)
            assert abs(a.score - b.score) <= 1e-5
            assert count - cfg.hop <= a.anchor_frame < count
        total += len(got)
    assert total > 50  # the comparison covered real candidates


def test_active_readout_matches(setup):
    cfg, full, hops = setup
    pad = cfg.window
    for count, out, offset in hops[::5]:
        a = decode_active(out, cfg, frame_offset=offset,
                          frame_range=(cfg.window - cfg.hop, cfg.window))
        b = decode_active({k: v[0] for k, v in full.items()}, cfg, frame_offset=-pad,
                          frame_range=(pad + count - cfg.hop, pad + count))
        assert np.array_equal(a.frames, np.arange(count - cfg.hop, count))
        assert np.array_equal(a.frames, b.frames)
        np.testing.assert_allclose(a.kind_probs, b.kind_probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.emotion_probs, b.emotion_probs, atol=1e-5, rtol=0)
        np.testing.assert_allclose(a.since, b.since, atol=1e-5, rtol=0)


def test_first_positions_of_a_window_are_not_exact(setup):
    """Guard against a vacuous test: early window positions lack context and do differ."""
    cfg, full, hops = setup
    count, out, offset = hops[-1]  # a window fully inside the video
    assert offset > 0
    first = out["cls_logits"][0][: cfg.hop]  # level-0 points at window positions 0..hop-1
    ref = full["cls_logits"][0][cfg.window + offset: cfg.window + offset + cfg.hop]
    assert np.abs(first - ref).max() > 1e-3


def test_flush_completes_the_last_partial_hop():
    torch.manual_seed(3)
    cfg = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                      feat_dim=24, heads=4, enc_channels=(8, 16), enc_grid=2, dropout=0.0,
                      gain_ref=0.0)
    model = FEDN(cfg).eval()
    n = 45  # 5 full hops + 5 frames
    flow = torch.randn(n, 3, 16, 16)
    stream = StreamingFEDN(model)
    for i in range(n):
        stream.push(flow[i].numpy(), True)
    outputs, offset, n_real = stream.flush()
    assert (offset, n_real, stream.count) == (48 - cfg.window, 5, n)
    # reference: the video, then 3 "no face" frames (the padding is in the future of
    # every real frame, so it changes nothing there) to reach a multiple of 2**(levels-1)
    tail_flow = torch.cat([flow, torch.zeros(3, 3, 16, 16)])
    tail_valid = torch.cat([torch.ones(n), torch.zeros(3)])
    pad = cfg.window
    with torch.no_grad():
        full = model(tail_flow.unsqueeze(0), tail_valid.unsqueeze(0), pad=pad)
    for key in ("act_logits", "act_since"):
        got = outputs[key][0][cfg.window - cfg.hop: cfg.window - cfg.hop + n_real]
        ref = full[key][0].numpy()[pad + 40: pad + 45]
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    assert StreamingFEDN(model).flush() is None
