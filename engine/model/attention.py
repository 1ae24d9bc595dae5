"""Causal attention: sliding-window self-attention, transformer block, segment attention & fusion.

Everything here is causal with a bounded span: position t sees positions
t-span+1 .. t only. Masks are precomputed buffers for the detector's static
window (no data-dependent control flow) so the modules
export to ONNX with the dynamo exporter; another length builds its mask on the fly.
"""
from __future__ import annotations

import math

import torch
from torch import nn


def band_mask(length: int, span: int) -> torch.Tensor:
    """(length, length) bool, True where query i may see key j: i - span < j <= i."""
    i = torch.arange(length).reshape(-1, 1)  # (T,) -> (T, 1)
    j = torch.arange(length).reshape(1, -1)  # (T,) -> (1, T)
    return (j <= i) & (j > i - span)


class _Banded(nn.Module):
    """Holds an additive attention bias (0 / -inf) for the static length, builds others."""

    def __init__(self, span: int, length: int) -> None:
        super().__init__()
        self.span = span
        self.register_buffer("bias", self._bias(length), persistent=False)

    def _bias(self, length: int) -> torch.Tensor:
        allowed = band_mask(length, self.span)
        return torch.zeros(length, length).masked_fill(~allowed, float("-inf"))

    def bias_for(self, length: int, like: torch.Tensor) -> torch.Tensor:
        if length == self.bias.shape[0]:  # static shape: resolved at trace time
            return self.bias
        return self._bias(length).to(like.device, like.dtype)


class CausalSelfAttention(_Banded):
    """Multi-head self-attention where position t sees positions t-span+1 .. t.

    Explicit q·k attention with a precomputed additive mask (no fused kernels),
    so it traces and exports the same way everywhere.
    """

    def __init__(self, channels: int, heads: int, span: int, length: int,
                 dropout: float = 0.0) -> None:
        super().__init__(span, length)
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) → (B, T, C)."""
        b, t, c = x.shape
        h, d = self.heads, c // self.heads
        qkv = self.qkv(x).reshape(b, t, 3, h, d)  # (B, T, 3C) -> (B, T, 3, H, D)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # -> 3 × (B, H, T, D)
        att = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, T, D) @ (B, H, D, T) -> (B, H, T, T)
        att = att + self.bias_for(t, att)  # masked keys -> -inf
        att = self.drop(att.softmax(dim=-1))
        y = att @ v  # (B, H, T, T) @ (B, H, T, D) -> (B, H, T, D)
        y = y.transpose(1, 2).reshape(b, t, c)  # (B, H, T, D) -> (B, T, H, D) -> (B, T, C)
        return self.drop(self.out(y))


class CausalMean(_Banded):
    """Mean over the last ``span`` positions (fewer at the start): (B, T, C) → (B, T, C)."""

    def __init__(self, span: int, length: int) -> None:
        super().__init__(span, length)
        allowed = band_mask(length, span).float()
        self.register_buffer("avg", allowed / allowed.sum(1, keepdim=True), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t == self.avg.shape[0]:
            avg = self.avg
        else:
            allowed = band_mask(t, self.span).to(x.device, x.dtype)
            avg = allowed / allowed.sum(1, keepdim=True)
        return avg @ x  # (T, T) @ (B, T, C) -> (B, T, C)


class TransformerBlock(nn.Module):
    """Pre-norm block: causal sliding-window attention + MLP, both residual."""

    def __init__(self, channels: int, heads: int, span: int, length: int,
                 mlp_ratio: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(channels)
        self.attn = CausalSelfAttention(channels, heads, span, length, dropout)
        self.ln2 = nn.LayerNorm(channels)
        self.mlp = nn.Sequential(nn.Linear(channels, mlp_ratio * channels), nn.GELU(),
                                 nn.Linear(mlp_ratio * channels, channels), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) → (B, T, C)."""
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class SegmentAttentionFusion(nn.Module):
    """FEDN's segment attention & fusion, made causal.

    Multi-head attention over the last ``span`` frames, average-pooled over the
    same causal segment into a global vector g_t; g_t is concatenated to each
    frame's feature and projected to per-channel attention weights that gate a
    projection of the same concatenation (residual). Looks back 2·(span-1) frames.
    """

    def __init__(self, channels: int, heads: int, span: int, length: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(channels)
        self.attn = CausalSelfAttention(channels, heads, span, length, dropout)
        self.pool = CausalMean(span, length)
        self.score = nn.Linear(2 * channels, channels)
        self.value = nn.Linear(2 * channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) → (B, T, C)."""
        g = self.pool(self.attn(self.ln(x)))  # (B, T, C): causal segment summary
        z = torch.cat([x, g], dim=-1)  # (B, T, C) ++ (B, T, C) -> (B, T, 2C)
        return x + torch.sigmoid(self.score(z)) * self.value(z)


__all__ = ["band_mask", "CausalSelfAttention", "CausalMean", "TransformerBlock",
           "SegmentAttentionFusion"]
