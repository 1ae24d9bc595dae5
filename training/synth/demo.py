"""The demo clip shipped at ``stream/demo/demo.mp4`` (+ ``demo_labels.csv``).

    python -m training.synth.demo [--out stream/demo]

A 25-s, 30-fps, 640x360 clip of a *test* identity with a scripted set of
micro- and macro-expressions of every emotion (so a viewer sees each kind),
real-timing blinks, mild head drift, lighting drift and sensor noise. Labels
are a MEGC CSV with stream indices from 0 (the first decoded frame is 0),
video = file stem ``demo``, subject = the face identity.
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import replace
from pathlib import Path

import numpy as np

from .config import SynthConfig
from .faces import load
from .render import NoiseBank, build_scene, render_frame
from .stats import load as load_stats
from .timeline import AU_COLUMN, SynthEvent, _profile, build_timeline

DEMO_DIR = Path(__file__).resolve().parents[2] / "stream" / "demo"
DEMO_FACE = "facexlib_b"  # a test-split identity
DEMO_SEED = 2026
DURATION_S = 25.0
#: (start s, duration s, apex fraction, kind, emotion, AUs, amplitude)
SCRIPT: tuple[tuple[float, float, float, str, str, tuple[str, ...], float], ...] = (
    (1.5, 1.6, 0.35, "macro", "positive", ("6", "12", "25"), 1.0),
    (5.0, 0.40, 0.45, "micro", "negative", ("4", "7"), 0.45),
    (8.0, 1.4, 0.40, "macro", "surprise", ("1", "2", "5", "26"), 0.9),
    (11.5, 0.33, 0.45, "micro", "positive", ("6", "12"), 0.45),
    (14.0, 1.5, 0.40, "macro", "negative", ("9", "10"), 0.9),
    (18.0, 0.43, 0.40, "micro", "surprise", ("1", "2"), 0.45),
    (21.0, 1.2, 0.45, "macro", "others", ("14", "17"), 1.0),
)


def demo_config() -> SynthConfig:
    """Distractors kept mild for a watchable demo (no occlusion, no out-of-frame). The
    expressions are scripted: ``dynamics="v1"`` keeps the sampled ones (discarded) from
    adding head turns, talking or scene cuts, and keeps the clip as shipped."""
    return replace(SynthConfig(), sudden_moves=False, occlusion=False, out_of_frame=False,
                   flicker=False, compression=False, drift_px=4.0, drift_deg=1.5,
                   identity_morph=0.0, dynamics="v1")


def demo_timeline(cfg: SynthConfig, gen: dict):
    """Distractors sampled as usual, expressions from :data:`SCRIPT`."""
    n = int(DURATION_S * cfg.fps)
    tl = build_timeline(n, cfg, gen, DEMO_SEED)
    keep = AU_COLUMN["43"]  # blinks stay, sampled expressions go
    blink = tl.amp[:, keep].copy()
    tl.amp[:] = 0
    tl.amp[:, keep] = blink
    tl.events = []
    for start, dur, frac, kind, emotion, aus, amp in SCRIPT:
        on = int(round(start * cfg.fps))
        off = on + int(round(dur * cfg.fps)) - 1
        apex = on + int(round(frac * (off - on)))
        prof = _profile(off - on + 1, apex - on, 0) * amp
        for au in aus:
            tl.amp[on:off + 1, AU_COLUMN[au]] += prof
        tl.events.append(SynthEvent(onset=on, apex=apex, offset=off, kind=kind,
                                    emotion=emotion, aus=aus, amplitude=amp))
    # no blink inside an expression, so the demo's labels are unambiguous
    for e in tl.events:
        tl.amp[e.onset - 3:e.offset + 4, keep] = 0
    tl.distractors = [d for d in tl.distractors
                      if d.kind != "blink" or all(d.offset < e.onset - 3 or d.onset > e.offset + 3
                                                  for e in tl.events)]
    return tl


def write_demo(out: str | Path = DEMO_DIR) -> tuple[Path, Path]:
    """Render the demo clip and its labels into ``out``; returns (mp4, csv)."""
    import cv2

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = demo_config()
    gen = load_stats()["generator"]
    photo = load(DEMO_FACE)
    if photo.split != "test":
        raise ValueError(f"demo face {DEMO_FACE} must be a test identity, is {photo.split}")
    scene = build_scene(photo, cfg, np.random.default_rng([DEMO_SEED, 1]))
    tl = demo_timeline(cfg, gen)
    noise = NoiseBank(scene.base.shape, tl.noise_sigma, DEMO_SEED) if tl.noise_sigma else None
    mp4 = out / "demo.mp4"
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps,
                             (cfg.width, cfg.height))
    for i in range(tl.n_frames):
        writer.write(render_frame(scene, tl, i, noise))
    writer.release()
    labels = out / "demo_labels.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["subject", "video", "onset", "offset", "emotion", "type", "apex"])
        for e in tl.events:
            w.writerow([photo.identity, "demo", e.onset, e.offset, e.emotion, e.kind, e.apex])
    return mp4, labels


def write_strip(path: str | Path = Path(__file__).resolve().parent / "strip.png",
                rows: tuple[int, ...] = (0, 1, 2, 4, 5)) -> Path:
    """A PNG strip of demo frames (onset / apex / offset of some events) with their labels."""
    import cv2

    cfg = demo_config()
    photo = load(DEMO_FACE)
    scene = build_scene(photo, cfg, np.random.default_rng([DEMO_SEED, 1]))
    tl = demo_timeline(cfg, load_stats()["generator"])
    x0, y0, x1, y1 = scene.roi
    side = 112
    lines = []
    for r in rows:
        e = tl.events[r]
        tiles = []
        for name, i in (("onset", e.onset), ("apex", e.apex), ("offset", e.offset)):
            crop = render_frame(scene, tl, i)[y0:y1, x0:x1]
            tile = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
            cv2.putText(tile, f"{name} {i}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                        (0, 255, 0), 1, cv2.LINE_AA)
            tiles.append(tile)
        label = np.full((side, 150, 3), 255, np.uint8)
        for k, text in enumerate((e.kind, e.emotion, f"AU {e.au_text}", f"amp {e.amplitude}",
                                  f"{(e.offset - e.onset + 1) / cfg.fps:.2f} s")):
            cv2.putText(label, text, (6, 20 + 20 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                        (0, 0, 0), 1, cv2.LINE_AA)
        lines.append(np.hstack([label] + tiles))
    path = Path(path)
    cv2.imwrite(str(path), np.vstack(lines), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEMO_DIR)
    ap.add_argument("--strip", action="store_true", help="also write training/synth/strip.png")
    a = ap.parse_args(argv)
    mp4, labels = write_demo(a.out)
    print(f"wrote {mp4} ({mp4.stat().st_size / 2 ** 20:.2f} MB) and {labels}")
    if a.strip:
        print(f"wrote {write_strip()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
