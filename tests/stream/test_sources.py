import os
import time
from fractions import Fraction

import cv2
import numpy as np
import pytest

from stream.capture import CaptureThread
from stream.ring import Policy, RingBuffer
from stream.sources import (ArraySource, ImageSequenceSource, SourceError, VideoFileSource,
                            WebcamSource, open_source)
from bench.capture import write_test_video
from tests.stream import media


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


# --- no loss, and what cannot be read is said (issue 18) ------------------------------------
def _drain(src):
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    return frames


def _statuses(src, name=None):
    return [s for s in src.take_statuses() if name is None or s.status == name]


def test_clean_file_reads_every_promised_frame_and_says_nothing(tmp_path):
    with VideoFileSource(media.make_cv2_video(tmp_path / "v.mp4", 45)) as src:
        frames = _drain(src)
        assert [f.index for f in frames] == list(range(45))
        assert src.frames_read == src.frames_promised == 45
        assert src.take_statuses() == []


def test_zero_duration_frames_are_all_read(tmp_path):
    """Frame durations all 0: the old rewind to frame 0 lost a third of the frames."""
    with VideoFileSource(media.make_zero_duration(tmp_path / "z.mp4", 72)) as src:
        frames = _drain(src)
        assert len(frames) == 72 and src.frames_read == 72
        times = [f.t_capture for f in frames]
        assert times == pytest.approx([i / src.fps for i in range(72)])
        # The container reports an absurd rate (2160 fps): said, and 30 used.
        (fps,) = _statuses(src, "source_fps")
        assert fps.detail["reported"] > 1000 and fps.detail["fps_used"] == 30.0


def test_corrupt_middle_reads_on_past_the_damage(tmp_path):
    path = media.make_corrupt_middle(tmp_path / "c.mp4", 240)
    with VideoFileSource(path) as src:
        frames = _drain(src)
        statuses = src.take_statuses()
        assert src.frames_promised == 240
    lost = [s for s in statuses if s.status == "source_short"]
    assert lost and all(s.detail["reason"] == "undecodable" for s in lost)
    n_lost = sum(s.detail["count"] for s in lost)
    # Every frame is either read or counted lost; frames after the damage were read.
    assert len(frames) + n_lost == 240 and frames[-1].index == 239
    assert len(frames) > 200
    # Indices keep the container's positions: the gap is where the lost frames were.
    indices = [f.index for f in frames]
    gaps = [(a, b) for a, b in zip(indices, indices[1:]) if b != a + 1]
    assert [(a + 1, b - a - 1) for a, b in gaps] == [(s.frame, s.detail["count"]) for s in lost]
    assert [f.t_capture for f in frames] == pytest.approx([i / 30 for i in indices], abs=1e-3)


def test_cut_file_says_it_ended_early(tmp_path):
    with VideoFileSource(media.make_cut_avi(tmp_path / "cut.avi", 240)) as src:
        frames = _drain(src)
        (short,) = _statuses(src, "source_short")
    assert 0 < len(frames) < 240
    assert short.detail == {"reason": "ended_early", "count": 240 - len(frames),
                            "promised": 240, "read": len(frames)}
    assert short.frame == len(frames)


@pytest.mark.parametrize("rate, used, said", [
    (1000, 1000.0, False),                  # a real high-speed clip: kept (was 30)
    (5000, 30.0, True),                     # absurd: said, 30 used, times index / 30
    (Fraction(1, 100), 30.0, True),         # ~0 fps metadata
])
def test_container_fps_metadata(tmp_path, rate, used, said):
    with VideoFileSource(media.make_fps_metadata(tmp_path / "f.mp4", rate)) as src:
        frames = _drain(src)
        statuses = _statuses(src, "source_fps")
    assert src.fps == pytest.approx(used) and len(frames) == 30
    assert bool(statuses) == said
    assert [f.t_capture for f in frames] == pytest.approx([i / used for i in range(30)],
                                                          abs=1e-3)


def test_container_fps_unusable_takes_the_given_fps(tmp_path):
    with VideoFileSource(media.make_fps_metadata(tmp_path / "f.mp4", 5000), fps=25) as src:
        assert src.fps == 25.0
        (said,) = _statuses(src, "source_fps")
        assert said.detail["fps_used"] == 25.0 and "--fps" not in said.detail["why"]
    with VideoFileSource(media.make_cv2_video(tmp_path / "ok.mp4", 5), fps=25) as src:
        assert src.fps == 30.0  # a usable container rate wins


def test_variable_frame_rate_keeps_container_times(tmp_path):
    with VideoFileSource(media.make_vfr(tmp_path / "vfr.mp4")) as src:
        frames = _drain(src)
        assert src.take_statuses() == []
    times = np.array([f.t_capture for f in frames])
    gaps = np.round(np.diff(times) * 1000).astype(int)
    assert list(gaps[:5]) == [33, 33, 100, 20, 50] and len(frames) == 31


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), 0, -30, 0.5, 5000, "fast"])
def test_fps_checks(tmp_path, bad):
    from stream.sources import check_fps
    with pytest.raises(ValueError, match="fps"):
        check_fps(bad)
    with pytest.raises(ValueError, match="fps"):
        ImageSequenceSource(tmp_path, fps=bad)
    with pytest.raises(ValueError, match="fps"):
        ArraySource(np.zeros((2, 4, 4, 3), np.uint8), fps=bad)
    _write_images(tmp_path / "seq", [(0, "1.png")])
    with pytest.raises(SourceError, match="--fps"):
        open_source(str(tmp_path / "seq"), fps=bad)


def test_frame_folder_skips_corrupt_and_truncated_jpegs_and_says_so(tmp_path, capfd):
    folder = media.write_frames(tmp_path / "seq", [f"img{n}.jpg" for n in range(1, 9)])
    (folder / "img3.jpg").write_bytes(b"\xff\xd8 not really a jpeg " * 50)
    media.truncate(folder / "img6.jpg")
    with ImageSequenceSource(folder, fps=30) as src:
        frames = _drain(src)
        statuses = src.take_statuses()
    assert [f.index for f in frames] == [0, 1, 3, 4, 6, 7]
    assert [(s.status, s.frame, s.detail["reason"], s.detail["file"]) for s in statuses] == [
        ("source_short", 2, "undecodable", "img3.jpg"),
        ("source_short", 5, "undecodable", "img6.jpg")]
    assert src.frames_undecodable == 2 and src.frames_read == 6
    assert "JPEG" not in capfd.readouterr().err  # no libjpeg "Premature end" line


def test_frame_folder_gap_keeps_file_numbers_and_says_so(tmp_path):
    folder = media.write_frames(tmp_path / "seq", [f"img{n}.jpg" for n in (1, 2, 3, 7, 8)])
    with ImageSequenceSource(folder, fps=10) as src:
        frames = _drain(src)
        (gap,) = src.take_statuses()
        assert src.frames_promised == 8 and src.frame_count == 5 and src.first_number == 1
    assert [f.index for f in frames] == [0, 1, 2, 6, 7]  # index = file number - 1
    assert [f.t_capture for f in frames] == pytest.approx([0, .1, .2, .6, .7])
    assert (gap.status, gap.frame, gap.detail["reason"], gap.detail["count"]) == (
        "source_short", 3, "missing", 3)
    assert "4..6" in gap.detail["files"]


def test_frame_folder_first_image_corrupt_and_all_corrupt(tmp_path):
    folder = media.write_frames(tmp_path / "seq", [f"{n}.png" for n in range(3)])
    (folder / "0.png").write_bytes(b"junk")
    with ImageSequenceSource(folder, fps=30) as src:
        assert src.size == media.SIZE
        assert [f.index for f in _drain(src)] == [1, 2]
        assert [s.detail["file"] for s in src.take_statuses()] == ["0.png"]
    for name in ("1.png", "2.png"):
        (folder / name).write_bytes(b"junk")
    with pytest.raises(SourceError, match="no image .* decodes"):
        ImageSequenceSource(folder, fps=30).open()


def test_frame_folder_two_files_with_one_number(tmp_path):
    folder = media.write_frames(tmp_path / "seq", ["img1.jpg", "img2.jpg", "img02.png"])
    with pytest.raises(SourceError, match="two frames numbered 2"):
        ImageSequenceSource(folder, fps=30).open()


@pytest.mark.parametrize("kind", ["gray", "rgba", "16bit"])
def test_frame_folder_gray_rgba_16bit_become_bgr(tmp_path, kind):
    make = {"gray": lambda k: media.pattern(k)[:, :, 0],
            "rgba": lambda k: np.dstack([media.pattern(k), np.full(media.SIZE[::-1], 128,
                                                                   np.uint8)]),
            "16bit": lambda k: media.pattern(k).astype(np.uint16) * 257}[kind]
    folder = media.write_frames(tmp_path / "seq", ["0.png", "1.png"], image=make)
    with ImageSequenceSource(folder, fps=30) as src:
        frames = _drain(src)
    assert len(frames) == 2
    assert all(f.image.shape == (96, 160, 3) and f.image.dtype == np.uint8 for f in frames)


def test_gray_video_becomes_bgr(tmp_path):
    with VideoFileSource(media.make_gray_video(tmp_path / "g.mkv", 10)) as src:
        frames = _drain(src)
    assert len(frames) == 10 and frames[0].image.shape == (96, 160, 3)


def test_array_source_takes_gray_and_bgra():
    gray = np.zeros((3, 4, 6), np.uint8)
    bgra = np.zeros((3, 4, 6, 4), np.uint8)
    for frames in (gray, bgra):
        with ArraySource(frames) as src:
            assert src.read().image.shape == (4, 6, 3)
    with pytest.raises(ValueError, match=r"frames\[1\] must be"):
        with ArraySource([np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6, 2), np.uint8)]) as s:
            s.read(), s.read()


def _written(path, data):
    path.write_bytes(data)
    return path


def _folder(path):
    path.mkdir()
    return path


@pytest.mark.parametrize("make, match", [
    (lambda p: _written(p / "empty.mp4", b""), "empty file"),
    (lambda p: _folder(p / "adir.mp4"), "not a file"),
    (lambda p: _written(p / "notes.mp4", b"hello\n" * 100), "cannot decode"),
    (lambda p: media.make_zero_frames(p / "none.mp4"), "cannot decode|no frames"),
])
def test_more_bad_video_files(tmp_path, make, match):
    start = time.monotonic()
    with pytest.raises(SourceError, match=match):
        VideoFileSource(make(tmp_path)).open()
    assert time.monotonic() - start < 5


# --- a camera that goes away ---------------------------------------------------------------
def test_camera_lost_without_reconnect_ends_and_says_so(fake_camera):
    fake_camera.plan = {"frames": 5, "down_for": 0}
    with WebcamSource(0, open_timeout_s=0.1) as src:
        frames = _drain(src)
        statuses = src.take_statuses()
    assert len(frames) == 5  # the first frame (read while opening) is not lost
    assert [(s.status, s.frame) for s in statuses] == [("source_lost", 5)]


def test_camera_lost_and_back_with_reconnect(fake_camera):
    fake_camera.plan = {"frames": 4, "down_for": 3}
    with WebcamSource(0, open_timeout_s=0.1, reconnect_s=5) as src:
        frames = [src.read() for _ in range(10)]
        statuses = src.take_statuses()
    assert all(f is not None for f in frames)
    assert [f.index for f in frames] == list(range(10))
    assert [(s.status, s.frame) for s in statuses] == [
        ("source_lost", 4), ("source_resumed", 4), ("source_lost", 8), ("source_resumed", 8)]
    assert src.reconnects == 2 and statuses[1].detail["gap_s"] >= 0


def test_camera_that_stays_away_ends_after_reconnect_s(fake_camera):
    fake_camera.plan = {"frames": 2, "down_for": 10**6}
    with WebcamSource(0, open_timeout_s=0.1, reconnect_s=0.3) as src:
        start = time.monotonic()
        assert len(_drain(src)) == 2
        assert time.monotonic() - start < 3
        assert [s.status for s in src.take_statuses()] == ["source_lost"]


def test_close_ends_a_reconnect_wait(fake_camera):
    import threading
    fake_camera.plan = {"frames": 1, "down_for": 10**6}
    src = WebcamSource(0, open_timeout_s=0.1, reconnect_s=60).open()
    src.read()
    done = threading.Event()
    threading.Thread(target=lambda: (src.read(), done.set()), daemon=True).start()
    time.sleep(0.2)
    src.close()
    assert done.wait(3)


def test_webcam_argument_checks():
    with pytest.raises(ValueError, match="reconnect_s"):
        WebcamSource(0, reconnect_s=float("inf"))
    with pytest.raises(ValueError, match="fps"):
        WebcamSource(0, fps=0)
