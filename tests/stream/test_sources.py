import os
import time

import cv2
import numpy as np
import pytest

from stream.capture import CaptureThread
from stream.ring import Policy, RingBuffer
from stream.sources import (ArraySource, ImageSequenceSource, SourceError, VideoFileSource,
                            WebcamSource, open_source)
from stream.bench import write_test_video


def _write_images(folder, names, h=8, w=10):
    folder.mkdir(parents=True, exist_ok=True)
    for value, name in names:
        cv2.imwrite(str(folder / name), np.full((h, w, 3), value, np.uint8))


def test_file_source_through_capture_thread_every_frame_once_in_order(tmp_path):
    video = write_test_video(tmp_path / "v.mp4", 75, size=(160, 96))
    source = VideoFileSource(video).open()
    assert source.frame_count == 75 and source.size == (160, 96)
    assert source.fps == pytest.approx(30.0)
    ring = RingBuffer(4, Policy.BLOCK)  # small ring: forces the reader to wait
    capture = CaptureThread(source, ring).start()
    indices, times = [], []
    while (f := ring.get(timeout=5)) is not None:
        indices.append(f.index)
        times.append(f.t_capture)
        time.sleep(0.001)
    capture.stop()
    assert indices == list(range(75))
    assert all(b > a for a, b in zip(times, times[1:]))
    assert times[1] - times[0] == pytest.approx(1 / 30, abs=2e-3)
    assert ring.stats().dropped == 0


@pytest.mark.parametrize("scheme, names", [
    ("casme2", [f"img{n}.jpg" for n in (1, 2, 3, 10, 11, 100)]),
    ("samm", [f"006_1_{n:04d}.jpg" for n in (1, 2, 9, 10, 11, 120)]),
    ("numeric", [f"{n}.png" for n in (0, 1, 2, 10, 20, 100)]),
])
def test_image_sequence_numeric_order(tmp_path, scheme, names):
    # pixel value = rank in numeric order; lexical order would interleave 10 before 2
    _write_images(tmp_path / "seq", list(zip(range(0, 240, 40), names)))
    with ImageSequenceSource(tmp_path / "seq", fps=200) as src:
        assert src.scheme == scheme and src.frame_count == 6
        values = []
        while (f := src.read()) is not None:
            values.append(int(f.image[0, 0, 0]))
            assert f.t_capture == pytest.approx(f.index / 200)
    assert values == sorted(values)  # JPEG is lossy: monotone, not exact
    assert len(set(values)) == 6


def test_array_source_and_live_flag():
    frames = np.zeros((5, 4, 6, 3), np.uint8)
    with ArraySource(frames, fps=10, live=True) as src:
        assert src.live and src.size == (6, 4) and src.frame_count == 5
        assert [src.read().t_capture for _ in range(5)] == pytest.approx([0, .1, .2, .3, .4])
        assert src.read() is None
    with pytest.raises(ValueError, match="uint8"):
        ArraySource(np.zeros((2, 4, 4), np.float32))


def _random_bytes(path):
    path.write_bytes(os.urandom(20_000))
    return path


def _truncated(path):
    video = write_test_video(path.with_name("full.mp4"), 30, size=(160, 96))
    data = video.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing.mp4", "not found"),
    (lambda p: _random_bytes(p / "noise.mp4"), "cannot decode"),
])
def test_bad_video_files(tmp_path, make, match):
    start = time.monotonic()
    with pytest.raises(SourceError, match=match):
        VideoFileSource(make(tmp_path)).open()
    assert time.monotonic() - start < 5


def test_truncated_video_ends_cleanly_or_errors(tmp_path):
    path = _truncated(tmp_path / "cut.mp4")
    start = time.monotonic()
    try:
        src = VideoFileSource(path).open()
    except SourceError as exc:  # moov atom cut off: cannot open at all
        assert "cannot decode" in str(exc)
    else:
        n = 0
        while src.read() is not None:
            n += 1
        src.close()
        assert n < 30
    assert time.monotonic() - start < 5


def test_folder_without_images(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="no images"):
        ImageSequenceSource(tmp_path, fps=30).open()


def test_unavailable_camera_fails_fast():
    start = time.monotonic()
    with pytest.raises(SourceError, match="not available|no frame"):
        WebcamSource(97, open_timeout_s=1).open()
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("spec, match", [
    ("webcam:x", "webcam:N"), ("/no/such/file.mp4", "unknown source")])
def test_open_source_bad_specs(spec, match):
    with pytest.raises(SourceError, match=match):
        open_source(spec)


def test_folder_source_needs_fps(tmp_path):
    _write_images(tmp_path / "seq", [(0, "img1.jpg")])
    with pytest.raises(SourceError, match="--fps"):
        open_source(str(tmp_path / "seq"))
    assert isinstance(open_source(str(tmp_path / "seq"), fps=30), ImageSequenceSource)
