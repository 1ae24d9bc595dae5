"""The per-track spotter: a face that leaves mid-expression gives a truncated event."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.config import ModelConfig, TrackerConfig
from engine.contracts import Event, EventCancel, EventStart, FlowFrame
from engine.decode import pyramid_points
from stream.spotter import Spotter

CFG = ModelConfig(window=64, hop=8, segment=4, attn_window=6, levels=3, channels=32, feat_dim=4,
                  heads=4, enc_channels=(8, 16), enc_grid=2, gain_ref=0.0)
S = 8  # flow map side


class ActiveOnlyEngine:
    """An engine whose active head reads "macro positive under way" off the flow itself.

    Feature 0 is the flow's u at pixel (0, 0) (1 while the expression is on); the
    interval heads never fire, so only the active head (provisional events) speaks,
    as for a held expression whose offset the detector never sees.
    """

    cfg = CFG

    def encode(self, flow, valid):
        feats = np.zeros((len(valid), CFG.feat_dim), np.float32)
        feats[:, 0] = flow[:, 0, 0, 0] * valid
        return feats

    def padding(self, n):
        return np.zeros((n, CFG.feat_dim), np.float32)

    def detect(self, window):
        w = CFG.window
        on = window[:, 0] > 0.5  # (W,)
        p = len(pyramid_points(w, CFG.levels))
        act = np.where(on[:, None], [-6.0, 6.0], [-6.0, -6.0])  # (W, K): macro when on
        emo = np.tile([-2.0, 4.0, -2.0, -2.0], (w, 1))  # positive
        return {"cls_logits": np.full((1, p, 2), -10.0), "emo_logits": np.zeros((1, p, 4)),
                "reg": np.zeros((1, p, 2)), "act_logits": act[None], "act_emo_logits": emo[None],
                "act_since": np.full((1, w), 4.0)}


def _run(leave_after, frames=200, visible_until=100, expression_from=80):
    """A 20-frame expression under way when the face leaves (shorter than any window)."""
    spotter = Spotter(ActiveOnlyEngine(), fps=30.0, flow_size=S, tracker_cfg=TrackerConfig(),
                      leave_after=leave_after)
    records = []
    for i in range(frames):
        flows = {}
        if i < visible_until:
            flow = np.zeros((3, S, S), np.float16)
            flow[0, 0, 0] = 1.0 if i >= expression_from else 0.0
            flows = {0: FlowFrame(i, i / 30, flow, True, 0)}
        records += spotter.update(i, i / 30, i / 30, flows)
    return records + spotter.finish()


def test_an_expression_under_way_when_the_face_leaves_is_emitted_truncated():
    records = _run(leave_after=16)
    [start] = [r for r in records if isinstance(r, EventStart)]
    [event] = [r for r in records if isinstance(r, Event)]
    assert not [r for r in records if isinstance(r, EventCancel)]
    assert event.truncated and event.id == start.id and event.track_id == 0
    assert event.onset_frame == start.onset_frame and 74 <= event.onset_frame <= 84
    assert event.offset_frame == 99  # the last frame the face was seen
    assert event.kind == "macro" and event.emotion == "positive"
    assert event.emitted_frame <= 99 + 16 + CFG.hop  # said soon after the face left


def test_without_leaving_the_old_behaviour_withdraws_it():
    """The case the change fixes: no leave rule, the start is withdrawn, nothing is final."""
    records = _run(leave_after=None)
    assert [r for r in records if isinstance(r, EventCancel)]
    assert not [r for r in records if isinstance(r, Event)]


def test_a_face_that_stays_is_cut_only_by_the_stream_end():
    records = _run(leave_after=16, frames=300, visible_until=300, expression_from=280)
    assert not [r for r in records if isinstance(r, EventCancel)]
    [event] = [r for r in records if isinstance(r, Event)]
    assert event.truncated and event.offset_frame == 299  # cut by the stream end only


def test_leave_after_is_checked():
    with pytest.raises(ValueError, match="leave_after"):
        Spotter(ActiveOnlyEngine(), 30.0, S, leave_after=0)


def _two_faces(spotter, frames=160):
    """Face 0 expresses from frame 40 to 70, face 1 from 90 to 130; both always visible."""
    records = []
    for i in range(frames):
        flows = {}
        for tid, (on, off) in ((0, (40, 70)), (1, (90, 130))):
            flow = np.zeros((3, S, S), np.float16)
            flow[0, 0, 0] = 1.0 if on <= i < off else 0.0
            flows[tid] = FlowFrame(i, i / 30, flow, True, tid)
        records += spotter.update(i, i / 30, i / 30, flows)
    return records + spotter.finish()


class _CountingEngine(ActiveOnlyEngine):
    def __init__(self):
        self.batches = []

    def encode(self, flow, valid):
        self.batches.append(len(valid))
        return super().encode(flow, valid)


def test_the_faces_of_a_frame_are_encoded_in_one_batch_with_the_same_events():
    engine = _CountingEngine()
    records = _two_faces(Spotter(engine, 30.0, S, leave_after=16))
    assert engine.batches == [2] * 160  # one encoder call per frame, both faces in it
    by_track = {tid: [r for r in records if getattr(r, "track_id", None) == tid] for tid in (0, 1)}
    for tid, (on, off) in ((0, (40, 70)), (1, (90, 130))):
        alone = Spotter(ActiveOnlyEngine(), 30.0, S, leave_after=16)
        ref = []
        for i in range(160):
            flow = np.zeros((3, S, S), np.float16)
            flow[0, 0, 0] = 1.0 if on <= i < off else 0.0
            ref += alone.update(i, i / 30, i / 30, {tid: FlowFrame(i, i / 30, flow, True, tid)})
        ref += alone.finish()
        assert ref and _no_latency(by_track[tid]) == _no_latency(ref)


def _no_latency(records):
    """Records with the wall-clock latency zeroed (two runs differ only there)."""
    return [replace(r, latency_ms=0.0) if isinstance(r, Event) else r for r in records]


# --- the detector batched across the tracks whose hop is due --------------------------------

STEP_CFG = ModelConfig(window=32, hop=8, segment=4, attn_window=4, levels=2, channels=32,
                       heads=2, feat_dim=16, enc_channels=(8, 16), enc_grid=2, range_base=8,
                       score_thresh=0.05, gain_ref=0.0)


@pytest.fixture(scope="module")
def step_engine(tmp_path_factory):
    """ONNX Runtime on a tiny model with the incremental detector (its batched step graph)."""
    import torch

    from engine.config import StreamConfig
    from engine.export import ensure_onnx
    from engine.model import FEDN
    from engine.runtime import Engine
    torch.manual_seed(0)
    model = FEDN(STEP_CFG).eval()
    with torch.no_grad():  # spread the untrained kind scores so the trackers have work to do
        model.detector.head.cls[-1].weight.mul_(20.0)
        model.detector.active.act[-1].weight.mul_(20.0)
    pair = ensure_onnx(model.encoder, model.detector, STEP_CFG, tmp_path_factory.mktemp("onnx"),
                       StreamConfig().flow_size, log=lambda m: None)
    with Engine.load("onnxruntime", model=model, onnx_dir=pair.encoder.parent, threads=1,
                     log=lambda m: None) as eng:
        yield eng


class _StepCounting:
    """An engine that records the batch size of each incremental detector call."""

    def __init__(self, engine):
        self.engine, self.batches = engine, []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def detect_step(self, feats, state):
        self.batches.append(len(state))
        return self.engine.detect_step(feats, state)


#: Track id -> (first frame, last frame seen): two hop phases (0, 2, 4 start on multiples
#: of the hop, 1 and 3 three frames later); 1 and 3 leave for good (dropped a window
#: later), 4 comes after they have gone.
SPANS = {0: (0, 239), 1: (3, 120), 2: (16, 239), 3: (43, 150), 4: (168, 239)}


def _flow_of(track_id: int, i: int, side: int) -> np.ndarray:
    g = np.random.default_rng(1000 * track_id + i)
    return (g.standard_normal((3, side, side)) * (1 + (i // 16 + track_id) % 3)).astype(
        np.float16)


def _spot(spotter, track_ids, side, frames=240):
    records = []
    for i in range(frames):
        flows = {tid: FlowFrame(i, i / 30, _flow_of(tid, i, side), True, tid)
                 for tid in track_ids if SPANS[tid][0] <= i <= SPANS[tid][1]}
        records += spotter.update(i, i / 30, i / 30, flows)
    return records + spotter.finish()


def test_the_tracks_due_on_a_frame_share_one_detector_call_with_the_same_events(step_engine):
    from engine.config import StreamConfig
    side = StreamConfig().flow_size
    engine = _StepCounting(step_engine)
    spotter = Spotter(engine, 30.0, side, leave_after=16)
    records = _spot(spotter, SPANS, side)
    assert max(engine.batches) == 3 and {1, 2} <= set(engine.batches)  # due together, alone
    assert any(isinstance(r, (Event, EventStart)) for r in records)  # the trackers had work
    for tid in SPANS:
        alone = _spot(Spotter(step_engine, 30.0, side, leave_after=16), [tid], side)
        mine = [r for r in records if getattr(r, "track_id", None) == tid]
        assert _no_latency(mine) == _no_latency(alone), tid  # bit for bit
