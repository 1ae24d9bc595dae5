"""Whole-pipeline benchmark (a section of ``make bench``), with a MEGC-style peer side by side.

    python -m stream.bench_pipeline [--clip PATH] [--peer-frames N] [--png bench/latency.png]

Measures, on a 640×360 clip (the SynthME demo clip when present):

* file mode (``block``, every frame): whole-pipeline fps and per-stage
  p50/p95/p99 from ``run_live``'s own summary;
* ``--realtime`` mode (the file paced like a camera): the emission delay of
  every final event after its offset frame arrived (``latency_ms``);
* the MEGC-style offline peer on the same frames: per-frame landmarks,
  aligned 128×128 crops and TV-L1 optical flow (OpenCV's default DualTVL1
  parameters) between frames k apart — the feature path of the MEAN / SOFTNet /
  MTSN spotting code — timed on ``--peer-frames`` frames (it is slow), and the
  throughput ratio.

A PNG of the per-stage latency distributions is written next to the JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from engine.config import StreamConfig
from stream.contracts import Frame
from stream.latency import LatencyStats


def _clip_path() -> Path | None:
    from stream.sources import DEMO_CLIP
    return DEMO_CLIP if DEMO_CLIP.exists() else None


def run_pipeline(path: Path, realtime: bool = False, max_frames: int | None = None) -> tuple:
    """(summary record, event records, per-stage LatencyStats) of one run_live-equivalent run."""
    from stream.pipeline import Pipeline
    from stream.sources import VideoFileSource

    records: list[dict] = []
    pipe = Pipeline(VideoFileSource(path), records.append, realtime=realtime,
                    max_frames=max_frames, log=lambda _: None)
    summary = pipe.run()
    return summary.record(), [r for r in records if r["type"] == "event"], pipe.latency


def run_peer(frames: list[np.ndarray], fps: float, cfg: StreamConfig = StreamConfig()) -> dict:
    """MEGC-style feature path: landmarks + aligned crop + TV-L1 (defaults) vs frame t−k."""
    import cv2

    from stream.face import FaceTracker

    tracker = FaceTracker(cfg)
    tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()  # default parameters, as the peer code
    k = cfg.flow_k(fps)
    crops: list[np.ndarray | None] = []
    per_frame = []
    for i, image in enumerate(frames):
        t0 = time.perf_counter()
        update = tracker.update(Frame(i, i / fps, image))
        crop = update.primary.crop
        crops.append(crop)
        if crop is not None and i >= k and crops[i - k] is not None:
            tvl1.calc(crops[i - k], crop, None)
        per_frame.append((time.perf_counter() - t0) * 1e3)
    tracker.close()
    timed = per_frame[k:]  # frames that computed a flow pair
    return {"frames": len(timed), "ms_per_frame": round(float(np.mean(timed)), 2),
            "fps": round(1e3 / float(np.mean(timed)), 3), "k": k,
            "method": "face mesh + 128x128 aligned crop + cv2.optflow DualTVL1 (defaults)"}


def save_latency_png(latency: LatencyStats, path: Path) -> None:
    """Box plot of per-stage latency samples."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = {k: v for k, v in latency.samples().items() if v.size}
    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.boxplot(list(samples.values()), whis=(1, 99), showfliers=False)
    ax.set_xticks(range(1, len(samples) + 1), list(samples))
    ax.set_ylabel("ms per call (whiskers p1–p99)")
    ax.set_title("fedn-live per-stage latency, file mode")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(report: dict, clip: str | Path | None = None, peer_frames: int = 20,
        png: str | Path = "bench/latency.png") -> None:
    """Add the ``pipeline`` section to ``report`` (and print it)."""
    import cv2

    path = Path(clip) if clip else _clip_path()
    if path is None:
        print("pipeline: no demo clip (stream/demo/demo.mp4) and no --clip; skipped")
        return
    summary, _, latency = run_pipeline(path)
    section: dict = {"clip": str(path), "file_mode": {
        k: summary[k] for k in ("frames_processed", "fps", "engine", "frames_with_face",
                                "missing_stages", "latency_ms")}}
    print(f"pipeline: {summary['fps']:.1f} fps over {summary['frames_processed']} frames "
          f"(engine {summary['engine']}, missing {summary['missing_stages'] or 'none'})")
    for stage, s in summary["latency_ms"].items():
        print(f"  {stage:10} p50 {s['p50']:7.3f}  p95 {s['p95']:7.3f}  p99 {s['p99']:7.3f} ms")
    if "engine" not in summary["missing_stages"]:
        _, events, _ = run_pipeline(path, realtime=True)
        delays = [e["latency_ms"] for e in events]
        micro = [e["latency_ms"] for e in events if e["kind"] == "micro"]
        section["realtime"] = {"events": len(events), "emission_delay_ms": {
            "all_p50": round(float(np.median(delays)), 1) if delays else None,
            "all_max": round(float(np.max(delays)), 1) if delays else None,
            "micro_max": round(float(np.max(micro)), 1) if micro else None}}
        print(f"  realtime: {len(events)} events, emission delay after offset "
              f"{section['realtime']['emission_delay_ms']}")
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while len(frames) < peer_frames + StreamConfig().flow_k(fps):
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    peer = run_peer(frames, fps)
    section["megc_peer"] = peer
    section["speedup_vs_peer"] = round(summary["fps"] / peer["fps"], 1)
    print(f"  MEGC-style peer: {peer['ms_per_frame']:.0f} ms/frame ({peer['fps']:.2f} fps) -> "
          f"fedn-live is {section['speedup_vs_peer']}x faster")
    save_latency_png(latency, Path(png))
    section["latency_png"] = str(png)
    report["pipeline"] = section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=None, help="640x360 video (default: the demo clip)")
    parser.add_argument("--peer-frames", type=int, default=20)
    parser.add_argument("--png", default="bench/latency.png")
    parser.add_argument("--out", default=None, help="also write the section as JSON here")
    args = parser.parse_args(argv)
    report: dict = {}
    run(report, args.clip, args.peer_frames, args.png)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
