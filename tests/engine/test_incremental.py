"""The incremental detector (engine.model.incremental): a hop of new frames + carried state
equals the full-window detector at the hop's frames, in torch and through ONNX Runtime;
the exported step graph takes and returns the state; the live schedule uses it.

"Equal": for every hop of a few hundred frames (the stream start, where the window
is "no face" padding; a run of "no face" frames mid-stream; the end, a partial hop
completed by finish()), every output at the hop's responsible positions (its last
``hop`` frames: the points and frames decode reads) within 1e-5 of what today's
full-window computation gives there.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from engine.backends import BackendError
from engine.config import ModelConfig, StreamConfig
from engine.contracts import FlowFrame
from engine.decode import OUTPUT_KEYS, pyramid_points
from engine.export import check_pair, ensure_onnx, step_parity
from engine.model import FEDN
from engine.model.incremental import (STATE_OUTPUT, STEP_OUTPUTS, IncrementalDetector,
                                      state_layout, state_shape, warmup_hops)
from engine.runtime import Engine
from engine.streaming import StreamingDetector

CFG = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32,
                  feat_dim=24, heads=4, enc_channels=(8, 16), enc_grid=2, dropout=0.0,
                  score_thresh=0.05, max_candidates=1000, gain_ref=0.0)
#: Two blocks per level, a hop of two coarsest points, one head: other shapes of the state.
CFG_DEEP = replace(CFG, window=128, hop=16, blocks_per_level=2, attn_window=5, heads=1,
                   segment=3)
N = 300  # frames per test stream (not a multiple of hop: finish() has a partial hop)
FLOW = StreamConfig().flow_size  # what Engine.load builds the encoder for
ATOL = 1e-5
PER_POINT = ("cls_logits", "emo_logits", "reg")


def _model(cfg: ModelConfig) -> FEDN:
    torch.manual_seed(0)
    m = FEDN(cfg).eval()
    with torch.no_grad():  # spread the untrained kind scores so decoding has work to do
        m.detector.head.cls[-1].weight.mul_(20.0)
        m.detector.head.cls[-1].bias.zero_()
        m.encoder.no_face.normal_()
        m.detector.head.scale.uniform_(0.5, 2.0)  # a per-level scale that is not all ones
    return m


@pytest.fixture(scope="module")
def model() -> FEDN:
    return _model(CFG)


def _features(model: FEDN, n: int = N, seed: int = 1) -> np.ndarray:
    """(n, F) features with a run of "no face" frames mid-stream."""
    feats = np.random.default_rng(seed).standard_normal((n, model.cfg.feat_dim))
    feats[100:140] = model.encoder.no_face.detach().numpy()
    return feats.astype(np.float32)


def _full_window_hops(model: FEDN, feats: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Today's computation: per hop, the full-window detector on the last ``window`` features
    (the ring starts as "no face"), cut to the hop's responsible positions."""
    cfg = model.cfg
    ring = np.concatenate([np.repeat(model.encoder.no_face.detach().numpy()[None], cfg.window, 0),
                           feats])
    last_hop = pyramid_points(cfg.window, cfg.levels)[:, 0] >= cfg.window - cfg.hop
    hops = []
    with torch.inference_mode():
        for end in range(cfg.window + cfg.hop, len(ring) + 1, cfg.hop):
            out = model.detector(torch.from_numpy(ring[None, end - cfg.window:end]))
            hops.append({k: out[k][0].numpy()[last_hop] if k in PER_POINT
                         else out[k][0].numpy()[-cfg.hop:] for k in OUTPUT_KEYS})
    return hops


def _assert_hops_equal(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want) > 0
    for h, (a, b) in enumerate(zip(got, want)):
        for key in OUTPUT_KEYS:
            assert a[key].shape == b[key].shape, (key, h)
            np.testing.assert_allclose(a[key], b[key], atol=ATOL, rtol=0,
                                       err_msg=f"{key} at hop {h}")


def test_state_layout_carries_each_span():
    parts = state_layout(CFG)
    names = [p.name for p in parts]
    assert names == ["fusion.k", "fusion.v", "fusion.mean",
                     "level0.block0.k", "level0.block0.v", "level1.block0.k", "level1.block0.v",
                     "level2.block0.k", "level2.block0.v", "level1.last", "level2.last"]
    by_name = {p.name: p for p in parts}
    # each cache keeps span-1 positions (after the hop's stale ones); the lasts one point
    assert [(p.keep, p.rows) for p in (by_name["fusion.k"], by_name["level2.block0.v"],
                                       by_name["level2.last"])] == \
        [(CFG.segment - 1, CFG.segment - 1 + 8), (CFG.attn_window - 1, CFG.attn_window - 1 + 2),
         (1, 2)]
    assert [p.row for p in parts] == list(np.cumsum([0] + [p.rows for p in parts])[:-1])
    assert state_shape(CFG) == (1, 3 * 11 + 2 * (13 + 9 + 7) + 4 + 2, CFG.channels)
    deep = [p.name for p in state_layout(CFG_DEEP)]
    assert "level1.block1.k" in deep and len(deep) == 3 + 3 * 2 * 2 + 2


@pytest.mark.parametrize("cfg", [CFG, CFG_DEEP], ids=["base", "deep"])
def test_torch_step_equals_full_window(cfg):
    model = _model(cfg)
    inc = IncrementalDetector(model.detector).eval()
    feats = _features(model, n=N - N % cfg.hop)
    state = inc.initial_state(model.encoder.no_face)
    got = []
    with torch.inference_mode():
        for start in range(0, len(feats), cfg.hop):
            out = inc(torch.from_numpy(feats[None, start:start + cfg.hop]), state)
            state = out[STATE_OUTPUT]
            got.append({k: out[k][0].numpy() for k in OUTPUT_KEYS})
    _assert_hops_equal(got, _full_window_hops(model, feats))


def test_the_state_matters(model):
    """Guard against a vacuous comparison: a zero state (not the fresh-stream one) differs at
    the first hop, and the full window's early positions (truncated context) differ too."""
    inc = IncrementalDetector(model.detector).eval()
    feats = torch.from_numpy(_features(model)[None, :CFG.hop])
    with torch.inference_mode():
        fresh = inc(feats, inc.initial_state(model.encoder.no_face))
        zero = inc(feats, torch.zeros(state_shape(CFG)))
    assert float((fresh["cls_logits"] - zero["cls_logits"]).abs().max()) > 1e-3
    assert float((fresh["act_logits"] - zero["act_logits"]).abs().max()) > 1e-3


def test_initial_state_is_a_fixed_point_of_no_face(model):
    inc = IncrementalDetector(model.detector).eval()
    no_face = model.encoder.no_face.detach()
    state = inc.initial_state(no_face)
    assert tuple(state.shape) == state_shape(CFG) and warmup_hops(CFG) == 16
    with torch.inference_mode():
        again = inc(no_face.reshape(1, 1, -1).expand(1, CFG.hop, -1), state)[STATE_OUTPUT]
    assert float((again - state).abs().max()) <= 1e-6
    assert float(state.abs().max()) > 0.1  # the zeros it started from are gone


def test_bad_step_inputs_are_one_line(model):
    inc = IncrementalDetector(model.detector).eval()
    with pytest.raises(ValueError, match="hop=8"):
        inc(torch.zeros(1, 6, CFG.feat_dim), torch.zeros(state_shape(CFG)))
    with pytest.raises(ValueError, match="state must be"):
        inc(torch.zeros(1, CFG.hop, CFG.feat_dim), torch.zeros(1, 3, CFG.channels))


# --- through the exported graph and the engine -------------------------------------------

@pytest.fixture(scope="module")
def onnx_pair(model, tmp_path_factory):
    return ensure_onnx(model.encoder, model.detector, CFG, tmp_path_factory.mktemp("cache"),
                       FLOW, log=lambda m: None)


@pytest.fixture(scope="module")
def engines(model, onnx_pair):
    root = onnx_pair.encoder.parent
    with Engine.load("torch", model=model, log=lambda m: None) as ref, \
            Engine.load("onnxruntime", model=model, onnx_dir=root, threads=1,
                        log=lambda m: None) as ort:
        yield ref, ort


def test_step_graph_takes_and_returns_the_state(onnx_pair):
    m = onnx.load(str(onnx_pair.detector_step), load_external_data=False)
    shape = lambda vi: [d.dim_value for d in vi.type.tensor_type.shape.dim]  # noqa: E731
    assert {i.name: shape(i) for i in m.graph.input} == {
        "features": [1, CFG.hop, CFG.feat_dim], "state": list(state_shape(CFG))}
    outputs = {o.name: shape(o) for o in m.graph.output}
    assert list(outputs) == list(STEP_OUTPUTS)
    assert outputs["next_state"] == list(state_shape(CFG))  # fixed shape, in and out
    assert outputs["cls_logits"] == [1, len(pyramid_points(CFG.hop, CFG.levels)), 2]
    check_pair(onnx_pair, CFG, FLOW)  # the step graph fits the config
    with pytest.raises(BackendError) as err:
        check_pair(onnx_pair, replace(CFG, hop=16), FLOW)
    assert "detector_step.onnx" in str(err.value) and "\n" not in str(err.value)


def test_onnxruntime_step_equals_full_window(model, engines):
    _, ort = engines
    assert ort.can_step
    feats = _features(model, n=N - N % CFG.hop)
    state = ort.initial_state()
    got = []
    for start in range(0, len(feats), CFG.hop):
        out, state = ort.detect_step(feats[start:start + CFG.hop], state)
        got.append({k: v[0] for k, v in out.items()})
    _assert_hops_equal(got, _full_window_hops(model, feats))


def test_initial_state_agrees_across_backends(engines):
    ref, ort = engines
    a, b = ref.initial_state(), ort.initial_state()
    assert a.shape == b.shape == state_shape(CFG)
    assert np.abs(a - b).max() <= ATOL
    a[...] = 0  # a copy: the engine's own is untouched
    assert np.abs(ref.initial_state()).max() > 0


def test_export_step_parity_helper(model, onnx_pair):
    diffs = step_parity(model, onnx_pair.detector_step, hops=12, threads=1)
    assert set(diffs) == set(OUTPUT_KEYS) | {"state_fixed_point"}
    assert max(diffs.values()) <= ATOL


def _flows(n: int = N, seed: int = 2):
    g = np.random.default_rng(seed)
    flow = g.standard_normal((n, 3, FLOW, FLOW)).astype(np.float16)
    valid = g.random(n) > 0.1
    valid[100:140] = False  # face lost for over a second
    index = np.cumsum(1 + (np.arange(n) % 7 == 6))  # a dropped frame now and then
    return [FlowFrame(int(index[i]), index[i] / 30, flow[i], bool(valid[i])) for i in range(n)]


def _run(det: StreamingDetector, flows) -> list:
    hops = [r for r in (det.update(f) for f in flows) if r is not None]
    return hops + [det.finish()]


@pytest.mark.parametrize("which", [0, 1], ids=["torch", "onnxruntime"])
def test_live_schedule_is_incremental_and_decodes_the_same(engines, which):
    eng = engines[which]
    flows = _flows()
    live = StreamingDetector(eng, CFG)
    assert live.incremental  # the default where the engine has the step
    got = _run(live, flows)
    want = _run(StreamingDetector(eng, CFG, incremental=False), flows)
    assert got[-1] is not None and len(got[-1].active.frames) == N % CFG.hop  # partial hop
    assert len(got) == len(want) == N // CFG.hop + 1
    total = 0
    for a, b in zip(got, want):
        assert a.frame == b.frame
        assert np.array_equal(a.active.frames, b.active.frames)
        for field in ("kind_probs", "emotion_probs", "since"):
            np.testing.assert_allclose(getattr(a.active, field), getattr(b.active, field),
                                       atol=ATOL, rtol=0)
        assert len(a.candidates) == len(b.candidates)
        for x, y in zip(a.candidates, b.candidates):
            assert (x.onset_frame, x.offset_frame, x.anchor_frame, x.kind, x.emotion, x.level) \
                == (y.onset_frame, y.offset_frame, y.anchor_frame, y.kind, y.emotion, y.level)
            assert abs(x.score - y.score) <= ATOL
        total += len(a.candidates)
    assert total > 50  # the comparison covered real candidates


def test_engine_without_a_step_graph_runs_the_full_window(model, onnx_pair, tmp_path):
    for path in (onnx_pair.encoder, onnx_pair.detector):  # an export from before the step
        for src in (path, path.with_name(path.name + ".data")):
            (tmp_path / src.name).write_bytes(src.read_bytes())
    lines: list[str] = []
    with Engine.load("onnxruntime", model=model, onnx_dir=tmp_path, threads=1,
                     log=lines.append) as eng:
        assert not eng.can_step and any("detector_step.onnx" in line for line in lines)
        det = StreamingDetector(eng, CFG)
        assert not det.incremental
        assert sum(det.update(f) is not None for f in _flows(3 * CFG.hop)) == 3
        with pytest.raises(ValueError, match="incremental=True"):
            StreamingDetector(eng, CFG, incremental=True)
        with pytest.raises(BackendError, match="no incremental detector"):
            eng.detect_step(np.zeros((CFG.hop, CFG.feat_dim), np.float32),
                            np.zeros(state_shape(CFG), np.float32))



def test_shipped_step_graph_equals_the_shipped_full_window():
    """The shipped ONNX step graph (engine/weights/) over a stream with the shipped weights.

    ``reg`` is in frames (values of tens of frames): its tolerance is 1e-5 plus 1e-6 of the
    value, float32 rounding there (the full-window ONNX graph itself differs from torch by
    ~1.5e-5 on it)."""
    from engine.checkpoint import WEIGHTS_DIR, load_model
    model = load_model(None, log=lambda m: None)
    cfg = model.cfg
    with Engine.load("onnxruntime", threads=1, log=lambda m: None) as eng:
        assert eng.stepper.path == WEIGHTS_DIR / "detector_step.onnx"  # shipped, up to date
        feats = _features(model, n=296)
        state = eng.initial_state()
        got = []
        for start in range(0, len(feats), cfg.hop):
            out, state = eng.detect_step(feats[start:start + cfg.hop], state)
            got.append({k: v[0] for k, v in out.items()})
    want = _full_window_hops(model, feats)
    assert len(got) == len(want) == 37
    for h, (a, b) in enumerate(zip(got, want)):
        for key in OUTPUT_KEYS:
            np.testing.assert_allclose(a[key], b[key], atol=ATOL,
                                       rtol=1e-6 if key == "reg" else 0,
                                       err_msg=f"{key} at hop {h}")
