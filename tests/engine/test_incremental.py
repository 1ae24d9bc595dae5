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
from engine.streaming import HopResult, StreamingDetector, detect_due

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


def _assert_steps_equal_full_window(model, inc, feats):
    """Step ``inc`` hop by hop over ``feats`` from a fresh state: equal to the full window."""
    hop = model.cfg.hop
    state = inc.initial_state(model.encoder.no_face)
    got = []
    with torch.inference_mode():
        for start in range(0, len(feats), hop):
            out = inc(torch.from_numpy(feats[None, start:start + hop]), state)
            state = out[STATE_OUTPUT]
            got.append({k: out[k][0].numpy() for k in OUTPUT_KEYS})
    _assert_hops_equal(got, _full_window_hops(model, feats))


@pytest.mark.parametrize("cfg", [CFG, CFG_DEEP], ids=["base", "deep"])
def test_torch_step_equals_full_window(cfg):
    model = _model(cfg)
    inc = IncrementalDetector(model.detector).eval()
    feats = _features(model, n=N - N % cfg.hop)
    _assert_steps_equal_full_window(model, inc, feats)


def test_an_output_projection_that_cannot_carry_its_bias_keeps_it():
    """The projection's bias moves into the values only where ``Wo·δ = bo`` solves: a
    singular ``Wo`` (a zero row, bias there non-zero) keeps its own bias, still equal."""
    model = _model(CFG)
    inc = IncrementalDetector(model.detector).eval()
    assert all(blk.attn.b_out is None for level in inc.blocks for blk in level)
    with torch.no_grad():
        out = model.detector.pyramid.blocks[1][0].attn.out
        out.weight[3] = 0.0
        out.bias[3] = 0.5
    inc = IncrementalDetector(model.detector).eval()
    kept = [blk.attn.b_out is not None for level in inc.blocks for blk in level]
    assert kept == [False, True, False]
    feats = _features(model, n=96)
    _assert_steps_equal_full_window(model, inc, feats)


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
    def shape(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]
    inputs = {i.name: shape(i) for i in m.graph.input}
    batch = inputs["features"][0]
    assert isinstance(batch, str) and batch  # a dynamic batch of streams, shared by all
    assert inputs == {"features": [batch, CFG.hop, CFG.feat_dim],
                      "state": [batch] + list(state_shape(CFG)[1:])}
    outputs = {o.name: shape(o) for o in m.graph.output}
    assert list(outputs) == list(STEP_OUTPUTS)
    assert outputs["next_state"] == inputs["state"]  # the same shape, in and out
    assert outputs["cls_logits"] == [batch, len(pyramid_points(CFG.hop, CFG.levels)), 2]
    check_pair(onnx_pair, CFG, FLOW)  # the step graph fits the config
    with pytest.raises(BackendError) as err:
        check_pair(onnx_pair, replace(CFG, hop=16), FLOW)
    assert "detector_step.onnx" in str(err.value) and "\n" not in str(err.value)


def test_step_graph_has_one_attention_node_per_attention(onnx_pair):
    """Each attention is one opset-23 Attention node: no Softmax / MatMul chains per head."""
    m = onnx.load(str(onnx_pair.detector_step), load_external_data=False)
    ops = [n.op_type for n in m.graph.node]
    assert {o.domain: o.version for o in m.opset_import}[""] >= 23
    assert ops.count("Attention") == 1 + CFG.levels * CFG.blocks_per_level
    assert "Softmax" not in ops and "Transpose" not in ops
    # each block's attention residual is the C input of its output projection's Gemm
    weights = {t.name for t in m.graph.initializer}
    residual_gemms = [n for n in m.graph.node if n.op_type == "Gemm" and len(n.input) == 3
                      and n.input[2] not in weights]
    assert len(residual_gemms) == CFG.levels * CFG.blocks_per_level


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


@pytest.mark.parametrize("which", [0, 1], ids=["torch", "onnxruntime"])
def test_a_batch_of_streams_is_each_stream_alone(engines, which):
    """B streams in one step call: row b is stream b stepped alone — bit for bit through
    ONNX Runtime, within float rounding in torch (its matrix products depend on B)."""
    eng = engines[which]
    assert eng.step_batch
    rng = np.random.default_rng(4)
    states = []
    for b in range(3):  # three streams with different histories
        state = eng.initial_state()
        for _ in range(b + 1):
            state = eng.detect_step(rng.standard_normal((CFG.hop, CFG.feat_dim)).astype(
                np.float32), state)[1]
        states.append(state)
    feats = rng.standard_normal((3, CFG.hop, CFG.feat_dim)).astype(np.float32)
    out, state = eng.detect_step(feats, np.concatenate(states))
    assert state.shape == state_shape(CFG, batch=3)
    for b in range(3):
        alone, alone_state = eng.detect_step(feats[b], states[b])
        for key, value in list(alone.items()) + [("next_state", alone_state)]:
            got = state[b:b + 1] if key == "next_state" else out[key][b:b + 1]
            assert got.shape == value.shape, key
            if which == 1:
                assert np.array_equal(got, value), key
            else:
                np.testing.assert_allclose(got, value, atol=ATOL, rtol=0, err_msg=key)
    with pytest.raises(BackendError) as err:
        eng.detect_step(feats[:2], np.concatenate(states))
    assert "same B" in str(err.value) and "\n" not in str(err.value)


class _Recording:
    """An engine that records the batch size of each incremental detector call."""

    def __init__(self, engine: Engine) -> None:
        self.engine, self.batches = engine, []

    def __getattr__(self, name: str):
        return getattr(self.engine, name)

    def detect_step(self, feats, state):
        self.batches.append(len(state))
        return self.engine.detect_step(feats, state)


def _assert_same_hop(a: HopResult, b: HopResult, exact: bool) -> None:
    assert a.frame == b.frame and np.array_equal(a.active.frames, b.active.frames)
    for field in ("kind_probs", "emotion_probs", "since"):
        x, y = getattr(a.active, field), getattr(b.active, field)
        assert np.array_equal(x, y) if exact else np.allclose(x, y, atol=ATOL, rtol=0), field
    assert len(a.candidates) == len(b.candidates)
    for x, y in zip(a.candidates, b.candidates):
        if exact:
            assert x == y
        else:
            assert (x.onset_frame, x.offset_frame, x.anchor_frame, x.kind, x.emotion) == \
                (y.onset_frame, y.offset_frame, y.anchor_frame, y.kind, y.emotion)
            assert abs(x.score - y.score) <= ATOL


@pytest.mark.parametrize("which", [0, 1], ids=["torch", "onnxruntime"])
def test_detect_due_runs_the_hops_due_together_and_each_stream_gets_its_own(engines, which):
    """Five streams starting and ending at different frames (two hop phases): every frame's
    due hops go through one step call; each stream's hops are those it gets alone."""
    eng = _Recording(engines[which])
    spans = {"a": (0, 300), "b": (3, 200), "c": (16, 300), "d": (43, 250), "e": (64, 290)}
    flows = {name: _flows(end - start, seed=10 + i) for i, (name, (start, end))
             in enumerate(spans.items())}
    live = {name: StreamingDetector(eng, CFG) for name in spans}
    got: dict[str, list] = {name: [] for name in spans}
    for frame in range(300):
        due = []
        for name, (start, end) in spans.items():
            if frame == end:  # the stream ends: its last partial hop alone
                got[name].append(live[name].finish())
            elif start <= frame < end and live[name].push(flows[name][frame - start]):
                due.append(name)
        for name, hop in zip(due, detect_due([live[n] for n in due])):
            got[name].append(hop)
    for name in spans:
        if spans[name][1] == 300:
            got[name].append(live[name].finish())
    assert max(eng.batches) == 3 and 2 in eng.batches and 1 in eng.batches
    assert len(eng.batches) < sum(len(hops) for hops in got.values())  # fewer calls than hops
    for name, (start, end) in spans.items():
        alone = _run(StreamingDetector(engines[which], CFG), flows[name])
        assert len(got[name]) == len(alone) == (end - start) // CFG.hop + 1
        for a, b in zip(got[name], alone):
            if b is None:
                assert a is None
            else:
                _assert_same_hop(a, b, exact=which == 1)
    with pytest.raises(ValueError, match="hop due"):
        detect_due([StreamingDetector(eng, CFG)])


def test_a_due_hop_must_be_detected_before_the_next_push(engines):
    det = StreamingDetector(engines[1], CFG)
    flows = _flows(CFG.hop + 1)
    assert [det.push(f) for f in flows[:CFG.hop]] == [False] * (CFG.hop - 1) + [True]
    with pytest.raises(RuntimeError, match="still due"):
        det.push(flows[CFG.hop])
    with pytest.raises(RuntimeError, match="still due"):
        det.finish()
    detect_due([det])
    assert det.push(flows[CFG.hop]) is False


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



def test_a_step_graph_of_batch_one_runs_each_track_alone(model, onnx_pair, tmp_path):
    """An export from before the batch dim (static batch 1): the engine says it cannot batch
    and detect_due steps each stream on its own, with the same hops."""
    from engine.export import export_onnx
    from engine.model.incremental import STEP_OPSET
    for path in (onnx_pair.encoder, onnx_pair.detector):
        for src in (path, path.with_name(path.name + ".data")):
            (tmp_path / src.name).write_bytes(src.read_bytes())
    inc = IncrementalDetector(model.detector).eval()
    export_onnx(inc, {"features": torch.zeros(1, CFG.hop, CFG.feat_dim),
                      "state": torch.zeros(state_shape(CFG))}, tmp_path / "detector_step.onnx",
                STEP_OUTPUTS, opset=STEP_OPSET)
    with Engine.load("onnxruntime", model=model, onnx_dir=tmp_path, threads=1,
                     log=lambda m: None) as static:
        assert static.can_step and not static.step_batch
        eng = _Recording(static)
        dets = [StreamingDetector(eng, CFG) for _ in range(2)]
        flows = [_flows(CFG.hop, seed=s) for s in (5, 6)]
        assert [[d.push(f) for f in fl][-1] for d, fl in zip(dets, flows)] == [True, True]
        got = detect_due(dets)
        assert eng.batches == [1, 1]
        for hop, fl in zip(got, flows):
            _assert_same_hop(hop, _run(StreamingDetector(static, CFG), fl)[0], exact=True)


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
