"""Plan, render and write a SynthME set (see ``python -m training.synth --help``).

Layouts (both load through :func:`training.datasets.readers.read_synthme` and
:func:`training.datasets.layout.videos` with ``dataset="synthme"``):

* ``casme2``: ``<out>/<subject>/<video>/img<N>.jpg`` (N from 1) and
  ``<out>/SynthME_gt.xlsx``, sheet ``CASFEcode_final`` with the 9 columns of
  ``CASME_sq_gt.xlsx`` (no header): subject, ``<video>_<k>``, onset, apex,
  offset, AUs, emotion, type (``micro-expression``/``macro-expression``),
  emotion again (the self-report column). Frame numbers 1-based, as
  CAS(ME)^2's ``img<N>.jpg``.
* ``mp4``: ``<out>/<video>.mp4`` (mp4v) and ``<out>/labels.csv`` (MEGC CSV:
  subject, video, onset, offset, emotion, type, apex). Frame numbers are
  stream indices from 0 (the first decoded frame is 0).

Both also write ``videos.csv`` (one row per video: subject, photo, frames,
fps, events, scene cuts), ``distractors.csv`` (video, kind, onset, offset in
the same numbering as the labels; ``label``: the ``<video>_<k>`` label, k-th of
its video from 1, that the episode is placed on, empty if none; ``detail``: the
photo a scene cut switches to) and ``synthme.json`` (config, seed, summary).
``labels.csv`` also has ``truncated`` (1: the face left the frame during the
expression and the label ends at its last visible frame; the casme2 sheet has
no room for it: there ``distractors.csv`` names the label).
"""
from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import SynthConfig
from .faces import SPLITS, load, manifest, photos
from .mix import compatible, morph
from .render import NoiseBank, Scene, build_scene, render_frame
from .stats import load as load_stats
from .timeline import Timeline, build_timeline, sample_cuts

FORMATS: tuple[str, ...] = ("casme2", "mp4")
LABEL_SHEET = "SynthME_gt.xlsx"
LABEL_CSV = "labels.csv"


@dataclass(frozen=True)
class VideoSpec:
    """One video to make: name, subject (= face identity), photo, length, seed, and the
    photo its face is morphed with (``mix``, weight ``mix_t``; "" for none)."""

    video: str
    subject: str
    photo: str
    n_frames: int
    seed: int
    mix: str = ""
    mix_t: float = 0.0


def plan(minutes: float, split: str, seed: int, cfg: SynthConfig,
         photo_ids: list[str] | None = None) -> list[VideoSpec]:
    """Videos totalling ``minutes``, cycling through the split's photos in a seeded order."""
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pool = list(photo_ids) if photo_ids else photos(split)
    known = set(photos(None))
    bad = [p for p in pool if p not in known]
    if bad or not pool:
        raise ValueError(f"faces {bad or pool} not available; known: {sorted(known)}")
    rows = {r["id"]: r for r in manifest()}
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(pool)))
    total = int(round(minutes * 60 * cfg.fps))
    specs, done, i = [], 0, 0
    child_seeds = np.random.SeedSequence(seed).generate_state(4096)
    while done < total:
        n = int(round(cfg.video_s * rng.uniform(0.7, 1.3) * cfg.fps))
        left = total - done
        n = max(min(n, left), int(2 * cfg.fps)) if left >= 2 * cfg.fps else left
        n = max(n, 10)
        photo = pool[order[i % len(pool)]]
        subject = rows[photo]["identity"]
        mix, mix_t = "", 0.0
        if cfg.identity_mix > 0 and rng.random() < cfg.identity_mix:
            partners = [p for p in photos(rows[photo]["split"])
                        if compatible(load(photo), load(p))]
            if partners:
                mix = partners[int(rng.integers(len(partners)))]
                mix_t = round(float(rng.uniform(*cfg.mix_t)), 3)
        specs.append(VideoSpec(video=f"{subject}_{i + 1:03d}", subject=subject, photo=photo,
                               n_frames=n, seed=int(child_seeds[i % 4096]) + i // 4096,
                               mix=mix, mix_t=mix_t))
        done += n
        i += 1
    return specs


#: Child seed streams of the scenes after scene cuts: which photo, then each scene.
STREAM_CUT_PHOTOS, STREAM_CUT_SCENES = 14, 15


def cut_photos(spec: VideoSpec, cfg: SynthConfig, n_cuts: int) -> list[str]:
    """The photo of the scene after each cut: with p ``cut_new_identity`` a photo of
    another identity of the same split (so splits stay disjoint), else the video's own."""
    if n_cuts == 0:
        return []
    rng = np.random.default_rng([spec.seed, STREAM_CUT_PHOTOS])
    rows = {r["id"]: r for r in manifest()}
    others = [p for p in photos(rows[spec.photo]["split"]) if rows[p]["identity"] != spec.subject]
    out = []
    for _ in range(n_cuts):
        new = rng.random() < cfg.cut_new_identity and others
        out.append(others[int(rng.integers(len(others)))] if new else spec.photo)
    return out


def make_video(spec: VideoSpec, cfg: SynthConfig, gen: dict
               ) -> tuple[Timeline, Scene, NoiseBank | None]:
    """Timeline, first scene and noise of one video (deterministic in ``spec.seed``)."""
    tl, scenes, noise = make_video_scenes(spec, cfg, gen)
    return tl, scenes[0], noise


def make_video_scenes(spec: VideoSpec, cfg: SynthConfig, gen: dict
                      ) -> tuple[Timeline, list[Scene], NoiseBank | None]:
    """Timeline, scenes and noise of one video (deterministic in ``spec.seed``).

    There is one scene more than ``timeline.cuts``: scene ``j`` shows frames
    ``cuts[j-1]`` to ``cuts[j] - 1``. A scene after a cut is built afresh (placement,
    augmentation, background) from :func:`cut_photos`' photo.
    """
    scene_rng = np.random.default_rng([spec.seed, 1])
    photo = load(spec.photo)
    if spec.mix:
        photo = morph(photo, load(spec.mix), spec.mix_t)
    scene = build_scene(photo, cfg, scene_rng)
    cuts = sample_cuts(spec.n_frames, cfg, spec.seed)
    scenes = [scene]
    for j, pid in enumerate(cut_photos(spec, cfg, len(cuts))):
        other = photo if pid == spec.photo else load(pid)
        scenes.append(build_scene(other, cfg,
                                  np.random.default_rng([spec.seed, STREAM_CUT_SCENES, j])))
    face_x = np.full(spec.n_frames, float(scene.centre[0]))
    for c, sc in zip(cuts, scenes[1:]):
        face_x[c:] = float(sc.centre[0])
    tl = build_timeline(spec.n_frames, cfg, gen, spec.seed, face_x=face_x)
    if tl.cuts != cuts:
        raise RuntimeError(f"{spec.video}: timeline cuts {tl.cuts} != planned {cuts}")
    noise = NoiseBank(scene.base.shape, tl.noise_sigma, spec.seed) if tl.noise_sigma > 0 else None
    return tl, scenes, noise


def iter_frames(spec: VideoSpec, cfg: SynthConfig, gen: dict):
    """(timeline, generator of frames) of one video."""
    tl, scenes, noise = make_video_scenes(spec, cfg, gen)
    starts = [0, *tl.cuts]

    def frames():
        j = 0
        for i in range(tl.n_frames):
            while j + 1 < len(starts) and i >= starts[j + 1]:
                j += 1
            yield render_frame(scenes[j], tl, i, noise)
    return tl, frames()


def _write_video(args: tuple) -> dict:
    """Worker: render one video to disk; returns its labels and distractors."""
    import cv2

    spec, cfg, gen, out, fmt = args
    cv2.setNumThreads(1)
    tl, frames = iter_frames(spec, cfg, gen)
    base = 1 if fmt == "casme2" else 0
    if fmt == "casme2":
        folder = Path(out) / spec.subject / spec.video
        folder.mkdir(parents=True, exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, tl.jpeg_quality]
        for i, frame in enumerate(frames):
            cv2.imwrite(str(folder / f"img{i + 1}.jpg"), frame, params)
    else:
        path = Path(out) / f"{spec.video}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), cfg.fps,
                                 (cfg.width, cfg.height))
        if not writer.isOpened():
            raise RuntimeError(f"cv2.VideoWriter cannot open {path} (mp4v)")
        try:
            for frame in frames:
                writer.write(frame)
        finally:
            writer.release()
    events = [dict(subject=spec.subject, video=spec.video, onset=e.onset + base,
                   apex=e.apex + base, offset=e.offset + base, emotion=e.emotion, kind=e.kind,
                   aus=e.au_text, amplitude=e.amplitude, truncated=int(e.truncated))
              for e in tl.events]
    after = dict(zip(tl.cuts, cut_photos(spec, cfg, len(tl.cuts))))
    dis = [dict(video=spec.video, kind=d.kind, onset=d.onset + base, offset=d.offset + base,
                label=f"{spec.video}_{d.event + 1}" if d.event >= 0 else "",
                detail=after[d.onset] if d.kind == "scene_cut" else "")
           for d in tl.distractors]
    cuts = ";".join(f"{c + base}:{after[c]}" for c in tl.cuts)
    return dict(spec=asdict(spec), events=events, distractors=dis, frames=tl.n_frames,
                cuts=cuts)


def write_labels(out: Path, fmt: str, events: list[dict]) -> Path:
    """The label file of a set: the CAS(ME)^2 sheet or the MEGC CSV."""
    if fmt == "casme2":
        import pandas as pd

        rows, counts = [], Counter()
        for e in events:
            counts[e["video"]] += 1
            rows.append([e["subject"], f"{e['video']}_{counts[e['video']]}", e["onset"],
                         e["apex"], e["offset"], e["aus"], e["emotion"],
                         f"{e['kind']}-expression", e["emotion"]])
        path = out / LABEL_SHEET
        pd.DataFrame(rows).to_excel(path, sheet_name="CASFEcode_final", header=False,
                                    index=False)
        return path
    path = out / LABEL_CSV
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["subject", "video", "onset", "offset", "emotion", "type", "apex",
                    "truncated"])
        for e in events:
            w.writerow([e["subject"], e["video"], e["onset"], e["offset"], e["emotion"],
                        e["kind"], e["apex"], e.get("truncated", 0)])
    return path


def generate(out: str | Path, minutes: float, split: str = "train", seed: int = 0,
             fmt: str = "casme2", cfg: SynthConfig | None = None, workers: int = 1,
             photo_ids: list[str] | None = None, progress: bool = True,
             stats_path: str | Path | None = None) -> dict:
    """Generate a SynthME set into ``out``; returns the summary (also in synthme.json).

    Raises:
        ValueError: bad arguments, or ``out`` exists and is not empty.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    cfg = cfg or SynthConfig()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"output folder {out} is not empty (choose a new --out)")
    out.mkdir(parents=True, exist_ok=True)
    gen = (load_stats(stats_path) if stats_path else load_stats())["generator"]
    specs = plan(minutes, split, seed, cfg, photo_ids)
    jobs = [(s, cfg, gen, str(out), fmt) for s in specs]
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(s.n_frames for s in specs), unit="frame", desc=f"SynthME {split}")
    if workers == 1:
        for job in jobs:
            r = _write_video(job)
            results[r["spec"]["video"]] = r
            if bar:
                bar.update(r["frames"])
    else:
        import multiprocessing as mp

        with mp.get_context("spawn" if os.name == "nt" else "fork").Pool(workers) as pool:
            for r in pool.imap_unordered(_write_video, jobs):
                results[r["spec"]["video"]] = r
                if bar:
                    bar.update(r["frames"])
    if bar:
        bar.close()
    wall = time.perf_counter() - t0
    ordered = [results[s.video] for s in specs]
    events = [e for r in ordered for e in r["events"]]
    dis = [d for r in ordered for d in r["distractors"]]
    label_path = write_labels(out, fmt, events)
    with open(out / "videos.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["subject", "video", "photo", "mix", "mix_t", "frames", "fps", "events",
                    "seed", "cuts"])
        for r in ordered:
            s = r["spec"]
            w.writerow([s["subject"], s["video"], s["photo"], s["mix"], s["mix_t"], r["frames"],
                        cfg.fps, len(r["events"]), s["seed"], r["cuts"]])
    with open(out / "distractors.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["video", "kind", "onset", "offset", "label", "detail"])
        for d in dis:
            w.writerow([d["video"], d["kind"], d["onset"], d["offset"], d["label"], d["detail"]])
    n_frames = sum(r["frames"] for r in ordered)
    summary = {
        "format": fmt, "split": split, "seed": seed, "labels": label_path.name,
        "videos": len(ordered), "subjects": len({s.subject for s in specs}),
        "frames": n_frames, "minutes": round(n_frames / cfg.fps / 60, 3),
        "events": dict(Counter(e["kind"] for e in events)),
        "emotions": dict(Counter(e["emotion"] for e in events)),
        "distractors": dict(Counter(d["kind"] for d in dis)),
        "wall_s": round(wall, 2), "frames_per_s": round(n_frames / max(wall, 1e-9), 1),
        "workers": workers, "config": asdict(cfg),
        "first_frame": 1 if fmt == "casme2" else 0,
    }
    (out / "synthme.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
