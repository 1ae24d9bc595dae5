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
from engine.gain import FlowGain
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

    def encode(self, flow: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, S, S), (B, T) → (B, T, feat_dim); runs the CNN on valid frames only."""
        b, t = valid.shape
        flat_flow = flow.reshape(b * t, *flow.shape[2:])  # (B, T, 3, S, S) -> (B·T, 3, S, S)
        flat_valid = valid.reshape(b * t).bool()  # (B, T) -> (B·T,)
        feats = self.encoder.no_face.reshape(1, -1).expand(b * t, -1)  # (F,) -> (B·T, F)
        idx = flat_valid.nonzero().squeeze(1)
        if idx.numel():
            feats = feats.index_copy(0, idx, self.encoder.embed(flat_flow[idx]))
        return feats.reshape(b, t, -1)  # (B·T, F) -> (B, T, F)

    def forward(self, flow: torch.Tensor, valid: torch.Tensor,
                pad: int = 0) -> dict[str, torch.Tensor]:
        """Detector outputs for whole clips.

        Args:
            flow: (B, T, 3, S, S) flow maps.
            valid: (B, T) bool/float, 0 where no face.
            pad: prepend this many "no face" frames (the state of a fresh stream);
                output frame positions then start at -pad.
        """
        feats = self.encode(flow, valid)  # (B, T, F)
        if pad:
            b = feats.shape[0]
            front = self.encoder.no_face.reshape(1, 1, -1).expand(b, pad, -1)  # -> (B, pad, F)
            feats = torch.cat([front, feats], dim=1)  # -> (B, pad + T, F)
        return self.detector(feats)


class StreamingFEDN:
    """Reference streaming loop in torch: one frame in, the detector every ``hop`` frames.

    ``push(flow, valid)`` encodes the frame into the ring; when the frame ends a
    hop (``(index + 1) % hop == 0``) it runs the detector on the ring and returns
    ``(outputs, frame_offset)``: outputs of the window (numpy, batch 1) and the
    stream index of window position 0. The hop is responsible for window positions
    ``window - hop .. window - 1``. Otherwise returns None.
    """

    def __init__(self, model: FEDN) -> None:
        self.model = model.eval()
        self.cfg = model.cfg
        with torch.no_grad():
            self.ring = model.encoder.padding(self.cfg.window)  # (window, F): no face yet
        self.count = 0
        self.flow_shape: tuple[int, ...] = ()
        self.gain = FlowGain(self.cfg)  # input gain, as engine.streaming applies it

    @torch.no_grad()
    def push(self, flow: np.ndarray | torch.Tensor,
             valid: bool) -> tuple[dict[str, np.ndarray], int] | None:
        flow = self.gain.apply(np.asarray(flow, dtype=np.float32), valid)
        flow_t = torch.as_tensor(flow).unsqueeze(0)  # (3, S, S) -> (1, 3, S, S)
        self.flow_shape = tuple(flow_t.shape[1:])
        feat = self.model.encoder(flow_t, torch.tensor([float(valid)]))  # (1, F)
        self.ring = torch.cat([self.ring[1:], feat], dim=0)  # (window, F), oldest dropped
        self.count += 1
        if self.count % self.cfg.hop:
            return None
        out = self.model.detector(self.ring.unsqueeze(0))  # (window, F) -> (1, window, F)
        return ({k: out[k].numpy() for k in OUTPUT_KEYS}, self.count - self.cfg.window)

    def flush(self) -> tuple[dict[str, np.ndarray], int, int] | None:
        """End of stream: complete the last partial hop with "no face" frames.

        Returns ``(outputs, frame_offset, n_real)`` where only the first ``n_real``
        of the hop's ``hop`` responsible positions are real frames (outputs there
        are exact: the padding lies in their future), or None if the stream ended
        on a hop boundary. Call it once, at the end: ``count`` still says how many
        real frames were pushed, but the ring now holds the padding.
        """
        n_real = self.count % self.cfg.hop
        if n_real == 0:
            return None
        count, flow = self.count, np.zeros(self.flow_shape, np.float32)
        res = None
        while res is None:
            res = self.push(flow, False)
        self.count = count
        return res[0], res[1], n_real
