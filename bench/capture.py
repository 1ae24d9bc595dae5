"""Capture and ring sections of ``make bench``: frames/s of the capture thread, ring cost.

    python -m bench.capture [--frames 600]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from engine.contracts import Frame
from stream.capture import CaptureThread
from stream.ring import Policy, RingBuffer
from stream.sources import VideoFileSource


def write_test_video(path: Path, frames: int, size: tuple[int, int] = (640, 360),
                     fps: float = 30.0) -> Path:
    """A moving-gradient MP4 (mp4v) of ``frames`` frames; each frame's index is drawn on it."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f"cv2.VideoWriter cannot write {path}")
    base = np.add.outer(np.arange(h), np.arange(w)).astype(np.uint8)
    for i in range(frames):
        img = np.dstack([np.roll(base, i, axis=1), np.roll(base, 2 * i, axis=0), base])
        cv2.putText(img, str(i), (20, 60), cv2.FONT_HERSHEY_SIMPLEX, 2, (255, 255, 255), 3)
        writer.write(img)
    writer.release()
    return path


def bench_capture(video: Path) -> dict:
    """Frames/s of the capture thread reading a file through a ``block`` ring."""
    source = VideoFileSource(video).open()
    ring = RingBuffer(64, Policy.BLOCK)
    start = time.perf_counter()
    capture = CaptureThread(source, ring).start()
    n = 0
    while ring.get() is not None:
        n += 1
    elapsed = time.perf_counter() - start
    capture.stop()
    source.close()
    return {"frames": n, "seconds": round(elapsed, 3), "fps": round(n / elapsed, 1),
            "size": list(source.size)}


def bench_ring(frames: int = 5000, size: tuple[int, int] = (640, 360)) -> dict:
    """Per-frame cost (µs) of put + get on one thread for a 640×360 frame."""
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    ring = RingBuffer(64, Policy.DROP_OLDEST)
    start = time.perf_counter()
    for i in range(frames):
        ring.put(Frame(i, float(i), image))
        ring.get()
    per_frame_us = (time.perf_counter() - start) / frames * 1e6
    return {"frames": frames, "put_get_us": round(per_frame_us, 2),
            "ring_bytes": ring.nbytes}


def run(report: dict, frames: int = 600) -> None:
    """Add ``report["capture"]`` (a ``frames``-frame 640×360 file) and ``report["ring"]``."""
    with tempfile.TemporaryDirectory() as tmp:
        video = write_test_video(Path(tmp) / "bench_640x360.mp4", frames)
        report["capture"] = bench_capture(video)
    report["ring"] = bench_ring()
    print(f"capture: {report['capture']['fps']} frames/s on a 640x360 file "
          f"({report['capture']['frames']} frames)")
    print(f"ring: {report['ring']['put_get_us']} µs per frame (put + get, 640x360)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=600, help="frames in the capture clip")
    args = parser.parse_args(argv)
    if args.frames < 1:
        parser.error(f"--frames must be >= 1, got {args.frames}")
    report: dict = {}
    run(report, args.frames)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
