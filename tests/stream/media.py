"""Bad and odd media files for the source and bad-input tests, made on the fly (small, fast).

Each ``make_*`` writes one file (or folder) under the given path and returns it.
PyAV (installed with aiortc) writes the containers whose packets need shaping:
zero frame durations, variable frame rate, odd frame-rate metadata.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

SIZE = (160, 96)  # w, h of the small test clips


def pattern(i: int, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Frame ``i`` of a test clip: a moving gradient with the index drawn on it (BGR)."""
    w, h = size
    base = np.add.outer(np.arange(h), np.arange(w)).astype(np.uint8)
    img = np.dstack([np.roll(base, 3 * i, axis=1), np.roll(base, 2 * i, axis=0), base])
    cv2.putText(img, str(i), (5, h - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    return img


def write_av(path: Path, n: int, rate: float | Fraction = 30, codec: str = "mpeg4",
             size: tuple[int, int] = SIZE, pix_fmt: str = "yuv420p",
             pts: Callable[[int], int] | None = None, time_base: Fraction | None = None,
             packet_ts: Callable[[int], int] | None = None,
             frame: Callable[[int], np.ndarray] | None = None) -> Path:
    """A clip written with PyAV.

    Args:
        rate: the stream's declared frame rate (container metadata).
        pts: frame ``i``'s presentation time in ``time_base`` units (default ``i``).
        packet_ts: rewrite each packet's pts/dts (and duration 0) before muxing.
        frame: frame ``i`` as a BGR image (default :func:`pattern`).
    """
    av = pytest.importorskip("av")  # installed with aiortc (the ui extra)

    out = av.open(str(path), "w")
    stream = out.add_stream(codec, rate=Fraction(rate).limit_denominator(1000))
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], pix_fmt
    if time_base is not None:
        stream.codec_context.time_base = time_base

    def mux(packet) -> None:
        if packet_ts is not None and packet.pts is not None:
            packet.pts = packet.dts = packet_ts(packet.pts)
            packet.duration = 0
        out.mux(packet)

    if n == 0:
        out.start_encoding()  # writes the header of a container without frames
    for i in range(n):
        img = (frame or (lambda k: pattern(k, size)))(i)
        vf = av.VideoFrame.from_ndarray(img, format="bgr24")
        vf.pts = i if pts is None else pts(i)
        if time_base is not None:
            vf.time_base = time_base
        for packet in stream.encode(vf):
            mux(packet)
    for packet in stream.encode():
        mux(packet)
    out.close()
    return path


def make_cv2_video(path: Path, n: int, fps: float = 30.0, size: tuple[int, int] = SIZE,
                   fourcc: str = "mp4v") -> Path:
    """A clip written with ``cv2.VideoWriter`` (exact frame count in the container)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {path}"
    for i in range(n):
        writer.write(pattern(i, size))
    writer.release()
    return path


def make_zero_duration(path: Path, n: int = 72) -> Path:
    """An MP4 whose packets all carry time 0 (every frame duration 0)."""
    return write_av(path, n, packet_ts=lambda t: 0)


def make_corrupt_middle(path: Path, n: int = 240) -> Path:
    """An MP4 with ~8 KB of random bytes over the middle of its frame data."""
    make_cv2_video(path, n)
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 8000] = np.random.default_rng(0).integers(0, 256, 8000, np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def make_cut_avi(path: Path, n: int = 240) -> Path:
    """An MJPEG AVI cut in half (its header still promises ``n`` frames)."""
    full = make_cv2_video(path.with_name("full_" + path.name), n, fourcc="MJPG")
    data = full.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def make_vfr(path: Path, gaps_ms: tuple[int, ...] = (33, 33, 100, 20, 50)) -> Path:
    """An MP4 (1 ms time base) whose frame gaps vary: frame times 0, 33, 66, 166, ... ms."""
    times = np.concatenate([[0], np.cumsum(gaps_ms * 6)]).astype(int)
    write_av(path, len(times), rate=30, time_base=Fraction(1, 1000),
             pts=lambda i: int(times[i]))
    return path


def make_fps_metadata(path: Path, rate: float | Fraction, n: int = 30) -> Path:
    """A clip whose container declares ``rate`` fps (frames at that rate's timestamps)."""
    if Fraction(rate).denominator == 1 and rate >= 1:
        return make_cv2_video(path, n, fps=float(rate))
    # Below 1 fps (e.g. 1/100: "0.01 fps"): one time unit of 1/rate seconds per frame.
    return write_av(path, n, rate=rate, time_base=1 / Fraction(rate))


def make_zero_frames(path: Path) -> Path:
    """A valid MP4 container with a video stream and no frame."""
    return write_av(path, 0)


def make_gray_video(path: Path, n: int = 20) -> Path:
    """A lossless gray (single-plane) clip."""
    return write_av(path, n, codec="ffv1", pix_fmt="gray")


def make_random_bytes(path: Path, size: int = 20_000) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def write_frames(folder: Path, names: list[str], size: tuple[int, int] = SIZE,
                 image: Callable[[int], np.ndarray] | None = None) -> Path:
    """A frame folder: file ``names[k]`` holds ``pattern(k)`` (or ``image(k)``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        ok = cv2.imwrite(str(folder / name), (image or (lambda j: pattern(j, size)))(k))
        assert ok, name
    return folder


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Cut a file to ``keep`` of its bytes (a truncated download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
