"""The appearance stage in the stage chain: every face, every frame, crops cut on the face
stage (so the face thread may hand the frame's image back), and a model with appearance
fusion reading probabilities ‖ baseline delta next to the flow."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from engine.config import APPEARANCE_CLASSES, APPEARANCE_DIM, TrackerConfig
from engine.contracts import Frame
from engine.model import FEDN
from engine.runtime import Engine
from stream.chain import StageChain, stamped
from stream.sources import DEMO_CLIP, VideoFileSource
from tests.engine.conftest import TINY

N_FRAMES = 40


class SpyEngine:
    """An engine that records the appearance inputs the spotter hands the encoder."""

    def __init__(self, engine: Engine) -> None:
        self._engine, self.seen = engine, []

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def encode(self, flow_batch, valid, appearance=None):
        self.seen.append(None if appearance is None else np.array(appearance))
        return self._engine.encode(flow_batch, valid, appearance)


def _frames(n: int = N_FRAMES) -> list[Frame]:
    with VideoFileSource(DEMO_CLIP) as src:
        return list(itertools.islice(stamped(src), n))


def _engine(appearance_dim: int) -> Engine:
    torch.manual_seed(0)
    model = FEDN(dataclasses.replace(TINY, appearance_dim=appearance_dim)).eval()
    return Engine.load("torch", model=model, log=lambda s: None)


@pytest.fixture(scope="module")
def frames() -> list[Frame]:
    return _frames()


def test_fused_model_reads_every_face_every_frame(frames):
    spy = SpyEngine(_engine(APPEARANCE_DIM))
    with StageChain(spy, 30.0) as chain:
        assert chain.appearance is not None  # switched on by the model
        with_face = 0
        for frame in frames:
            chain.update(frame)
            if chain.primary.found:
                with_face += 1
                read = chain.appearances[chain.primary.track_id]
                assert read.index == frame.index
                assert read.probs.sum() == pytest.approx(1.0, abs=1e-4)
    assert with_face >= N_FRAMES - 2  # the demo face is in view
    fed = [a for a in spy.seen if a is not None]
    assert len(fed) == len(spy.seen) >= with_face  # every encoder call had appearance
    assert all(a.shape[1] == APPEARANCE_DIM for a in fed)
    probs = np.concatenate([a[:, :APPEARANCE_CLASSES] for a in fed])
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-4)
    deltas = np.concatenate([a[:, APPEARANCE_CLASSES:] for a in fed])
    assert np.abs(deltas).max() > 0  # the baseline delta moves


def test_crops_are_cut_on_the_face_stage(frames):
    """The face thread's :meth:`track` cuts the crops: wiping the image after it (a ring
    slot reused) changes nothing downstream."""
    direct, ahead = [], []
    with StageChain(None, 30.0, appearance=True) as chain:
        for frame in frames[:20]:
            chain.update(frame)
            direct.append({i: a.probs for i, a in chain.appearances.items()})
    with StageChain(None, 30.0, appearance=True) as chain:
        for frame in _frames(20):
            tracked = chain.track(frame)
            frame.image[:] = 0  # the ring hands the slot to the next frame
            chain.update(tracked)
            ahead.append({i: a.probs for i, a in chain.appearances.items()})
    assert sum(map(len, direct)) >= 18
    assert [sorted(d) for d in direct] == [sorted(a) for a in ahead]
    for d, a in zip(direct, ahead):
        for track_id in d:
            np.testing.assert_allclose(d[track_id], a[track_id], atol=1e-6)


def test_flow_only_model_runs_no_appearance_stage_without_the_hold(frames):
    """A flow-only model reads no appearance; the stage runs only for the appearance hold
    (``TrackerConfig.appearance_hold``), and never reaches the encoder."""
    spy = SpyEngine(_engine(0))
    with StageChain(spy, 30.0, tracker_cfg=TrackerConfig(appearance_hold=False)) as chain:
        assert chain.appearance is None
        for frame in frames[:12]:
            chain.update(frame)
            assert chain.appearances == {}
    assert spy.seen and all(a is None for a in spy.seen)
    spy = SpyEngine(_engine(0))
    every = TrackerConfig().appearance_every
    assert every > 1
    with StageChain(spy, 30.0) as chain:  # the hold is on by default: every n-th frame read
        assert chain.appearance is not None
        read = []
        for frame in frames[:12]:
            chain.update(frame)
            read.append(bool(chain.appearances))
    assert read == [i % every == 0 for i in range(12)], read
    assert spy.seen and all(a is None for a in spy.seen)


def test_a_fused_model_cannot_run_without_its_stage():
    with pytest.raises(ValueError, match="fuses appearance"):
        StageChain(_engine(APPEARANCE_DIM), 30.0, appearance=False)
