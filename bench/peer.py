"""MEGC-style offline peer (a section of ``make bench``): the feature path of classic spotters.

    python -m bench.peer [--clip PATH] [--peer-frames 20]

Per frame: face-mesh landmarks, the aligned 128×128 crop, and TV-L1 optical flow
(OpenCV's default DualTVL1 parameters) between frames k apart — the feature path of
the MEAN / SOFTNet / MTSN spotting code — timed on ``--peer-frames`` frames of the
clip (it is slow). :func:`run` puts it under ``report["pipeline"]`` next to the
whole-pipeline figure of :mod:`bench.pipeline`, with the throughput ratio.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from engine.config import StreamConfig
from engine.contracts import Frame
from stream.face import FaceTracker
from stream.sources import DEMO_CLIP


def read_frames(path: Path, timed: int, cfg: StreamConfig = StreamConfig()
                ) -> tuple[list[np.ndarray], float]:
    """The first ``timed`` + k BGR frames of ``path`` (k: the flow gap) and its frame rate."""
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while len(frames) < timed + cfg.flow_k(fps):
        ok, img = cap.read()
        if not ok:
            break
        frames.append(img)
    cap.release()
    return frames, fps


def run_peer(frames: list[np.ndarray], fps: float, cfg: StreamConfig = StreamConfig()) -> dict:
    """MEGC-style feature path: landmarks + aligned crop + TV-L1 (defaults) vs frame t−k."""
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
    if not timed:
        raise ValueError(f"run_peer: need more than k={k} frames, got {len(frames)}")
    return {"frames": len(timed), "ms_per_frame": round(float(np.mean(timed)), 2),
            "fps": round(1e3 / float(np.mean(timed)), 3), "k": k,
            "method": "face mesh + 128x128 aligned crop + cv2.optflow DualTVL1 (defaults)"}


def run(report: dict, clip: str | Path | None = None, peer_frames: int = 20) -> None:
    """Add ``megc_peer`` (and, after :mod:`bench.pipeline`, ``speedup_vs_peer``) to
    ``report["pipeline"]``."""
    path = Path(clip) if clip else DEMO_CLIP
    if not path.is_file():
        print(f"MEGC-style peer: no clip at {path}; skipped")
        return
    frames, fps = read_frames(path, peer_frames)
    peer = run_peer(frames, fps)
    section = report.setdefault("pipeline", {})
    section["megc_peer"] = peer
    line = f"  MEGC-style peer: {peer['ms_per_frame']:.0f} ms/frame ({peer['fps']:.2f} fps)"
    ours = section.get("file_mode", {}).get("fps")
    if ours:
        section["speedup_vs_peer"] = round(ours / peer["fps"], 1)
        line += f" -> fedn-live is {section['speedup_vs_peer']}x faster"
    print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=None, help="video (default: the demo clip)")
    parser.add_argument("--peer-frames", type=int, default=20, help="frames timed")
    args = parser.parse_args(argv)
    if args.peer_frames < 1:
        parser.error(f"--peer-frames must be >= 1, got {args.peer_frames}")
    report: dict = {}
    run(report, args.clip, args.peer_frames)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
