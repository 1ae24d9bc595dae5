"""`make bench`: throughput and latency of each stage, printed and written as JSON.

    python -m stream.bench [--out bench/results.json] [--frames N]

Sections are added by the stages that exist: capture and ring here; the face
and flow stage (``stream.bench_face``), the engine backends and the whole
pipeline add theirs when present.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from stream.capture import CaptureThread
from stream.contracts import Frame
from stream.ring import Policy, RingBuffer
from stream.sources import VideoFileSource

#: Optional sections: module with a ``run(report: dict) -> None`` function.
SECTIONS = ("stream.bench_face", "engine.bench", "stream.bench_pipeline")


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/results.json", help="JSON report path")
    parser.add_argument("--frames", type=int, default=600, help="frames in the capture clip")
    args = parser.parse_args(argv)

    report: dict = {"machine": {"python": platform.python_version(),
                                "cpu": platform.processor() or platform.machine(),
                                "cv2": cv2.__version__}}
    with tempfile.TemporaryDirectory() as tmp:
        video = write_test_video(Path(tmp) / "bench_640x360.mp4", args.frames)
        report["capture"] = bench_capture(video)
    report["ring"] = bench_ring()
    print(f"capture: {report['capture']['fps']} frames/s on a 640x360 file "
          f"({report['capture']['frames']} frames)")
    print(f"ring: {report['ring']['put_get_us']} µs per frame (put + get, 640x360)")
    for module in SECTIONS:
        if importlib.util.find_spec(module) is None:
            print(f"{module}: not built yet, skipped")
            continue
        importlib.import_module(module).run(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
