"""``training/synth/dynamics.png``: phase durations, real vs sampled, and one sample timeline.

    python -m training.synth.dynamics_figure [--out training/synth/dynamics.png]

Top rows (micro, macro): cumulative distributions of duration, rise
(onset->apex), still hold and release, for the real labels (the weighted pool
of ``stats.json`` ``generator.phases``, hold and release under the
symmetric-release assumption of :mod:`training.synth.stats`), for what
``dynamics="real"`` samples and for the earlier ``dynamics="v1"`` generator.
Bottom: one generated video (``--format mp4`` written to a temporary folder):
the AU amplitude the renderer animates, the labels and distractors read back
from its ``labels.csv`` / ``distractors.csv``. The same rows are printed, for
the README.
"""
from __future__ import annotations

import argparse
import csv
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .config import SynthConfig
from .dynamics import place_event
from .stats import load as load_stats
from .stats import phase_pool_rows, phases_s

FIGURE = Path(__file__).resolve().parent / "dynamics.png"
PHASES = ("duration", "rise", "hold", "release")
LANE = 0.22  # vertical spacing of the distractor lanes in the sample panel
#: The sample video of the bottom panel: seed, split, length (s) and dynamics options.
SAMPLE = dict(seed=2, split="val", seconds=40.0)
SAMPLE_CFG = dict(gap_scale=0.25, repeat_p=0.5, talk_during_p=0.3, turn_during_p=0.3,
                  occlusion_during_p=0.3, out_of_frame_during_p=0.3, scene_cut_per_min=2.0)


def real_phases(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) duration / rise / hold / release seconds of the real pool, and weights."""
    from training.datasets.readers import load_real

    groups = [load_real("casme2"), load_real("sammlv")]
    if kind == "macro":
        groups.append(load_real("casme3"))
    rows, w = phase_pool_rows(groups, kind)
    ph = np.array(phases_s(rows), float)
    dur = np.array([a.seconds for a in rows], float)
    return np.column_stack([dur, ph]), w


def sampled_phases(kind: str, cfg: SynthConfig, gen: dict, n: int = 5000,
                   seed: int = 0) -> np.ndarray:
    """(n, 4) phases (s) the generator draws at ``cfg.fps`` ("real" or "v1" dynamics)."""
    from .timeline import Sampler

    rng = np.random.default_rng(seed)
    sampler, fps, out = Sampler(gen, rng), cfg.fps, []
    ratio = float(gen["phases"]["release_ratio"])
    for _ in range(n):
        if cfg.dynamics == "real":
            d, frac = sampler.phases(kind, cfg.macro_max_s)
        else:
            d, frac = sampler.duration_s(kind), sampler.apex_fraction(kind)
        frames = max(3, int(round(d * fps)))
        if kind == "micro":
            frames = min(frames, int(0.5 * fps))
        if cfg.dynamics == "real":
            apex, hold, off = place_event(0, frames, frac, ratio)
        else:  # v1: apex from the fraction, hold 0-30 % of apex->offset
            apex = int(np.clip(round(frac * (frames - 1)), 1, frames - 2))
            off = frames - 1
            hold = int(rng.uniform(0.0, 0.3) * (off - apex))
        out.append((frames / fps, apex / fps, hold / fps, (off - apex - hold) / fps))
    return np.array(out)


def _cdf(ax, values: np.ndarray, weights: np.ndarray | None, **kw) -> None:
    order = np.argsort(values)
    v = values[order]
    w = np.ones_like(v) if weights is None else weights[order]
    ax.plot(v, np.cumsum(w) / w.sum(), **kw)


def write_sample(folder: Path) -> tuple[list[dict], list[dict], dict]:
    """Generate the sample video into ``folder``; its label rows, distractor rows, video row."""
    from .generate import generate

    cfg = replace(SynthConfig(), video_s=SAMPLE["seconds"], **SAMPLE_CFG)
    generate(folder, minutes=SAMPLE["seconds"] / 60, split=SAMPLE["split"], seed=SAMPLE["seed"],
             fmt="mp4", cfg=cfg, progress=False)
    read = lambda name: list(csv.DictReader(open(folder / name, newline="")))  # noqa: E731
    return read("labels.csv"), read("distractors.csv"), read("videos.csv")[0]


def draw(out: Path = FIGURE) -> tuple[Path, list[dict], list[dict], dict]:
    """Write the figure; returns its path and the sample's label, distractor and video rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .generate import VideoSpec, make_video

    gen = load_stats()["generator"]
    fig = plt.figure(figsize=(13, 8.5))
    grid = fig.add_gridspec(3, 4, height_ratios=(1, 1, 1.1), hspace=0.45, wspace=0.25)
    for row, kind in enumerate(("micro", "macro")):
        real, w = real_phases(kind)
        new = sampled_phases(kind, SynthConfig(), gen)
        old = sampled_phases(kind, replace(SynthConfig(), dynamics="v1"), gen)
        for col, name in enumerate(PHASES):
            ax = fig.add_subplot(grid[row, col])
            _cdf(ax, real[:, col], w, color="k", lw=2, label="real (weighted pool)")
            _cdf(ax, new[:, col], None, color="tab:blue", label='SynthME "real"')
            _cdf(ax, old[:, col], None, color="tab:orange", ls="--", label='SynthME "v1"')
            ax.set_title(f"{kind} {name}", fontsize=10)
            ax.set_xlabel("s", fontsize=8)
            if kind == "macro":
                ax.set_xscale("symlog", linthresh=0.1)
                ax.set_xlim(0, 12)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="lower right")
    with tempfile.TemporaryDirectory() as tmp:
        labels, dis, video = write_sample(Path(tmp) / "sample")
    cfg = replace(SynthConfig(), video_s=SAMPLE["seconds"], **SAMPLE_CFG)
    spec = VideoSpec(video=video["video"], subject=video["subject"], photo=video["photo"],
                     n_frames=int(video["frames"]), seed=int(video["seed"]), mix=video["mix"],
                     mix_t=float(video["mix_t"]))
    tl, _, _ = make_video(spec, cfg, gen)
    ax = fig.add_subplot(grid[2, :])
    t = np.arange(tl.n_frames) / cfg.fps
    ax.plot(t, tl.amp.max(1), color="tab:blue", lw=1, label="max AU amplitude")
    for r in labels:
        on, off = int(r["onset"]) / cfg.fps, (int(r["offset"]) + 1) / cfg.fps
        ax.axvspan(on, off, color="tab:green" if r["type"] == "macro" else "tab:purple",
                   alpha=0.25, lw=0)
        ax.text(on, 1.45, f"{r['type'][:2]} {r['emotion'][:3]}" + (" T" if r["truncated"] == "1"
                                                                    else ""), fontsize=7)
    lanes = sorted({d["kind"] for d in dis} - {"scene_cut"})
    for d in dis:
        if d["kind"] == "scene_cut":
            ax.axvline(int(d["onset"]) / cfg.fps, color="k", ls=":", lw=1.5)
            ax.text(int(d["onset"]) / cfg.fps, 1.3, f" cut -> {d['detail']}", fontsize=7)
            continue
        y = -0.2 - LANE * lanes.index(d["kind"])
        x0, x1 = int(d["onset"]) / cfg.fps, (int(d["offset"]) + 1) / cfg.fps
        ax.plot([x0, max(x1, x0 + 0.05)], [y, y], lw=4,
                color="tab:red" if d["label"] else "0.5", solid_capstyle="butt")
    for i, k in enumerate(lanes):
        ax.text(-0.3, -0.2 - LANE * i, k, fontsize=7, ha="right", va="center")
    ax.set_ylim(-0.2 - LANE * len(lanes), 1.6)
    ax.set_xlim(-4, t[-1])
    ax.set_xlabel("s")
    ax.set_title(f"sample {video['video']}: labels shaded (green macro, purple micro, T = "
                 f"truncated), distractors (red = placed on a label), dotted = scene cut",
                 fontsize=10)
    fig.savefig(out, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return out, labels, dis, video


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=FIGURE)
    a = ap.parse_args(argv)
    path, labels, dis, video = draw(a.out)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB); sample video {video['video']} "
          f"({video['frames']} frames, photo {video['photo']}, cuts {video['cuts'] or '-'})")
    print("labels.csv:")
    print("  " + ",".join(labels[0]) if labels else "  (none)")
    for r in labels:
        print("  " + ",".join(r.values()))
    print("distractors.csv (blinks left out):")
    for d in dis:
        if d["kind"] != "blink":
            print("  " + ",".join(d.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
