"""Checkpoints of the FEDN model: the shipped weights and how any checkpoint is loaded.

Used by :mod:`engine.runtime` (``Engine.load``) and :mod:`engine.export` (the export
command), which therefore do not import each other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import torch

from engine.backends import BackendError
from engine.config import ModelConfig, override
from engine.model import FEDN

#: Shipped weights, ONNX files and model card.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: The shipped FEDN checkpoint's file name (other ``.pt`` files there are other models).
SHIPPED_NAME = "fedn_default.pt"


def shipped_weights() -> Path | None:
    """The trained checkpoint shipped in engine/weights/, or None when there is none yet."""
    path = WEIGHTS_DIR / SHIPPED_NAME
    return path if path.is_file() else None


def load_model(weights: str | Path | None = None, log: Callable[[str], None] = print):
    """The FEDN model from a checkpoint (default: the shipped one in engine/weights/).

    Accepts a raw ``state_dict`` or a dict with ``"model"`` / ``"state_dict"``
    and optionally ``"config"`` (ModelConfig fields). With no checkpoint shipped
    yet, returns a seeded untrained model and says so.
    """
    if weights is None:
        weights = shipped_weights()
        if weights is None:
            log("engine: no shipped weights in engine/weights/ — using an untrained model "
                "(outputs are meaningless; restore engine/weights/fedn_default.pt with "
                "`git checkout engine/weights`, or train one with `python -m training.train` "
                "and load it with Engine.load(weights=PATH))")
            torch.manual_seed(0)
            return FEDN(ModelConfig()).eval()
    path = Path(weights)
    if not path.is_file():
        raise BackendError(f"weights file {path} not found; give the path of an existing "
                           "checkpoint, or none to use the shipped one")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise BackendError(f"cannot read weights {path} ({type(exc).__name__}: {first}); the "
                           "file is truncated or not a torch checkpoint — re-download or "
                           "retrain it") from None
    state = ckpt
    cfg = ModelConfig()
    if isinstance(ckpt, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(ckpt.get(key), Mapping):
                state = ckpt[key]
                break
        if isinstance(ckpt.get("config"), Mapping):
            stored = dict(ckpt["config"])
            # the defaults are the shipped model, input gain on; a checkpoint whose config
            # has no gain_ref predates the gain and was trained without it
            stored.setdefault("gain_ref", 0.0)
            cfg = override(cfg, stored)
    model = FEDN(cfg)
    try:
        model.load_state_dict(state)
    except Exception as exc:
        raise BackendError(f"weights {path} do not fit the FEDN model of this config "
                           f"({str(exc).splitlines()[0][:160]}); use a checkpoint saved by "
                           "training.train") from None
    return model.eval()
