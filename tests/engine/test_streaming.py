"""The backend-agnostic schedule (engine.streaming) against the torch reference loop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.decode import decode_window
from engine.model import FEDN
from tests.engine.streaming_reference import StreamingFEDN
from engine.runtime import Engine
from engine.streaming import StreamingDetector
from engine.contracts import FlowFrame

CFG = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                  feat_dim=24, heads=4, enc_channels=(8, 16), enc_grid=2, dropout=0.0,
                  score_thresh=0.05, max_candidates=1000)
N = 160


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = FEDN(CFG).eval()
    with torch.no_grad():  # spread untrained scores so decoding has work to do
        m.detector.head.cls[-1].weight.mul_(20.0)
        m.detector.head.cls[-1].bias.zero_()
        m.encoder.no_face.normal_()
    return m


@pytest.fixture(scope="module")
def clip():
    g = np.random.default_rng(1)
    flow = g.standard_normal((N, 3, 64, 64)).astype(np.float16)
    valid = g.random(N) > 0.1
    return flow, valid


def _engine(model):
    return Engine.load(engine="torch", model=model, log=lambda _: None)


def test_same_candidates_as_torch_reference(model, clip):
    flow, valid = clip
    ref = StreamingFEDN(model)
    with _engine(model) as eng:
        det = StreamingDetector(eng, CFG)
        total = 0
        for i in range(N):
            want = ref.push(flow[i], bool(valid[i]))
            got = det.update(FlowFrame(i, i / 30, flow[i], bool(valid[i])))
            assert (got is None) == (want is None)
            if got is None:
                continue
            out, offset = want
            expect = decode_window(out, CFG, frame_offset=offset,
                                   frame_range=(CFG.window - CFG.hop, CFG.window))
            expect = [c for c in expect]
            assert got.frame == i
            assert len(got.candidates) == len(expect)
            for a, b in zip(got.candidates, expect):
                assert (a.kind, a.emotion, a.level) == (b.kind, b.emotion, b.level)
                assert a.offset_frame == max(b.offset_frame, 0)
                assert a.onset_frame == max(b.onset_frame, 0)
                assert abs(a.score - b.score) <= 1e-5
            assert np.array_equal(got.active.frames, np.arange(i + 1 - CFG.hop, i + 1))
            total += len(got.candidates)
        assert total > 20


def test_dropped_frames_map_back_to_stream_indices(model, clip):
    flow, valid = clip
    with _engine(model) as eng:
        det = StreamingDetector(eng, CFG)
        index = 0
        results = []
        for i in range(N):
            index += 1 + (i % 5 == 4)  # every fifth frame a drop before it
            res = det.update(FlowFrame(index, index / 30, flow[i], True))
            if res is not None:
                results.append(res)
    pushed = set()
    idx = 0
    for i in range(N):
        idx += 1 + (i % 5 == 4)
        pushed.add(idx)
    for res in results:
        assert set(res.active.frames.tolist()) <= pushed
        for c in res.candidates:
            assert c.anchor_frame in pushed and c.offset_frame <= res.frame
    assert det.to_frame(det.pushed - 1) == idx
    assert det.to_frame(det.pushed + 2) == idx + 3  # beyond the ring: extrapolated
    assert det.to_frame(-100) == 0  # before the stream: clamped


def test_flush_decodes_the_last_partial_hop_like_the_reference(model, clip):
    flow, valid = clip
    n = 2 * CFG.hop + 3  # ends 3 frames into a hop
    ref = StreamingFEDN(model)
    with _engine(model) as eng:
        det = StreamingDetector(eng, CFG)
        for i in range(n):
            ref.push(flow[i], bool(valid[i]))
            det.update(FlowFrame(i, i / 30, flow[i], bool(valid[i])))
        out, offset, n_real = ref.flush()
        got = det.finish()
    assert n_real == 3 and got is not None
    expect = decode_window(out, CFG, frame_offset=offset,
                           frame_range=(CFG.window - CFG.hop, CFG.window - CFG.hop + 3))
    assert [(c.kind, round(c.score, 5)) for c in got.candidates] == \
        [(c.kind, round(c.score, 5)) for c in expect]
    assert np.array_equal(got.active.frames, np.arange(n - 3, n))
    assert all(c.offset_frame <= n - 1 for c in got.candidates)
    assert got.frame == n - 1
