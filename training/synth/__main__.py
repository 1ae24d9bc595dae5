"""``python -m training.synth``: generate a SynthME set.

    python -m training.synth --out DIR --minutes M --split train --seed S \\
        [--format casme2|mp4] [--fps 30] [--workers 2] [--no-distractors] \\
        [--disable blinks,noise,...] [--set gap_scale=0.5 ...] [--faces kanade,...]

Exit codes: 0 done, 2 bad arguments (one-line message).
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from dataclasses import replace

from .config import DISTRACTORS, SynthConfig, config_fields
from .generate import FORMATS, generate


def _parse_set(items: list[str]) -> dict:
    out = {}
    known = config_fields()
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        if key not in known:
            raise ValueError(f"--set: unknown key {key!r}; known: {known}")
        try:
            out[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[key] = text
    return out


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m training.synth",
                                 description="Generate SynthME: synthetic long videos of real "
                                             "face photos with labelled micro/macro-expressions.")
    ap.add_argument("--out", required=True, help="output folder (must be new or empty)")
    ap.add_argument("--minutes", type=float, required=True, help="total video minutes")
    ap.add_argument("--split", default="train", choices=("train", "val", "test"),
                    help="face identities to use")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", default="casme2", choices=FORMATS, dest="fmt")
    ap.add_argument("--fps", type=float, default=30.0, help="frame rate (200 for SAMM-like)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--video-seconds", type=float, default=60.0, help="mean video length")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--no-distractors", action="store_true",
                    help="switch every distractor off (clean clips for checks)")
    ap.add_argument("--disable", default="", help=f"comma list of distractors: {DISTRACTORS}")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="override any SynthConfig field, e.g. gap_scale=0.5")
    ap.add_argument("--faces", default="", help="comma list of face photo ids (default: split)")
    ap.add_argument("--no-progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        cfg = SynthConfig(fps=a.fps, width=a.width, height=a.height, video_s=a.video_seconds)
        if a.no_distractors:
            cfg = cfg.without_distractors()
        off = [d for d in a.disable.split(",") if d]
        bad = [d for d in off if d not in DISTRACTORS]
        if bad:
            raise ValueError(f"--disable: unknown distractors {bad}; known: {DISTRACTORS}")
        cfg = replace(cfg, **{d: False for d in off}, **_parse_set(a.set))
        faces = [f for f in a.faces.split(",") if f] or None
        s = generate(a.out, a.minutes, a.split, a.seed, a.fmt, cfg, a.workers, faces,
                     progress=not a.no_progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"SynthME {s['split']} -> {a.out} ({s['format']}): {s['videos']} videos, "
          f"{s['subjects']} identities, {s['frames']} frames ({s['minutes']} min) | events "
          f"{s['events']} | emotions {s['emotions']} | distractors {s['distractors']} | "
          f"{s['wall_s']} s ({s['frames_per_s']} frames/s, {s['workers']} workers) | "
          f"labels {s['labels']} (frames from {s['first_frame']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
