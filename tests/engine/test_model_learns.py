"""Slow: the causal, end-anchored FEDN learns to spot and label intervals on a toy flow task.

Flow-like input: noise plus motion in a face region while an expression starts
and ends (as real k-apart flow is large only while the face moves, design §8);
the region and sign encode the emotion, amplitude and duration the kind.
Trained from scratch on fresh random windows, evaluated on held-out ones.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.decode import decode_window
from engine.model import FEDN, FEDNLoss, assign_targets

CFG = ModelConfig(window=128, hop=8, segment=4, attn_window=8, levels=3, channels=64,
                  feat_dim=64, heads=4, enc_channels=(8, 16, 32), enc_grid=2, dropout=0.1)
S = 16


def _windows(rng: np.random.Generator, n: int):
    flows = 0.15 * rng.standard_normal((n, CFG.window, 3, S, S)).astype(np.float32)
    gts = []
    for b in range(n):
        items, t = [], int(rng.integers(-20, 20))
        while True:
            t += int(rng.integers(10, 50))
            kind = int(rng.random() < 0.5)  # 0 micro (short, weak), 1 macro
            dur = int(rng.integers(5, 15)) if kind == 0 else int(rng.integers(20, 80))
            if t + dur >= CFG.window + 30:
                break
            amp = (0.8 if kind == 0 else 2.0) * (0.7 + 0.6 * rng.random())
            emo = int(rng.integers(0, 4))
            rows = (0, 8) if emo % 2 == 0 else (8, 16)
            sign = 1.0 if emo < 2 else -1.0
            on, off, rise = t, t + dur - 1, max(2, dur // 3)
            for f in range(max(on, 0), min(off + 1, CFG.window)):
                a = amp if f - on < rise else (-amp if f > off - rise else 0.1 * amp)
                flows[b, f, emo // 2, rows[0]:rows[1], 4:12] += sign * a
            items.append((on, off, kind, emo))
            t = off
        gts.append(items)
    return torch.from_numpy(flows), gts


@pytest.mark.slow
def test_fedn_learns_a_toy_spotting_task():
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rng = np.random.default_rng(0)
        model, loss_fn = FEDN(CFG), FEDNLoss(CFG)
        steps = 250
        opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps,
                                                    pct_start=0.1)
        for _ in range(steps):
            flow, gts = _windows(rng, 8)
            total, _ = loss_fn(model(flow, torch.ones(8, CFG.window)), assign_targets(gts, CFG))
            opt.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        model.eval()
        flow, gts = _windows(np.random.default_rng(123), 24)
        with torch.no_grad():
            out = model(flow, torch.ones(24, CFG.window))
    finally:
        torch.set_num_threads(before)
    tp = fp = fn = labels_ok = 0
    done = CFG.window - CFG.hop  # intervals ending later are not anchored yet
    for b in range(24):
        cands = decode_window({k: v[b].numpy() for k, v in out.items()}, CFG)
        truth = [(max(on, 0), off, k, e) for on, off, k, e in gts[b] if off < done]
        used: set[int] = set()
        for c in cands:
            best, hit = 0.0, -1
            for i, (on, off, _, _) in enumerate(truth):
                inter = max(0, min(off, c.offset_frame) - max(on, c.onset_frame) + 1)
                iou = inter / ((off - on + 1) + (c.offset_frame - c.onset_frame + 1) - inter)
                if i not in used and iou > best:
                    best, hit = iou, i
            if best >= 0.5:
                tp += 1
                used.add(hit)
                labels_ok += (CFG.kinds.index(c.kind), CFG.emotions.index(c.emotion)) == \
                    truth[hit][2:]
            elif c.anchor_frame < done:
                fp += 1
        fn += len(truth) - len(used)
    precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    f1 = 2 * precision * recall / max(precision + recall, 1e-9)
    print(f"toy spotting: P {precision:.3f} R {recall:.3f} F1 {f1:.3f}, labels right "
          f"{labels_ok}/{tp}")
    assert f1 >= 0.75, (precision, recall, tp, fp, fn)
    assert labels_ok >= 0.8 * tp
