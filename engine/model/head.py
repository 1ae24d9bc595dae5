"""Decoupled heads: end-anchored interval heads per pyramid level, and the per-frame active head."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from engine.config import ModelConfig


def _mlp(c: int, out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c, c), nn.GELU(), nn.Dropout(dropout), nn.Linear(c, out))


def _prior_bias(layer: nn.Linear, prob: float = 0.01) -> None:
    """Start the sigmoid at ``prob`` (RetinaNet / ActionFormer init: rare positives)."""
    nn.init.constant_(layer.bias, -math.log((1 - prob) / prob))


class IntervalHead(nn.Module):
    """Shared across levels; three decoupled branches per point.

    ``cls``: kind logits (sigmoid, one per kind); ``emo``: emotion logits (softmax);
    ``reg``: distances back to onset and to offset in frames, with
    ``d_onset >= d_offset >= 0`` by construction (offset distance + duration,
    each ReLU·scale·stride, a learned scale per level as in ActionFormer).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.cls = _mlp(c, len(cfg.kinds), cfg.dropout)
        self.emo = _mlp(c, len(cfg.emotions), cfg.dropout)
        self.reg = _mlp(c, 2, cfg.dropout)
        self.scale = nn.Parameter(torch.ones(cfg.levels))
        _prior_bias(self.cls[-1])

    def forward(self, levels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """[(B, T_l, C)] → dict of (B, P, ·) with P = Σ T_l, level 0 points first."""
        cls, emo, reg = [], [], []
        for level, x in enumerate(levels):
            cls.append(self.cls(x))  # (B, T_l, K)
            emo.append(self.emo(x))  # (B, T_l, E)
            r = F.relu(self.reg(x)) * (self.scale[level] * 2 ** level)  # (B, T_l, 2) frames
            d_off, dur = r.unbind(-1)  # (B, T_l, 2) -> 2 × (B, T_l)
            reg.append(torch.stack([d_off + dur, d_off], dim=-1))  # -> (B, T_l, 2): (d_on, d_off)
        return {"cls_logits": torch.cat(cls, 1), "emo_logits": torch.cat(emo, 1),
                "reg": torch.cat(reg, 1)}


def to_frames(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Causally spread a level's points over frames: (B, T/stride, C) → (B, T, C).

    Frame t takes the latest point whose frame ((j+1)·stride − 1) is ≤ t; frames
    before the first point get zeros.
    """
    if stride == 1:
        return x
    b, n, c = x.shape
    y = x.unsqueeze(2).expand(b, n, stride, c).reshape(b, n * stride, c)  # (B, n, C) -> (B, n·s, C)
    y = F.pad(y, (0, 0, stride - 1, 0))  # (B, n·s, C) -> (B, n·s + s-1, C): delay by s-1 frames
    return y[:, : n * stride]  # -> (B, T, C)


class ActiveHead(nn.Module):
    """Per frame: is an expression of each kind under way, its emotion, frames since onset.

    Reads every pyramid level spread causally back onto frames (summed), so a
    long expression is seen with the coarse levels' longer context.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.ln = nn.LayerNorm(c)
        self.act = _mlp(c, len(cfg.kinds), cfg.dropout)
        self.emo = _mlp(c, len(cfg.emotions), cfg.dropout)
        self.since = _mlp(c, 1, cfg.dropout)
        self.since_unit = float(cfg.range_base)
        _prior_bias(self.act[-1], 0.05)

    def forward(self, levels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """[(B, T_l, C)] → act_logits (B, T, K), act_emo_logits (B, T, E), act_since (B, T)."""
        x = levels[0]
        for level in range(1, len(levels)):
            x = x + to_frames(levels[level], 2 ** level)  # (B, T, C)
        x = self.ln(x)
        since = F.softplus(self.since(x)).squeeze(-1) * self.since_unit  # (B, T, 1) -> (B, T)
        return {"act_logits": self.act(x), "act_emo_logits": self.emo(x), "act_since": since}
