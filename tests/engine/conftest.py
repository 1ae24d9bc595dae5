"""Shared fixtures of the engine tests."""
from __future__ import annotations

import pytest
import torch

from engine.config import ModelConfig
from engine.model import FEDN

#: A tiny detector for export / backend / runtime tests (fast to export and run).
TINY = ModelConfig(window=32, hop=8, segment=4, attn_window=4, levels=2, channels=32, heads=2,
                   feat_dim=16, enc_channels=(8, 16), enc_grid=2, range_base=8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: on a shared 2-core machine, 2 threads can be ~10× slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def seeded_fedn(cfg: ModelConfig = TINY) -> FEDN:
    """An untrained FEDN (seed 0, eval mode) with a non-trivial no-face vector."""
    torch.manual_seed(0)
    m = FEDN(cfg).eval()
    with torch.no_grad():
        m.encoder.no_face.normal_()
    return m


def probe_with(**ok: bool):
    """A backend probe for ``select_backend``: the named backends are here, the rest absent."""
    return lambda name: (ok.get(name, False), f"{name} {'here' if ok.get(name) else 'absent'}")


@pytest.fixture(scope="module")
def tiny_model() -> FEDN:
    """An untrained :data:`TINY` FEDN with a non-trivial no-face vector."""
    return seeded_fedn(TINY)
