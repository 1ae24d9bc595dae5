"""Decoding: pyramid points, thresholds, 1D soft-NMS, frame offsets, active readout, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.config import ModelConfig
from engine.decode import OUTPUT_KEYS, decode_active, decode_window, pyramid_points
from engine.model.targets import assign_window

CFG = ModelConfig(window=256)  # the point tables below reach frame 255
P = len(pyramid_points(CFG.window, CFG.levels))


def _blank(batch: bool = False) -> dict[str, np.ndarray]:
    t, k, e = CFG.window, len(CFG.kinds), len(CFG.emotions)
    out = {"cls_logits": np.full((P, k), -10.0), "emo_logits": np.zeros((P, e)),
           "reg": np.zeros((P, 2)), "act_logits": np.full((t, k), -10.0),
           "act_emo_logits": np.zeros((t, e)), "act_since": np.zeros(t)}
    return {k: v[None] for k, v in out.items()} if batch else out


def _row(frame: int, level: int) -> int:
    pts = pyramid_points(CFG.window, CFG.levels)
    return int(np.flatnonzero((pts[:, 0] == frame) & (pts[:, 1] == level))[0])


def test_pyramid_points_layout():
    pts = pyramid_points(16, 3)
    assert pts.shape == (16 + 8 + 4, 2)
    assert pts[:16, 0].tolist() == list(range(16))
    assert pts[16:24, 0].tolist() == [1, 3, 5, 7, 9, 11, 13, 15]
    assert pts[24:, 0].tolist() == [3, 7, 11, 15]
    assert pts[:, 1].tolist() == [0] * 16 + [1] * 8 + [2] * 4
    with pytest.raises(ValueError, match="divisible"):
        pyramid_points(18, 3)


def test_one_strong_point_decodes_to_its_interval():
    out = _blank(batch=True)
    r = _row(207, 3)
    out["cls_logits"][0, r] = [-3.0, 2.0]
    out["emo_logits"][0, r] = [0.0, 0.0, 3.0, 0.0]
    out["reg"][0, r] = [100.2, 4.6]
    (c,) = decode_window(out, CFG, frame_offset=1000)
    assert (c.onset_frame, c.offset_frame) == (1000 + 107, 1000 + 202)
    assert c.kind == "macro" and c.emotion == "surprise" and c.level == 3
    assert c.anchor_frame == 1207
    assert c.score == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert sum(c.emotion_scores.values()) == pytest.approx(1.0)
    assert max(c.emotion_scores, key=c.emotion_scores.get) == "surprise"


def test_threshold_frame_range_and_onset_clipping():
    out = _blank()
    r = _row(20, 0)
    out["cls_logits"][r] = [0.0, -10.0]  # p = 0.5
    out["reg"][r] = [30.0, 2.0]  # onset before the window start
    assert decode_window(out, CFG, score_thresh=0.6) == []
    assert decode_window(out, CFG, frame_range=(21, 256)) == []
    (c,) = decode_window(out, CFG, frame_range=(16, 24))
    assert c.onset_frame == 0 and c.offset_frame == 18  # clipped at stream start


def test_duplicate_kinds_on_one_interval_are_suppressed_class_agnostic():
    out = _blank()
    r = _row(50, 0)
    out["cls_logits"][r] = [2.0, 1.0]  # both kinds fire on the same interval
    out["reg"][r] = [8.0, 0.0]
    cands = decode_window(out, CFG, score_thresh=0.3)
    assert [c.kind for c in cands] == ["micro"]  # macro decayed to 0.73·e^-2 < 0.3


def test_perfect_outputs_from_targets_decode_back_to_the_ground_truth():
    gts = [(10, 20, 0, 1), (60, 159, 1, 2), (200, 230, 1, 0)]
    t = assign_window(gts, CFG)
    out = _blank()
    out["cls_logits"] = np.where(t["cls"] > 0, 5.0, -10.0)
    out["reg"] = t["reg"].astype(np.float64)
    out["emo_logits"] = np.eye(4)[np.clip(t["emo"], 0, 3)] * 5.0
    cands = decode_window(out, CFG)
    got = {(c.onset_frame, c.offset_frame, CFG.kinds.index(c.kind), CFG.emotions.index(c.emotion))
           for c in cands}
    assert got == set(gts)


def test_active_readout():
    out = _blank()
    out["act_logits"][100:120, 1] = 4.0
    out["act_emo_logits"][100:120, 1] = 5.0
    out["act_since"][100:120] = np.arange(20)
    a = decode_active(out, CFG, frame_offset=50, frame_range=(96, 112))
    assert a.frames.tolist() == list(range(146, 162))
    assert (a.kind_probs[4:, 1] > 0.9).all() and (a.kind_probs[:4, 1] < 0.01).all()
    assert np.allclose(a.emotion_probs.sum(1), 1.0)
    assert (a.emotion_probs[4:].argmax(1) == 1).all()
    assert a.since[4:].tolist() == list(range(12))


def test_bad_outputs_raise():
    out = _blank()
    with pytest.raises(ValueError, match="lack keys"):
        decode_window({k: v for k, v in out.items() if k != "reg"}, CFG)
    batched = {k: np.stack([v, v]) for k, v in out.items()}
    with pytest.raises(ValueError, match="batch 2"):
        decode_window(batched, CFG)
    wrong = dict(out, reg=out["reg"][:-1])
    with pytest.raises(ValueError, match="points"):
        decode_window(wrong, CFG)
    with pytest.raises(ValueError, match="dims"):
        decode_window(dict(out, act_since=np.zeros((1, 2, 3, 4))), CFG)
    assert set(OUTPUT_KEYS) == set(out)
