"""Temporal pyramid: input projection, segment fusion, causal stride-2 levels of local attention."""
from __future__ import annotations

import torch
from torch import nn

from engine.config import ModelConfig
from engine.model.attention import SegmentAttentionFusion, TransformerBlock


class CausalDownsample(nn.Module):
    """Stride-2 conv over positions (2j, 2j+1) → j: causal, since j sits at the later one."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, kernel_size=2, stride=2)
        self.ln = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) → (B, T/2, C)."""
        y = self.conv(x.transpose(1, 2))  # (B, T, C) -> (B, C, T) -> (B, C, T/2)
        return self.ln(y.transpose(1, 2))  # (B, C, T/2) -> (B, T/2, C)


class TemporalPyramid(nn.Module):
    """Per-frame features → ``cfg.levels`` feature maps with strides 1, 2, 4, ...

    Level 0: segment attention & fusion, then sliding-window blocks. Each further
    level: causal stride-2 downsample, then blocks with the same span in its own
    positions (so the span in frames doubles per level). See ``ModelConfig.lookback``.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.embed = nn.Sequential(nn.Linear(cfg.feat_dim, c), nn.LayerNorm(c))
        self.fusion = SegmentAttentionFusion(c, cfg.heads, cfg.segment, cfg.window, cfg.dropout)
        self.down = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self.norms = nn.ModuleList()
        for level in range(cfg.levels):
            length = cfg.window // 2 ** level
            self.down.append(CausalDownsample(c) if level else nn.Identity())
            self.blocks.append(nn.Sequential(*[
                TransformerBlock(c, cfg.heads, cfg.attn_window, length, cfg.mlp_ratio, cfg.dropout)
                for _ in range(cfg.blocks_per_level)]))
            self.norms.append(nn.LayerNorm(c))

    def forward(self, feats: torch.Tensor) -> list[torch.Tensor]:
        """(B, T, feat_dim) → [(B, T / 2**l, C) for l in levels]; T divisible by 2**(levels-1)."""
        x = self.fusion(self.embed(feats))  # (B, T, F) -> (B, T, C)
        out = []
        for down, blocks, norm in zip(self.down, self.blocks, self.norms):
            x = blocks(down(x))  # (B, T_l-1, C) -> (B, T_l, C)
            out.append(norm(x))
        return out
