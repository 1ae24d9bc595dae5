"""Statistics of the real label files (and optionally a SynthME label file).

    python -m training.datasets.stats [--annotations DIR] [--synthme LABELS]
                                      [--out bench/dataset_stats.png] [--json]

Prints per dataset: videos, subjects, events per kind, duration quantiles
(frames and seconds) per kind, emotion mix; saves a histogram of durations
(seconds, log scale) per dataset and kind.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from .readers import load_real, read_synthme
from .records import Annotation

QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9)


def summarize(annotations: Sequence[Annotation]) -> dict:
    """Counts, duration quantiles and emotion mix of one dataset's annotations."""
    out: dict = {"events": len(annotations), "videos": len({a.key for a in annotations}),
                 "subjects": len({a.subject for a in annotations}),
                 "offset_filled": sum(not a.offset_marked for a in annotations), "kinds": {}}
    for kind in sorted({a.kind for a in annotations}):
        sel = [a for a in annotations if a.kind == kind]
        frames = np.array([a.frames for a in sel], float)
        seconds = np.array([a.seconds for a in sel], float)
        out["kinds"][kind] = {
            "events": len(sel),
            "frames_q": {str(q): float(np.quantile(frames, q)) for q in QUANTILES},
            "seconds_q": {str(q): float(np.quantile(seconds, q)) for q in QUANTILES},
            "emotions": dict(Counter(a.emotion or "(none)" for a in sel).most_common()),
        }
    return out


def format_summary(name: str, s: dict) -> str:
    """Human-readable block for one dataset."""
    lines = [f"== {name}: {s['events']} events, {s['videos']} videos, {s['subjects']} subjects"
             + (f", {s['offset_filled']} offsets filled (offset=apex)" if s["offset_filled"]
                else "")]
    for kind, k in s["kinds"].items():
        fq = " / ".join(f"{v:g}" for v in k["frames_q"].values())
        sq = " / ".join(f"{v:.2f}" for v in k["seconds_q"].values())
        emo = ", ".join(f"{e} {n}" for e, n in k["emotions"].items())
        lines.append(f"  {kind:5} {k['events']:5d}  duration p10/p50/p90: {fq} frames, "
                     f"{sq} s  | {emo}")
    return "\n".join(lines)


def histogram(data: dict[str, Sequence[Annotation]], out: str | Path) -> Path:
    """Save duration histograms (seconds, log x) per dataset and kind to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(data), figsize=(4.5 * len(data), 3.4), squeeze=False)
    bins = np.logspace(np.log10(0.02), np.log10(120), 40)
    for ax, (name, anns) in zip(axes[0], data.items()):
        for kind, color in (("micro", "tab:red"), ("macro", "tab:blue"), ("blink", "tab:gray")):
            sec = [a.seconds for a in anns if a.kind == kind]
            if sec:
                ax.hist(sec, bins=bins, alpha=0.6, color=color, label=f"{kind} ({len(sec)})")
        ax.axvline(0.5, color="k", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_title(name)
        ax.set_xlabel("duration (s)")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("events")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.datasets.stats",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", default=None,
                        help="folder of the real label files (default ../shared/annotations)")
    parser.add_argument("--synthme", default=None, help="a SynthME label file to add")
    parser.add_argument("--out", default="bench/dataset_stats.png", help="histogram PNG path")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    args = parser.parse_args(argv)
    try:
        from tqdm import tqdm

        data: dict[str, list[Annotation]] = {}
        names = ("casme2", "sammlv", "casme3", "casme3_blinks")
        for name in tqdm(names, desc="reading label files", disable=args.json, leave=False):
            data[name] = load_real(name, args.annotations)
        if args.synthme:
            data["synthme"] = read_synthme(args.synthme)
        summaries = {name: summarize(anns) for name, anns in data.items()}
        path = histogram({k: v for k, v in data.items() if k != "casme3_blinks"}, args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"datasets": summaries, "figure": str(path)}, indent=2))
    else:
        print("\n".join(format_summary(n, s) for n, s in summaries.items()))
        print(f"histogram saved to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
