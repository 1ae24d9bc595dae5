"""Per-frame flow encoder: a small CNN over the (u, v, strain) flow map of the aligned face.

Each frame is encoded once; the streaming engine keeps a ring of these features and
the temporal detector reads the last ``window`` of them.
"""
from __future__ import annotations

import torch
from torch import nn

from engine.config import ModelConfig


class FlowEncoder(nn.Module):
    """3×S×S flow map → ``feat_dim`` vector; invalid frames → a learned "no face" embedding.

    A patchify stem (``enc_stem``×``enc_stem`` conv, same stride: flow maps are
    smooth, and this is ~4× cheaper to train than a stride-2 3×3 stem), then a
    stride-2 3×3 conv per further ``enc_channels`` entry (each conv + BN + ReLU);
    the map is average-pooled to ``enc_grid × enc_grid`` (keeps *where* on the face
    the motion is) and flattened into a linear layer.

    With ``cfg.appearance_dim`` > 0 the feature of a valid frame also sees the
    real-face expression classifier's reading of that face (class probabilities ‖
    their delta from the track's resting baseline, ``stream/appearance.py``) through a
    small MLP whose output is added to the flow feature: flow sees motion (onsets,
    releases), appearance sees the held expression between them.
    """

    def __init__(self, cfg: ModelConfig, in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(cfg.enc_channels):
            conv = (nn.Conv2d(c_in, c_out, cfg.enc_stem, stride=cfg.enc_stem, bias=False) if i == 0
                    else nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False))
            layers += [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(cfg.enc_grid)
        self.proj = nn.Linear(c_in * cfg.enc_grid ** 2, cfg.feat_dim)
        self.no_face = nn.Parameter(torch.zeros(cfg.feat_dim))  # learned "no face" embedding
        self.appearance_dim = cfg.appearance_dim
        self.appearance = (nn.Sequential(nn.Linear(cfg.appearance_dim, cfg.appearance_hidden),
                                         nn.GELU(),
                                         nn.Linear(cfg.appearance_hidden, cfg.feat_dim))
                           if cfg.appearance_dim else None)
        self.in_channels = in_channels
        self.feat_dim = cfg.feat_dim

    def _check_appearance(self, flow: torch.Tensor, appearance: torch.Tensor | None) -> None:
        if self.appearance is None:
            if appearance is not None:
                raise ValueError("FlowEncoder: this model takes no appearance input "
                                 "(ModelConfig.appearance_dim = 0); pass appearance=None")
            return
        if appearance is None or tuple(appearance.shape) != (flow.shape[0], self.appearance_dim):
            got = None if appearance is None else tuple(appearance.shape)
            raise ValueError(f"FlowEncoder: appearance must be (N={flow.shape[0]}, "
                             f"{self.appearance_dim}) for this model, got {got}")

    def embed(self, flow: torch.Tensor, appearance: torch.Tensor | None = None) -> torch.Tensor:
        """Encode valid frames only: (N, 3, S, S) flow [+ (N, A) appearance] → (N, feat_dim)."""
        self._check_appearance(flow, appearance)
        x = self.convs(flow.float())  # (N, 3, S, S) -> (N, C, h, w), h = S / stem / 2**(n-1)
        x = self.pool(x)  # (N, C, h, w) -> (N, C, g, g)
        out = self.proj(x.flatten(1))  # (N, C, g, g) -> (N, C*g*g) -> (N, F)
        if self.appearance is not None:
            out = out + self.appearance(appearance.float())  # (N, A) -> (N, F)
        return out

    def forward(self, flow: torch.Tensor, valid: torch.Tensor,
                appearance: torch.Tensor | None = None) -> torch.Tensor:
        """Encode frames.

        Args:
            flow: (N, 3, S, S) flow maps (float16 or float32; u, v in pixels, strain).
            valid: (N,) bool or float; 0 where no face was found.
            appearance: (N, appearance_dim) when the model has appearance fusion, else None.

        Returns:
            (N, feat_dim) float32 features; rows with ``valid == 0`` equal ``no_face``
            exactly (no data-dependent branching, so it exports to ONNX).
        """
        v = valid.to(torch.float32).reshape(-1, 1)  # (N,) -> (N, 1)
        return v * self.embed(flow, appearance) + (1.0 - v) * self.no_face  # (N, F)

    def padding(self, n: int) -> torch.Tensor:
        """(n, feat_dim) features of frames before the stream starts (= no face)."""
        return self.no_face.detach().reshape(1, -1).expand(n, -1).clone()  # (F,) -> (n, F)
