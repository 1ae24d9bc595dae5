"""FEDN made causal: per-frame encoder + temporal detector, and a reference streaming loop.

Streaming = encode each frame once into a feature ring, run the detector on the
last ``window`` features every ``hop`` frames. Because every output of the
detector looks back at most ``cfg.lookback`` frames (< window - hop), the points
in a hop's last ``hop`` frames come out the same as in one pass over the whole
video, provided frames before the stream start are "no face" in both
(:meth:`FEDN.forward` with ``pad``; the ring starts filled with ``no_face``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from engine.config import ModelConfig
from engine.decode import OUTPUT_KEYS, pyramid_points
from engine.model.encoder import FlowEncoder
from engine.model.head import ActiveHead, IntervalHead
from engine.model.neck import TemporalPyramid


class TemporalDetector(nn.Module):
    """Window of per-frame features → end-anchored interval outputs and active outputs.

    ``forward(feats)`` with feats (B, T, feat_dim), T divisible by 2**(levels-1)
    (T = cfg.window uses the precomputed masks; export with that shape) returns:

    * ``cls_logits`` (B, P, K) kind logits per pyramid point (sigmoid);
    * ``emo_logits`` (B, P, E) emotion logits per point (softmax);
    * ``reg`` (B, P, 2) frames back to onset and to offset, d_on ≥ d_off ≥ 0;
    * ``act_logits`` (B, T, K), ``act_emo_logits`` (B, T, E), ``act_since`` (B, T).

    P = Σ_l T / 2**l, points ordered as ``engine.decode.pyramid_points(T, levels)``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pyramid = TemporalPyramid(cfg)
        self.head = IntervalHead(cfg)
        self.active = ActiveHead(cfg)

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        if feats.dim() != 3 or feats.shape[1] % self.cfg.max_stride or \
                feats.shape[2] != self.cfg.feat_dim:
            raise ValueError(f"TemporalDetector: feats must be (B, T, {self.cfg.feat_dim}) with T "
                             f"a multiple of {self.cfg.max_stride}, got {tuple(feats.shape)}")
        levels = self.pyramid(feats)  # (B, T, F) -> [(B, T/2**l, C)]
        return {**self.head(levels), **self.active(levels)}

    def points(self, length: int | None = None) -> np.ndarray:
        """(P, 2) rows (frame, level) of the outputs' points; see ``pyramid_points``."""
        return pyramid_points(length or self.cfg.window, self.cfg.levels)


class DetectorOutputs(nn.Module):
    """The detector with its dict flattened to a tuple in ``OUTPUT_KEYS`` order (for ONNX export)."""

    def __init__(self, detector: TemporalDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.detector(feats)
        return tuple(out[k] for k in OUTPUT_KEYS)


class FEDN(nn.Module):
    """Encoder + detector over a clip of flow maps (training and the whole-video reference)."""

    def __init__(self, cfg: ModelConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or ModelConfig()
        self.encoder = FlowEncoder(self.cfg)
        self.detector = TemporalDetector(self.cfg)

    def encode(self, flow: torch.Tensor, valid: torch.Tensor,
               appearance: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 3, S, S), (B, T) [, (B, T, A)] → (B, T, feat_dim); the CNN runs on valid
        frames only."""
        b, t = valid.shape
        flat_flow = flow.reshape(b * t, *flow.shape[2:])  # (B, T, 3, S, S) -> (B·T, 3, S, S)
        flat_valid = valid.reshape(b * t).bool()  # (B, T) -> (B·T,)
        flat_app = (None if appearance is None
                    else appearance.reshape(b * t, -1))  # (B, T, A) -> (B·T, A)
        feats = self.encoder.no_face.reshape(1, -1).expand(b * t, -1)  # (F,) -> (B·T, F)
        idx = flat_valid.nonzero().squeeze(1)
        if idx.numel():
            feats = feats.index_copy(0, idx, self.encoder.embed(
                flat_flow[idx], None if flat_app is None else flat_app[idx]))
        return feats.reshape(b, t, -1)  # (B·T, F) -> (B, T, F)

    def forward(self, flow: torch.Tensor, valid: torch.Tensor, pad: int = 0,
                appearance: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Detector outputs for whole clips.

        Args:
            flow: (B, T, 3, S, S) flow maps.
            valid: (B, T) bool/float, 0 where no face.
            pad: prepend this many "no face" frames (the state of a fresh stream);
                output frame positions then start at -pad.
            appearance: (B, T, appearance_dim) for a model with appearance fusion.
        """
        feats = self.encode(flow, valid, appearance)  # (B, T, F)
        if pad:
            b = feats.shape[0]
            front = self.encoder.no_face.reshape(1, 1, -1).expand(b, pad, -1)  # -> (B, pad, F)
            feats = torch.cat([front, feats], dim=1)  # -> (B, pad + T, F)
        return self.detector(feats)
