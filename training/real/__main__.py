"""``python -m training.real``: the spotter on the real validation clips, against the labels.

Prints one row per clip (labels matched, false events, onset errors, event_start → event
conversion) and the events; writes ``--out`` JSON and a timeline figure (labels vs events)
next to it.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from engine.config import tracker_settings
from training.real import (CLIPS, DERIVED, ClipScore, clip_path, labels_of, read_labels,
                           run_clip, score_clip)


def plot(scores: Sequence[ClipScore], labels, fps: dict[str, float], path: Path) -> None:
    """One row per clip: labels above (hatched where open), final events below."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from stream.api import EMOTION_COLOURS
    fig, axes = plt.subplots(len(scores), 1, figsize=(10, 1.3 * len(scores)), squeeze=False)
    for ax, sc in zip(axes[:, 0], scores):
        r = fps[sc.clip]
        for lab in labels_of(sc.clip, labels):
            ax.barh(1, (lab.offset - lab.onset + 1) / r, left=lab.onset / r, height=0.6,
                    color=EMOTION_COLOURS[lab.emotion], alpha=0.5,
                    hatch="//" if lab.open_start or lab.open_end else None)
        for on, off, kind, emotion, truncated in sc.events:
            ax.barh(0, (off - on + 1) / r, left=on / r, height=0.6, color=EMOTION_COLOURS[emotion],
                    edgecolor="black", linewidth=1.2 if kind == "micro" else 0,
                    hatch="//" if truncated else None)
        ax.set_yticks([0, 1], ["events", "by eye"])
        ax.set_xlim(0, max(sc.frames, 1) / r)
        ax.set_title(f"{sc.clip}: {sc.matched}/{sc.labels} matched, {sc.false_events} false, "
                     f"{sc.starts} starts / {sc.cancels} withdrawn", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("seconds (green positive, red negative, orange surprise, blue "
                           "others; outlined: micro; hatched: open / truncated)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.real", description=__doc__.split("\n")[0])
    ap.add_argument("--weights", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--engine", default="onnxruntime", help="backend (default onnxruntime)")
    ap.add_argument("--clips", default=",".join([*CLIPS, *DERIVED]),
                    help="comma-separated clip names")
    ap.add_argument("--out", default="training/real/results.json", help="JSON; figure next to it")
    ap.add_argument("--tracker", nargs="*", default=[],
                    help="FIELD=VALUE ... interval tracker settings (engine.config.TrackerConfig)")
    args = ap.parse_args(argv)
    names = [c for c in args.clips.split(",") if c]
    try:
        for name in names:
            clip_path(name)
        labels = read_labels()
        tracker_cfg = tracker_settings(args.tracker)
        from engine.runtime import Engine
        engine = Engine.load(args.engine, weights=args.weights, log=lambda s: None)
    except (ValueError, FileNotFoundError) as exc:
        print(f"training.real: {exc}", file=sys.stderr)
        return 2
    scores, fps = [], {}
    with engine:
        for name in tqdm(names, desc="real clips", unit="clip"):
            records, fps[name] = run_clip(name, engine, tracker_cfg=tracker_cfg)
            scores.append(score_clip(name, records, fps[name], labels))
    print(f"{'clip':24} {'matched':>8} {'false':>6} {'starts':>7} {'withdrawn':>10}  onset err (s)")
    for sc in scores:
        print(f"{sc.clip:24} {sc.matched:>4}/{sc.labels:<3} {sc.false_events:>6} {sc.starts:>7} "
              f"{sc.cancels:>10}  {sc.onset_errors_s}")
        for on, off, kind, emotion, truncated in sc.events:
            print(f"{'':26}event {on}-{off} {kind} {emotion}{' truncated' if truncated else ''}")
    total = sum(sc.labels for sc in scores)
    print(f"summary: {sum(sc.matched for sc in scores)}/{total} labels matched, "
          f"{sum(sc.false_events for sc in scores)} false events, "
          f"{sum(sc.starts for sc in scores)} starts, {sum(sc.cancels for sc in scores)} withdrawn")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"weights": args.weights or "shipped", "engine": engine.name,
                               "tracker": asdict(tracker_cfg),
                               "clips": [asdict(sc) for sc in scores]}, indent=1))
    plot(scores, labels, fps, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
