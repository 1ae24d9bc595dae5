"""The incremental detector: one hop of new frames in, the state the next hop needs carried along.

The full-window detector recomputes all ``window`` positions at every hop. Every
output is causal with a bounded span (``ModelConfig.lookback``), so a hop's
outputs need, besides its ``hop`` new features, only what each layer's causal
span still reaches back to:

* the segment fusion: the keys and values of its attention's last ``segment - 1``
  positions, and its last ``segment - 1`` attention outputs (the causal mean's inputs);
* every transformer block of every level: the keys and values of its last
  ``attn_window - 1`` positions (in that level's positions);
* the active head: the latest point of each coarser level (the frames before a
  level's first new point read it).

The stride-2 downsamples need nothing: a hop starts on a multiple of the
coarsest stride, so each pair lies inside one hop. All of it is one tensor
``state`` (B, rows, channels) per batch of streams, laid out by
:func:`state_layout`, that the step graph (``detector_step.onnx``) takes and
returns; the schedule keeps one (1, rows, C) per track and stacks the tracks
whose hop is due into one call (the batch ``B`` is dynamic).

Stepped hop by hop, a stream gets what one pass over the whole stream computes
(frames before the stream are "no face"): equal, within float rounding, to the
full-window detector at the positions a hop is responsible for (its last
``hop`` frames). A fresh stream's state is what "no face" frames leave behind:
:func:`initial_state` steps a zero state over :func:`warmup_hops` hops of them,
after which no zero is within any output's reach.

The step is the detector's arithmetic regrouped for a few positions at a time,
where the number of operations, not arithmetic, is the cost (each graph node
costs about a microsecond whatever its size): positions are rows of 2-D
tensors (B·n, C), batch-major, for every matrix product and norm; each
attention is one ONNX ``Attention`` node (opset 23: heads, band mask and
softmax in one kernel instead of six nodes and their reshapes; eager torch
computes the same per-head arithmetic itself); the weights are read
once, at construction, into fused matrices (the three branches of each head
as one hidden layer and one block-diagonal output layer; the fusion's score
and value as one; each downsample as one matrix over the pair; the active
head's spreading of the levels onto frames as one 0/1 matrix); the state is
split and joined once per step. Build a new one after changing the detector's
weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.config import ModelConfig
from engine.decode import OUTPUT_KEYS

#: Name of the step graph's state input, and of the updated state among its outputs.
STATE_INPUT, STATE_OUTPUT = "state", "next_state"
#: The step graph's outputs: the detector's (for the hop's frames), then the new state.
STEP_OUTPUTS: tuple[str, ...] = OUTPUT_KEYS + (STATE_OUTPUT,)
#: ONNX opset of the step graph: 23 has the ``Attention`` operator.
STEP_OPSET = 23


@dataclass(frozen=True)
class StatePart:
    """One cache inside the state tensor: rows ``row .. row + rows - 1`` of (B, rows, C).

    A part holds what its layer computed at the last step, oldest position first
    — the ``keep`` positions its span still reaches, after ``rows - keep`` that
    it no longer needs (the step returns whole concatenations; the next one
    skips the stale rows when it splits the state, so no step slices its caches:
    a piece of one Split costs less than a Slice node). Names: ``fusion.k`` /
    ``fusion.v`` (keys, values), ``fusion.mean`` (the fusion attention's outputs
    before its output projection, the causal mean's inputs),
    ``level{l}.block{i}.k`` / ``.v``, ``level{l}.last`` (that level's points: the
    last one is read).
    """

    name: str
    row: int
    rows: int
    keep: int


def state_layout(cfg: ModelConfig) -> tuple[StatePart, ...]:
    """The parts of the state tensor of ``cfg``'s detector (with its ``hop``), in row order."""
    sizes: list[tuple[str, int, int]] = []  # name, rows, keep
    n = cfg.hop
    if cfg.segment > 1:
        sizes += [(f"fusion.{p}", cfg.segment - 1 + n, cfg.segment - 1)
                  for p in ("k", "v", "mean")]
    if cfg.attn_window > 1:
        for level in range(cfg.levels):
            n_l = n // 2 ** level
            for i in range(cfg.blocks_per_level):
                sizes += [(f"level{level}.block{i}.{p}", cfg.attn_window - 1 + n_l,
                           cfg.attn_window - 1) for p in "kv"]
    sizes += [(f"level{level}.last", n // 2 ** level, 1) for level in range(1, cfg.levels)]
    parts, row = [], 0
    for name, rows, keep in sizes:
        parts.append(StatePart(name, row, rows, keep))
        row += rows
    return tuple(parts)


def state_shape(cfg: ModelConfig, batch: int = 1) -> tuple[int, int, int]:
    """(batch, rows, channels) of the state tensor of ``batch`` streams."""
    return (batch, sum(p.rows for p in state_layout(cfg)), cfg.channels)


def warmup_hops(cfg: ModelConfig) -> int:
    """Hops of "no face" after which a zero state has become the fresh-stream state.

    Each state entry is a function of frames within the reach of the coarsest
    output plus the longest cache, both < window: two windows of frames leave
    no trace of the zeros.
    """
    return math.ceil(2 * cfg.window / cfg.hop)


def _exporting() -> bool:
    return bool(torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting())


def _gelu(x: torch.Tensor) -> torch.Tensor:
    """Exact (erf) GELU, as ``nn.GELU``; exported in the form ONNX Runtime fuses into one node."""
    if _exporting():
        return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    return F.gelu(x)


def _softplus(x: torch.Tensor) -> torch.Tensor:
    """``F.softplus``; exported as the one ONNX Softplus node (torch's threshold-20 branch
    returns x where log(1 + e^x) already rounds to x in float32)."""
    if _exporting():
        return torch.onnx.ops.symbolic("Softplus", (x,), {}, dtype=x.dtype, shape=x.shape,
                                       version=1)
    return F.softplus(x)


def _band(n: int, span: int) -> torch.Tensor:
    """(n, span-1+n) bool: new query i (at key index span-1+i) sees keys i .. span-1+i."""
    i = torch.arange(n).reshape(-1, 1)  # (n,) -> (n, 1)
    j = torch.arange(span - 1 + n).reshape(1, -1)  # -> (1, span-1+n)
    return (j >= i) & (j <= i + span - 1)


def _append(cache: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """(B, span-1, C) cached positions ++ (B, n, C) new ones → (B, span-1+n, C) (no cache:
    span 1)."""
    return x if cache is None else torch.cat([cache, x], dim=1)


class StepAttention(nn.Module):
    """A ``CausalSelfAttention`` for ``n`` new positions given its last ``span - 1`` keys/values.

    The same per-head arithmetic as the full model, with the query's 1/sqrt(d)
    folded into its projection and the band mask of ``n`` queries over
    ``span - 1 + n`` keys precomputed; exported as one ONNX ``Attention`` node.
    With ``project`` the output projection and the caller's residual are one
    ``Gemm`` (``residual + y·Woᵀ``): the projection's bias moves into the values'
    (each query's weights sum to 1, so ``softmax·(v + δ) = softmax·v + δ``, and
    ``Wo·δ = bo``; the cached values carry δ too) when ``Wo`` solves for it to
    float32 precision, else it stays one ``Add``. ``project=False`` leaves the
    projection out (the caller folds it into what follows).
    """

    def __init__(self, attn: nn.Module, n: int, project: bool = True) -> None:
        super().__init__()
        c = attn.qkv.in_features
        self.span, self.heads, self.channels, self.n = attn.span, attn.heads, c, n
        self.project = project
        d = c // attn.heads
        with torch.no_grad():
            w, b = attn.qkv.weight.detach().clone(), attn.qkv.bias.detach().clone()
            w[:c] /= math.sqrt(d)  # (q / sqrt(d)) · k, as the full model's (q · k) / sqrt(d)
            b[:c] /= math.sqrt(d)
            b_out = None  # the output projection's bias where the values cannot carry it
            if project:
                wo, bo = attn.out.weight.detach().double(), attn.out.bias.detach().double()
                delta = torch.linalg.lstsq(wo, bo.reshape(-1, 1)).solution.reshape(-1)
                if float((wo @ delta - bo).abs().max()) <= 1e-7 * max(1.0, float(bo.abs().max())):
                    b[2 * c:] += delta.to(b.dtype)  # bo carried by the values
                else:
                    b_out = attn.out.bias.detach().clone()
                self.register_buffer("w_out_t", attn.out.weight.detach().t().contiguous(),
                                     persistent=False)  # (C_in, C_out): addmm's layout
            self.register_buffer("b_out", b_out, persistent=False)
            self.register_buffer("w_in", w, persistent=False)  # (3C, C): q | k | v
            self.register_buffer("b_in", b, persistent=False)
            allowed = _band(n, self.span)  # (n, m)
            self.register_buffer("bias", torch.zeros(allowed.shape).masked_fill(
                ~allowed, float("-inf")), persistent=False)

    def forward(self, x: torch.Tensor, k_cache: torch.Tensor | None,
                v_cache: torch.Tensor | None, residual: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B·n, C) new positions, (B, span-1, C) caches[, (B·n, C) residual] → with
        ``project``: residual + projected output (B·n, C), else the output (B, n, C); and
        all (B, span-1+n, C) keys / values."""
        c, h, n = self.channels, self.heads, self.n
        d = c // h
        qkv = F.linear(x, self.w_in, self.b_in).reshape(-1, n, 3 * c)  # (B·n, 3C) -> (B, n, 3C)
        q, k, v = qkv.split(c, dim=2)  # 3 × (B, n, C)
        k, v = _append(k_cache, k), _append(v_cache, v)  # (B, m, C), m = span-1+n
        mask = self.bias if n > 1 else None  # one new query sees every key
        if _exporting():  # one ONNX Attention node (opset 23): (B, n, C) out
            y = torch.onnx.ops.attention(q, k, v, mask, q_num_heads=h, kv_num_heads=h,
                                         scale=1.0)[0]
        else:
            b, m = k.shape[0], k.shape[1]
            att = q.reshape(b, n, h, d).transpose(1, 2) @ k.reshape(b, m, h, d).permute(0, 2, 3, 1)
            if mask is not None:  # (B, H, n, D) @ (B, H, D, m) -> (B, H, n, m)
                att = att + mask
            y = att.softmax(dim=-1) @ v.reshape(b, m, h, d).transpose(1, 2)  # -> (B, H, n, D)
            y = y.transpose(1, 2).reshape(-1, n, c)  # -> (B, n, H, D) -> (B, n, C)
        if not self.project:
            return y, k, v
        out = torch.addmm(residual, y.reshape(-1, c), self.w_out_t)  # (B, n, C) -> (B·n, C)
        return (out if self.b_out is None else out + self.b_out), k, v


def _fused_mlps(mlps: list[nn.Sequential]) -> tuple[torch.Tensor, ...]:
    """Branches ``Linear(C, C) → GELU → Linear(C, o_i)`` on one input as one hidden layer
    (ΣC wide) and one block-diagonal output layer: (w1, b1, w2, b2)."""
    with torch.no_grad():
        w1 = torch.cat([m[0].weight.detach() for m in mlps])
        b1 = torch.cat([m[0].bias.detach() for m in mlps])
        w2 = torch.block_diag(*[m[-1].weight.detach() for m in mlps])
        b2 = torch.cat([m[-1].bias.detach() for m in mlps])
    return w1.clone(), b1.clone(), w2.clone(), b2.clone()


def _spread(n: int, levels: int) -> torch.Tensor:
    """(n, n + Σ_l n/2**l) 0/1: the active head's sum of every level spread onto frames.

    Multiplies [level 0's n points; each coarser level's previous point, then its
    new points]; frame t takes level l's latest point at or before t.
    """
    cols = [torch.eye(n)]
    t = torch.arange(n).reshape(-1, 1)
    for level in range(1, levels):
        stride = 2 ** level
        idx = (t + 1) // stride  # 0: the previous point; j: new point j-1 (its frame ≤ t)
        cols.append((idx == torch.arange(n // stride + 1).reshape(1, -1)).float())
    return torch.cat(cols, dim=1)


class IncrementalDetector(nn.Module):
    """A ``TemporalDetector`` stepped one hop at a time (its weights read at construction).

    ``forward(feats, state)`` with feats (B, hop, feat_dim) — a hop's features
    of each of B streams, the frames before it a multiple of ``hop`` — and
    state (B, rows, C) (:func:`state_shape`) returns the detector's outputs
    for these ``hop`` frames: ``cls_logits`` / ``emo_logits`` / ``reg`` (B, P, ·)
    over ``engine.decode.pyramid_points(hop, levels)``, ``act_*`` (B, hop, ·);
    and ``next_state``. Each stream's rows are computed on their own (stream b
    of a batch gets what it gets alone); inference only (no dropout).
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        cfg = self.cfg = detector.cfg
        pyr, head, active = detector.pyramid, detector.head, detector.active
        self.layout = state_layout(cfg)
        if not self.layout:
            raise ValueError("IncrementalDetector: this config carries nothing from hop to hop "
                             "(levels=1, segment=1, attn_window=1); use the detector itself")
        c, n = cfg.channels, cfg.hop
        split = []  # (name or None for stale rows, rows) in state order; no empty pieces
        for p in self.layout:
            split += [(None, p.rows - p.keep)] if p.rows > p.keep else []
            split.append((p.name, p.keep))
        self.split_names = tuple(name for name, _ in split)
        self.split_sizes = tuple(rows for _, rows in split)
        # segment fusion
        self.embed = pyr.embed
        self.fusion_ln = pyr.fusion.ln
        self.fusion_attn = StepAttention(pyr.fusion.attn, n, project=False)
        self.mean_span = pyr.fusion.pool.span
        with torch.no_grad():
            self.register_buffer("mean", _band(n, self.mean_span).float() / self.mean_span,
                                 persistent=False)  # (n, span-1+n); each row sums to 1
            w = torch.cat([pyr.fusion.score.weight, pyr.fusion.value.weight]).detach()
            b = torch.cat([pyr.fusion.score.bias, pyr.fusion.value.bias]).detach()
            out = pyr.fusion.attn.out  # mean(y·Woᵀ + bo) = mean(y)·Woᵀ + bo: Wo folded in
            self.register_buffer("w_gate", torch.cat([w[:, :c], w[:, c:] @ out.weight], 1)
                                 .clone(), persistent=False)  # (2C, 2C): score | value
            self.register_buffer("b_gate", (b + w[:, c:] @ out.bias).clone(), persistent=False)
        # levels: downsample (l ≥ 1) as one (C, 2C) matrix over each pair, then the blocks
        self.downs, self.blocks, self.norms = nn.ModuleList(), nn.ModuleList(), pyr.norms
        for level in range(cfg.levels):
            down = nn.Module()
            if level:
                conv = pyr.down[level].conv
                with torch.no_grad():  # (C_out, C_in, 2) -> (C_out, 2·C_in): [x_2j | x_2j+1]
                    down.register_buffer("w", conv.weight.detach().permute(0, 2, 1)
                                         .reshape(c, 2 * c).clone(), persistent=False)
                    down.register_buffer("b", conv.bias.detach().clone(), persistent=False)
                down.ln = pyr.down[level].ln
            self.downs.append(down)
            steps = nn.ModuleList()
            for block in pyr.blocks[level]:
                s = nn.Module()
                s.ln1, s.ln2, s.fc1, s.fc2 = block.ln1, block.ln2, block.mlp[0], block.mlp[2]
                s.attn = StepAttention(block.attn, n // 2 ** level)
                steps.append(s)
            self.blocks.append(steps)
        # interval head: cls | emo | reg branches fused; reg's per-point unit = scale·stride
        self.head_dims = (len(cfg.kinds), len(cfg.emotions), 2)
        for name, t in zip(("h_w1", "h_b1", "h_w2", "h_b2"),
                           _fused_mlps([head.cls, head.emo, head.reg])):
            self.register_buffer(name, t, persistent=False)
        with torch.no_grad():
            unit = head.scale.detach() * 2.0 ** torch.arange(cfg.levels)  # (L,)
            self.register_buffer("unit", torch.cat([unit[lv].expand(n // 2 ** lv) for lv in
                                                    range(cfg.levels)]).reshape(-1, 1).clone(),
                                 persistent=False)  # (P, 1)
            # relu'd (d_off, dur) -> (d_on, d_off) = (d_off + dur, d_off)
            self.register_buffer("to_on_off", torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
                                 persistent=False)
            # active head
            self.register_buffer("spread", _spread(n, cfg.levels), persistent=False)
        self.act_ln = active.ln
        self.act_dims = (len(cfg.kinds), len(cfg.emotions), 1)
        for name, t in zip(("a_w1", "a_b1", "a_w2", "a_b2"),
                           _fused_mlps([active.act, active.emo, active.since])):
            self.register_buffer(name, t, persistent=False)
        self.since_unit = active.since_unit

    def forward(self, feats: torch.Tensor, state: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        n, c = cfg.hop, cfg.channels
        rows = state_shape(cfg)[1]
        if feats.dim() != 3 or tuple(feats.shape[1:]) != (n, cfg.feat_dim):
            raise ValueError(f"IncrementalDetector: feats must be (B, hop={n}, "
                             f"{cfg.feat_dim}), got {tuple(feats.shape)}")
        if state.dim() != 3 or tuple(state.shape[1:]) != (rows, c) \
                or state.shape[0] != feats.shape[0]:
            raise ValueError(f"IncrementalDetector: state must be (B={feats.shape[0]}, {rows}, "
                             f"{c}), got {tuple(state.shape)}")
        parts = dict(zip(self.split_names, state.split(self.split_sizes, dim=1)))  # (B, ·, C)
        new: dict[str, torch.Tensor] = {}  # part name -> what this step leaves (B, rows, C)

        def attend(name: str, attn: StepAttention, x: torch.Tensor,
                   residual: torch.Tensor | None = None) -> torch.Tensor:
            y, k, v = attn(x, parts.get(f"{name}.k"), parts.get(f"{name}.v"), residual)
            if attn.span > 1:
                new[f"{name}.k"], new[f"{name}.v"] = k, v
            return y

        # segment fusion: attention, causal mean of its (unprojected) outputs, gated residual
        x = self.embed(feats.reshape(-1, cfg.feat_dim))  # (B, n, F) -> (B·n, C)
        a = attend("fusion", self.fusion_attn, self.fusion_ln(x))  # (B, n, C)
        if self.mean_span > 1:
            a = new["fusion.mean"] = _append(parts["fusion.mean"], a)  # (B, span-1+n, C)
        g = (self.mean @ a).reshape(-1, c)  # (n, m) @ (B, m, C) -> (B, n, C) -> (B·n, C)
        gate, value = F.linear(torch.cat([x, g], dim=1), self.w_gate, self.b_gate).split(c, 1)
        x = x + torch.sigmoid(gate) * value
        # pyramid; each attention's residual is its output projection's Gemm
        levels = []  # (B, n_l, C) per level
        for level in range(cfg.levels):
            if level:  # (B·n_l-1, C) -> pairs (B·n_l, 2C) -> (B·n_l, C); n_l-1 is even
                down = self.downs[level]
                x = down.ln(F.linear(x.reshape(-1, 2 * c), down.w, down.b))
            for i, blk in enumerate(self.blocks[level]):
                x = attend(f"level{level}.block{i}", blk.attn, blk.ln1(x), x)
                x = x + blk.fc2(_gelu(blk.fc1(blk.ln2(x))))
            levels.append(self.norms[level](x).reshape(-1, n // 2 ** level, c))
        # interval head, over all points of each stream at once
        pts = torch.cat(levels, dim=1).reshape(-1, c)  # (B, P, C) -> (B·P, C)
        hid = _gelu(F.linear(pts, self.h_w1, self.h_b1))  # -> (B·P, ΣC)
        cls, emo, reg = F.linear(hid, self.h_w2, self.h_b2).reshape(
            -1, self.unit.shape[0], sum(self.head_dims)).split(self.head_dims, dim=-1)
        # (B·P, ·) -> (B, P, ·)
        reg = (F.relu(reg) * self.unit) @ self.to_on_off.t()  # (B, P, 2): (d_on, d_off)
        # active head: every level spread onto the frames, summed
        seq = [levels[0]]
        for level in range(1, cfg.levels):
            seq += [parts[f"level{level}.last"], levels[level]]
            new[f"level{level}.last"] = levels[level]
        x = (self.spread @ torch.cat(seq, dim=1)).reshape(-1, c)  # (n,·) @ (B,·,C) -> (B·n, C)
        hid = _gelu(F.linear(self.act_ln(x), self.a_w1, self.a_b1))
        act, act_emo, since = F.linear(hid, self.a_w2, self.a_b2).reshape(
            -1, n, sum(self.act_dims)).split(self.act_dims, dim=-1)  # (B·n, ·) -> (B, n, ·)
        out = {"cls_logits": cls, "emo_logits": emo, "reg": reg, "act_logits": act,
               "act_emo_logits": act_emo,
               "act_since": _softplus(since).reshape(-1, n) * self.since_unit}
        out[STATE_OUTPUT] = torch.cat([new[p.name] for p in self.layout], dim=1)  # (B, rows, C)
        return out

    @torch.no_grad()
    def initial_state(self, no_face: torch.Tensor) -> torch.Tensor:
        """(1, rows, C): the state of a fresh stream; ``no_face`` is the (feat_dim,) feature.
        (B streams: the batch of B copies.)"""
        def step(f: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
            out = self(torch.from_numpy(f), torch.from_numpy(s))
            return {STATE_OUTPUT: out[STATE_OUTPUT].numpy()}
        state, _ = initial_state(self.cfg, no_face.detach().cpu().numpy(), step)
        return torch.from_numpy(state)


def initial_state(cfg: ModelConfig, no_face: np.ndarray,
                  step: Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
                  ) -> tuple[np.ndarray, float]:
    """A fresh stream's state through any backend's step, and how far it is from a fixed point.

    Args:
        cfg: the model's config.
        no_face: (feat_dim,) the "no face" feature (what frames before the stream are).
        step: (features (1, hop, F), state) → outputs including ``next_state``.

    Returns:
        state (1, rows, C) float32, and the max |change| one more "no face"
        hop makes to it (0 up to rounding: the zeros are flushed out).
    """
    feats = np.broadcast_to(np.asarray(no_face, np.float32).reshape(1, 1, -1),
                            (1, cfg.hop, cfg.feat_dim)).copy()
    state = np.zeros(state_shape(cfg), np.float32)
    for _ in range(warmup_hops(cfg)):
        state = step(feats, state)[STATE_OUTPUT]
    again = step(feats, state)[STATE_OUTPUT]
    return np.ascontiguousarray(state, np.float32), float(np.abs(again - state).max())


__all__ = ["IncrementalDetector", "StepAttention", "StatePart", "state_layout", "state_shape",
           "warmup_hops", "initial_state", "STATE_INPUT", "STATE_OUTPUT", "STEP_OUTPUTS",
           "STEP_OPSET"]
