"""Train FEDN on cached flow features: ``python -m training.train --config CONFIG.yaml``.

Two stages, both on the features of the live path (``training.features``):

A. **Encoder** (``encoder_steps``): the flow CNN plus a throw-away causal
   temporal conv learn the per-frame active targets (kind under way + its
   emotion) on short balanced clips, with flip / amplitude augmentation.
B. **Detector** (``epochs`` × ``steps_per_epoch``): the encoder is frozen, every
   frame is encoded once (cached in memory), and the temporal detector learns
   the joint FEDN objective (focal kind + DIoU + emotion + active heads) on
   windows sampled balanced between events and background. Each epoch is
   validated with the MEGC metrics (decoded offline, score threshold swept);
   the best epoch by validation overall F1 is kept, with its threshold written
   into the checkpoint's config (``score_thresh``), which serving uses.

AdamW with linear warm-up and cosine decay in each stage; seeds; a CSV log,
a loss/F1 figure, resume from ``<out>/last.pt`` (``--resume``).
Running the encoder once per frame and training the detector on cached
features is what keeps a full run within ~30 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from engine.config import ModelConfig, StreamConfig, override
from engine.gain import video_gains
from engine.model.targets import Targets
from training.features import VideoFeatures, load_split, summarize
from training.prefetch import prefetch
from training.run_log import CsvLog, plot_curves
from training.sampling import (Window, WindowSampler, window_appearance, window_flow,
                               window_slice, window_targets)


@dataclass(frozen=True)
class TrainConfig:
    """Data, schedule and output settings of one training run (YAML ``data`` + ``train``)."""

    train: str | tuple[str, ...] = "data/synthme/train"  # SynthME mp4 folder(s), training ids
    val: str | tuple[str, ...] = "data/synthme/val"  # ... validation ids (selection, thresholds)
    cache: str = "data/features"  # feature cache root
    workers: int = 2  # feature-extraction processes; threads for input gains and validation
    limit: int | None = None  # use only the first N videos of each split (quick runs, tests)
    out: str = "data/runs/default"  # run folder: checkpoints, log.csv, curves.png
    seed: int = 0  # torch / numpy / sampler seed
    threads: int = 1  # torch CPU threads (1 is fastest on 2 shared cores: no spin-waiting)
    # stage A: encoder
    encoder_steps: int = 300  # optimisation steps
    encoder_clip: int = 32  # clip length, frames (divisible by the coarsest stride)
    encoder_batch: int = 16  # clips per step
    encoder_lr: float = 2e-3  # peak learning rate
    flip: bool = True  # random horizontal flip of flow maps (u negated)
    amp_jitter: float = 0.3  # flow amplitudes scaled by exp(U(-a, a))
    flow_noise: float = 0.0  # Gaussian noise of σ ~ U(0, this) px added to u, v (noisier faces)
    # stage B: detector
    epochs: int = 8  # validation after each
    steps_per_epoch: int = 60  # optimisation steps per epoch
    batch: int = 16  # windows per step
    lr: float = 2e-3  # peak learning rate
    weight_decay: float = 0.05  # AdamW weight decay (both stages)
    warmup: int = 40  # linear warm-up steps (each stage)
    pos_frac: float = 0.5  # fraction of windows placed on an event offset
    micro_frac: float | None = 0.4  # of those, the fraction on micro-expressions (None: natural)
    # stage C: end to end (encoder + detector on flow windows, augmented)
    e2e_epochs: int = 0  # 0 skips the stage
    e2e_steps_per_epoch: int = 100  # optimisation steps per epoch
    e2e_batch: int = 8  # windows per step
    e2e_lr: float = 1e-3  # peak learning rate
    thresholds: tuple[float, ...] = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7)
    progress: bool = True  # tqdm bars


def load_config(path: str | Path) -> tuple[ModelConfig, TrainConfig]:
    """YAML with optional ``model`` (ModelConfig overrides) and ``data``/``train`` sections."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config file not found: {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: top level must be a mapping with model/data/train sections")
    unknown = sorted(set(raw) - {"model", "data", "train"})
    if unknown:
        raise ValueError(f"{path}: unknown sections {unknown}; known: model, data, train")
    model = override(ModelConfig(), raw.get("model") or {})
    values = {**(raw.get("data") or {}), **(raw.get("train") or {})}
    known = {f.name for f in fields(TrainConfig)}
    bad = sorted(set(values) - known)
    if bad:
        raise ValueError(f"{path}: unknown data/train keys {bad}; known: {sorted(known)}")
    for key in ("thresholds", "train", "val"):
        if isinstance(values.get(key), list):
            values[key] = tuple(values[key])
    return model, TrainConfig(**values)


def load_folders(folders: str | tuple[str, ...], tc: TrainConfig) -> list[VideoFeatures]:
    """Features + labels of every video of one SynthME folder or several, in order."""
    roots = [folders] if isinstance(folders, str) else list(folders)
    return [v for root in roots for v in load_split(
        root, tc.cache, StreamConfig(), tc.workers, tc.progress, tc.limit)]


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(warmup: int, total: int):
    """Linear warm-up then cosine decay to 5 % of the peak."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        p = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p))
    return f


class ClipHead(nn.Module):
    """Stage-A helper: causal temporal conv over frame features → active kind + emotion logits."""

    def __init__(self, cfg: ModelConfig, width: int = 64, kernel: int = 9) -> None:
        super().__init__()
        self.pad = kernel - 1
        self.c1 = nn.Conv1d(cfg.feat_dim, width, kernel)
        self.c2 = nn.Conv1d(width, width, kernel)
        self.out = nn.Linear(width, len(cfg.kinds) + len(cfg.emotions))
        self.k = len(cfg.kinds)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = feats.transpose(1, 2)  # (B, T, F) -> (B, F, T)
        x = F.gelu(self.c1(F.pad(x, (self.pad, 0))))  # causal: left padding only
        x = F.gelu(self.c2(F.pad(x, (self.pad, 0))))
        y = self.out(x.transpose(1, 2))  # (B, W, T) -> (B, T, W) -> (B, T, K+E)
        return y[..., :self.k], y[..., self.k:]


def augment(flow: np.ndarray, rng: np.random.Generator, tc: TrainConfig) -> np.ndarray:
    """Random flip (u negated, maps mirrored) and amplitude scaling of (L, 3, S, S) flow."""
    if tc.flip and rng.random() < 0.5:
        flow = flow[..., ::-1].copy()
        flow[:, 0] *= -1
    if tc.amp_jitter > 0:
        flow = flow * np.float32(np.exp(rng.uniform(-tc.amp_jitter, tc.amp_jitter)))
    if tc.flow_noise > 0:
        sigma = np.float32(rng.uniform(0, tc.flow_noise))
        flow = flow.copy()
        flow[:, :2] += sigma * rng.standard_normal(flow[:, :2].shape, np.float32)
    return flow


def evaluate_val(model, items: Sequence[VideoFeatures], gains: Sequence[np.ndarray | None],
                 thresholds: Sequence[float], workers: int = 1) -> dict:
    """Offline MEGC spotting on ``items`` at each threshold; the best by overall F1.

    ``gains``: each video's ``video_gains`` (None: no gain); ``workers``: threads over videos.
    """
    from stream import metrics
    from training.infer import ground_truth, predict, video_outputs

    outputs = video_outputs(model, items, gains=gains, workers=workers)
    gt = ground_truth(items)
    best: dict = {"f1": -1.0}
    for th in thresholds:
        pred = predict(model, items, th, outputs)
        res = metrics.megc_spotting(gt, pred)
        f1 = res["overall"].f1
        if f1 > best["f1"]:
            best = {"f1": f1, "thresh": float(th), "micro_f1": res["micro"].f1,
                    "macro_f1": res["macro"].f1, "n_pred": len(pred)}
    return best


def save(path: Path, model, cfg: ModelConfig, extra: dict | None = None) -> None:
    config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    torch.save({"model": model.state_dict(), "config": config, **(extra or {})}, path)


def run(cfg: ModelConfig, tc: TrainConfig, resume: bool = False,
        train_items: Sequence[VideoFeatures] | None = None,
        val_items: Sequence[VideoFeatures] | None = None) -> dict:
    """Train; returns a summary dict (also written to ``<out>/summary.json``).

    ``train_items`` / ``val_items`` replace the folders of ``tc`` (tests, other datasets).
    """
    from tqdm import tqdm

    from engine.model import FEDN
    from engine.model.losses import FEDNLoss

    t_start = time.perf_counter()
    torch.set_num_threads(tc.threads)
    set_seed(tc.seed)
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    train_items = list(train_items if train_items is not None else load_folders(tc.train, tc))
    val_items = list(val_items if val_items is not None else load_folders(tc.val, tc))
    # causal per-video input gain, as the live path applies it (None: off, flow as is)
    if cfg.gain_ref > 0:
        # NumPy's medians release the GIL: tc.workers threads share the work (~100 s serial
        # for the 186 min of the default config)
        def gains_of(v: VideoFeatures) -> np.ndarray:
            return video_gains(v.flow, v.valid, cfg)

        with ThreadPoolExecutor(tc.workers) as pool:
            train_gains = list(pool.map(gains_of, train_items))
            val_gains = list(pool.map(gains_of, val_items))
    else:
        train_gains, val_gains = [None] * len(train_items), [None] * len(val_items)
    data = {"train": summarize(train_items), "val": summarize(val_items)}
    print(f"data: {json.dumps(data)}", flush=True)
    model = FEDN(cfg)
    state = torch.load(out / "last.pt", weights_only=False) if resume and (
        out / "last.pt").is_file() else None
    if state is not None:
        model.load_state_dict(state["model"])
    log = CsvLog(out / "log.csv", resume and state is not None)
    rng = np.random.default_rng(tc.seed)
    history: list[dict] = state["history"] if state else []
    elapsed0 = state["elapsed"] if state else 0.0

    def checkpoint(stage: str, step: int, opt, sched, sampler, best) -> None:
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                    "sched": sched.state_dict(), "stage": stage, "step": step,
                    "sampler": sampler.state(), "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "history": history, "best": best,
                    "elapsed": elapsed0 + time.perf_counter() - t_start}, out / "last.pt")

    def window_inputs(wins: Sequence[Window]) -> tuple[torch.Tensor, torch.Tensor,
                                                       torch.Tensor | None]:
        """(B, L, 3, S, S) gained, augmented flow, (B, L) valid and (B, L, A) appearance
        (None for a flow-only model) of training windows."""
        flows, valids = zip(*(window_flow(train_items[w.video], w, train_gains[w.video])
                              for w in wins))
        flow = torch.from_numpy(np.stack([augment(f, rng, tc) for f in flows]))
        app = None
        if cfg.appearance_dim:  # the appearance input is not augmented: it reads the photo
            app = torch.from_numpy(np.stack([window_appearance(train_items[w.video], w,
                                                               cfg.appearance_dim)
                                             for w in wins]))
        return flow, torch.from_numpy(np.stack(valids)), app

    # ---------------------------------------------------------------- stage A: encoder
    stage_a_done = state is not None and state["stage"] in ("B", "C")
    if not stage_a_done and tc.encoder_steps > 0:
        head = ClipHead(cfg)
        params = list(model.encoder.parameters()) + list(head.parameters())
        opt = torch.optim.AdamW(params, tc.encoder_lr, weight_decay=tc.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lr_lambda(min(tc.warmup, tc.encoder_steps // 4 + 1), tc.encoder_steps))
        sampler = WindowSampler(train_items, tc.encoder_clip, tc.pos_frac, tc.seed + 1,
                                tc.micro_frac)
        start = 0
        if state is not None and state["stage"] == "A":
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            sampler.set_state(state["sampler"])
            head.load_state_dict(state["head"]) if "head" in state else None
            start = state["step"]
        model.encoder.train()

        def clip_batch() -> tuple[torch.Tensor, torch.Tensor, Targets]:
            wins = sampler.batch(tc.encoder_batch)
            flow, valid, app = window_inputs(wins)
            return flow, valid, app, window_targets(train_items, wins, cfg)

        n_steps = tc.encoder_steps - start
        bar = tqdm(prefetch(clip_batch, n_steps), total=n_steps, desc="stage A (encoder)",
                   disable=not tc.progress)
        run_loss = None
        for step, (flow, valid, app, tg) in enumerate(bar, start):
            feats = model.encode(flow, valid, app)  # (B, L, F)
            act, emo = head(feats)
            on = tg.act_emo >= 0
            loss = F.binary_cross_entropy_with_logits(act, tg.act)
            if on.any():
                loss = loss + F.cross_entropy(emo[on], tg.act_emo[on])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            lv = float(loss.detach())
            run_loss = lv if run_loss is None else 0.9 * run_loss + 0.1 * lv
            bar.set_postfix(loss=f"{run_loss:.3f}")
            if (step + 1) % 25 == 0 or step + 1 == tc.encoder_steps:
                log.write(stage="A", step=step + 1, lr=sched.get_last_lr()[0], loss=run_loss,
                          seconds=round(time.perf_counter() - t_start, 1))
                history.append({"stage": "A", "step": step + 1, "loss": run_loss})
            if (step + 1) % 100 == 0:
                checkpoint("A", step + 1, opt, sched, sampler, None)
                torch.save({**torch.load(out / "last.pt", weights_only=False),
                            "head": head.state_dict()}, out / "last.pt")

    # ------------------------------------------------ stages B (detector) and C (end to end)
    from training.infer import encode_video

    t_enc = time.perf_counter()
    model.encoder.eval()
    bar = tqdm(train_items, desc="encoding frames", disable=not tc.progress)
    train_feats = [encode_video(model, v.flow, v.valid, gains=g, appearance=v.appearance)
                   for v, g in zip(bar, train_gains)]
    print(f"encoded {sum(v.n_frames for v in train_items)} frames in "
          f"{time.perf_counter() - t_enc:.0f} s", flush=True)
    loss_fn = FEDNLoss(cfg)
    best = state["best"] if state is not None and state["stage"] in ("B", "C") else {"f1": -1.0}

    def window_feats(wins: Sequence[Window]) -> torch.Tensor:
        no_face = model.encoder.no_face.detach()
        rows = []
        for w in wins:
            f = train_feats[w.video]
            sl, before, after = window_slice(f.shape[0], w)
            parts = [no_face.expand(before, -1), f[sl], no_face.expand(after, -1)]
            rows.append(torch.cat(parts, 0))  # -> (L, F)
        return torch.stack(rows)  # -> (B, L, F)

    stages = [("B", tc.epochs, tc.steps_per_epoch, tc.lr, tc.batch, False),
              ("C", tc.e2e_epochs, tc.e2e_steps_per_epoch, tc.e2e_lr, tc.e2e_batch, True)]
    epoch_base = 0
    for name, epochs, steps, lr, batch, e2e in stages:
        if epochs <= 0:
            continue
        done_before = state is not None and (state["stage"], name) == ("C", "B")
        if done_before:
            epoch_base += epochs
            continue
        params = list(model.parameters()) if e2e else list(model.detector.parameters())
        for p in model.encoder.parameters():
            p.requires_grad_(e2e)
        total = epochs * steps
        opt = torch.optim.AdamW(params, lr, weight_decay=tc.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(min(tc.warmup, total // 4 + 1),
                                                                 total))
        sampler = WindowSampler(train_items, cfg.window, tc.pos_frac,
                                tc.seed + (3 if e2e else 2), tc.micro_frac)
        start = 0
        if state is not None and state["stage"] == name:
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            sampler.set_state(state["sampler"])
            rng.bit_generator.state = state["rng"]
            torch.set_rng_state(state["torch_rng"])
            start = state["step"]
        for epoch in range(start // steps, epochs):
            model.train()
            model.encoder.train(e2e)  # frozen encoder keeps its BN statistics

            def window_batch(sampler=sampler, batch=batch, e2e=e2e):
                wins = sampler.batch(batch)
                inputs = window_inputs(wins) if e2e else (window_feats(wins),)
                return inputs, window_targets(train_items, wins, cfg)

            # exactly one epoch of batches, so the sampler and RNG states saved at its end
            # are those of a serial loop
            bar = tqdm(prefetch(window_batch, steps), total=steps,
                       desc=f"stage {name} epoch {epoch + 1}/{epochs}", disable=not tc.progress)
            sums: dict[str, float] = {}
            for inputs, targets in bar:
                # (B, L, F) features, or end to end (B, L, 3, S, S) flow + (B, L) valid
                # [+ (B, L, A) appearance]
                outputs = (model(inputs[0], inputs[1], appearance=inputs[2]) if e2e
                           else model.detector(*inputs))
                loss, parts = loss_fn(outputs, targets)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, 5.0)
                opt.step()
                sched.step()
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                bar.set_postfix(loss=f"{parts['total']:.3f}")
            mean = {k: v / steps for k, v in sums.items()}
            val = evaluate_val(model, val_items, val_gains, tc.thresholds, tc.workers)
            g_epoch = epoch_base + epoch + 1
            row = {"stage": name, "epoch": g_epoch, "step": (epoch + 1) * steps,
                   "lr": sched.get_last_lr()[0], "loss": mean["total"],
                   **{k: mean[k] for k in mean if k != "total"},
                   "val_f1": val["f1"], "val_micro_f1": val["micro_f1"],
                   "val_macro_f1": val["macro_f1"], "val_thresh": val["thresh"],
                   "seconds": round(elapsed0 + time.perf_counter() - t_start, 1)}
            log.write(**row)
            history.append(row)
            print(f"epoch {g_epoch} ({name}): loss {mean['total']:.3f} | val F1 {val['f1']:.3f} "
                  f"(micro {val['micro_f1']:.3f}, macro {val['macro_f1']:.3f}) "
                  f"@ {val['thresh']}", flush=True)
            if val["f1"] > best["f1"]:
                best = {**val, "epoch": g_epoch, "stage": name}
                save(out / "best.pt", model, override(cfg, {"score_thresh": val["thresh"]}),
                     {"meta": {"epoch": g_epoch, "stage": name,
                               "val": {k: float(v) for k, v in val.items()}}})
            checkpoint(name, (epoch + 1) * steps, opt, sched, sampler, best)
        epoch_base += epochs
        state = None  # a resumed stage is finished; later stages start fresh
    plot_curves(history, out / "curves.png")
    summary = {"data": data, "best": best,
               "train_seconds": round(elapsed0 + time.perf_counter() - t_start, 1),
               "model_params": sum(p.numel() for p in model.parameters()),
               "config": {k: (list(v) if isinstance(v, tuple) else v)
                          for k, v in asdict(cfg).items()},
               "train": {k: (list(v) if isinstance(v, tuple) else v)
                         for k, v in asdict(tc).items()}}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML under training/configs/")
    ap.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override data/train keys, e.g. out=data/runs/x epochs=2")
    a = ap.parse_args(argv)
    try:
        cfg, tc = load_config(a.config)
        if a.set:
            import yaml

            values = {}
            for item in a.set:
                if "=" not in item:
                    raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
                k, v = item.split("=", 1)
                values[k] = yaml.safe_load(v)
            tc = override(tc, values)
        summary = run(cfg, tc, a.resume)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"best: {json.dumps(summary['best'])} | {summary['train_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
