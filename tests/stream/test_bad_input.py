"""The bad-input matrix (issue 18 item 2): every odd or broken input through the command line.

Each row ends, within 10 s, either in a one-line error with exit code 2, or in a run
that exits 0 and whose JSONL says what it could not do (a documented status) and ends
in a summary that counts what the container promised and what was read.

The command line runs in-process (the ``cli`` fixture of ``conftest.py``) with one
engine loaded for the module, so a row costs its own work only.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from tests.stream import media

pytest.importorskip("mediapipe")


def _folder_without_images(p: Path) -> Path:
    (p / "notes").mkdir()
    (p / "notes" / "readme.txt").write_text("no frames here")
    return p / "notes"


def _written(p: Path, name: str, data: bytes) -> Path:
    (p / name).write_bytes(data)
    return p / name


def _all_corrupt_folder(p: Path) -> Path:
    folder = media.write_frames(p / "seq", [f"{n}.jpg" for n in range(3)])
    for f in folder.iterdir():
        f.write_bytes(b"\xff\xd8 junk")
    return folder


# --- rows that end in a one-line error, exit 2 ---------------------------------------------
ERRORS = [
    ("missing path", lambda p: ["--source", str(p / "nope.mp4")], "unknown source"),
    ("directory for a file, no --fps", lambda p: ["--source", str(_folder_without_images(p))],
     "give its frame rate with --fps"),
    ("directory without images", lambda p: ["--source", str(_folder_without_images(p)),
                                            "--fps", "30"], "no images"),
    ("empty file", lambda p: ["--source", str(_written(p, "empty.mp4", b""))], "empty file"),
    ("random bytes named .mp4", lambda p: ["--source", str(media.make_random_bytes(
        p / "noise.mp4"))], "cannot decode"),
    ("text file", lambda p: ["--source", str(_written(p, "notes.txt", b"hello\n" * 50))],
     "cannot decode"),
    ("zero-frame video", lambda p: ["--source", str(media.make_zero_frames(p / "none.mp4"))],
     "cannot decode|no frames"),
    ("folder of undecodable images", lambda p: ["--source", str(_all_corrupt_folder(p)),
                                                "--fps", "30"], "decodes"),
    ("--fps inf", lambda p: ["--fps", "inf"], "--fps: must be a frame rate"),
    ("--fps nan", lambda p: ["--fps", "nan"], "--fps: must be"),
    ("--fps 0", lambda p: ["--fps", "0"], "--fps: must be"),
    ("--fps 5000", lambda p: ["--fps", "5000"], "--fps: must be a frame rate"),
    ("--max-faces 0", lambda p: ["--max-faces", "0"], "--max-faces: must be >= 1"),
    ("--reconnect -1", lambda p: ["--reconnect", "-1"], "--reconnect: must be"),
]


@pytest.mark.parametrize("name, make_args, needle", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_is_one_line_exit_2(cli, tmp_path, name, make_args, needle):
    import re
    code, err, records, took = cli(*make_args(tmp_path))
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("fedn-live: error:"), err
    assert re.search(needle, err), err
    assert records is None  # nothing written: the input was refused before any record
    assert took < 10


# --- rows that run and say what they could not do ------------------------------------------
def _summary(records):
    assert records[-1]["type"] == "summary"
    assert records[-2] == {"type": "status", "status": "source_ended",
                           "frame": records[-2]["frame"]}
    return records[-1]


def _statuses(records, name):
    return [r for r in records if r["type"] == "status" and r["status"] == name]


def _frames_video(p, shape, n=6):
    h, w = shape
    return media.make_cv2_video(p / f"v{w}x{h}.mp4", n, size=(w, h))


def test_1x1_frames(cli, tmp_path):
    code, err, records, took = cli("--source", str(media.write_av(
        tmp_path / "tiny.mkv", 5, codec="ffv1", size=(1, 1), pix_fmt="bgr0")))
    assert code == 0, err
    s = _summary(records)
    assert s["frames_read"] == s["frames_processed"] == s["frames_promised"] == 5
    (no_face,) = _statuses(records, "no_face")
    assert no_face["min_face_px"] == 1  # the documented limit for this frame size
    assert "no face found: faces narrower than 1 px" in cli.stdout  # and the summary says so
    assert took < 10


def test_4k_frames(cli, tmp_path):
    code, err, records, took = cli("--source", str(_frames_video(tmp_path, (2160, 3840), 4)))
    assert code == 0, err
    s = _summary(records)
    assert s["frames_read"] == s["frames_processed"] == s["frames_promised"] == 4
    assert _statuses(records, "no_face")[0]["min_face_px"] == 212
    assert took < 10


@pytest.mark.parametrize("kind", ["gray video", "gray frames", "rgba frames"])
def test_gray_and_rgba(cli, tmp_path, kind):
    if kind == "gray video":
        source = media.make_gray_video(tmp_path / "g.mkv", 8)
    else:
        channel = (lambda k: media.pattern(k)[:, :, 0]) if kind == "gray frames" else (
            lambda k: np.dstack([media.pattern(k), np.full((96, 160), 200, np.uint8)]))
        source = media.write_frames(tmp_path / "seq", [f"{n}.png" for n in range(8)],
                                    image=channel)
    code, err, records, _ = cli("--source", str(source), "--fps", "30")
    assert code == 0, err
    s = _summary(records)
    assert s["frames_read"] == s["frames_processed"] == s["frames_promised"] == 8
    assert not _statuses(records, "source_short")


def test_variable_frame_rate(cli, tmp_path):
    code, err, records, _ = cli("--source", str(media.make_vfr(tmp_path / "vfr.mp4")))
    assert code == 0, err
    s = _summary(records)
    assert s["frames_read"] == s["frames_processed"] == s["frames_promised"] == 31
    assert not _statuses(records, "source_fps") and not _statuses(records, "dropped")


@pytest.mark.parametrize("rate, said", [(5000, True), (Fraction(1, 100), True), (1000, False)],
                         ids=["5000", "0.01", "1000"])
def test_fps_metadata(cli, tmp_path, rate, said):
    code, err, records, _ = cli("--source", str(media.make_fps_metadata(tmp_path / "f.mp4",
                                                                        rate)))
    assert code == 0, err
    fps = _statuses(records, "source_fps")
    assert bool(fps) == said
    if said:
        assert fps[0]["fps_used"] == 30.0 and fps[0]["frame"] == 0
        assert records[0] == fps[0]  # said before anything else
    assert _summary(records)["frames_read"] == 30


def test_fps_metadata_unusable_and_fps_given(cli, tmp_path):
    code, err, records, _ = cli("--source", str(media.make_fps_metadata(tmp_path / "f.mp4",
                                                                        5000)), "--fps", "25")
    assert code == 0, err
    assert _statuses(records, "source_fps")[0]["fps_used"] == 25.0


def test_zero_duration_frames_all_processed(cli, tmp_path):
    code, err, records, _ = cli("--source", str(media.make_zero_duration(tmp_path / "z.mp4")))
    assert code == 0, err
    s = _summary(records)
    assert s["frames_read"] == s["frames_processed"] == s["frames_promised"] == 72
    assert _statuses(records, "source_fps")


def test_corrupt_middle_every_decodable_frame_once(cli, tmp_path):
    code, err, records, _ = cli("--source", str(media.make_corrupt_middle(tmp_path / "c.mp4")))
    assert code == 0, err
    s = _summary(records)
    lost = _statuses(records, "source_short")
    assert lost and {r["reason"] for r in lost} == {"undecodable"}
    assert s["frames_promised"] == 240
    assert s["frames_read"] == s["frames_processed"] == 240 - sum(r["count"] for r in lost)
    assert not _statuses(records, "dropped")  # lost in the file, not dropped by the ring


def test_cut_file_says_it_ended_early(cli, tmp_path):
    code, err, records, _ = cli("--source", str(media.make_cut_avi(tmp_path / "cut.avi")))
    assert code == 0, err
    s = _summary(records)
    (short,) = _statuses(records, "source_short")
    assert short["reason"] == "ended_early" and short["promised"] == 240
    assert s["frames_read"] == short["read"] == 240 - short["count"]


def test_frame_folder_corrupt_image_and_gap_run_to_the_end(cli, tmp_path):
    folder = media.write_frames(tmp_path / "seq", [f"img{n}.jpg" for n in
                                                   (1, 2, 3, 4, 5, 9, 10, 11, 12)])
    (folder / "img3.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    media.truncate(folder / "img10.jpg")
    code, err, records, _ = cli("--source", str(folder), "--fps", "30")
    assert code == 0, err
    short = [(r["frame"], r["reason"], r["count"]) for r in _statuses(records, "source_short")]
    assert short == [(2, "undecodable", 1), (5, "missing", 3), (9, "undecodable", 1)]
    s = _summary(records)
    assert (s["frames_promised"], s["frames_read"], s["frames_processed"]) == (12, 7, 7)
    assert not _statuses(records, "dropped")
    assert records[-2]["frame"] == 12  # source_ended after the last file number
    assert "JPEG" not in err


@pytest.mark.parametrize("sheet, needle", [
    ("subject,video,onset\ns1,v1,3\n", "missing ['offset', 'emotion']"),
    ("subject,video,onset,offset,emotion\ns1,v1,three,9,x\n",
     "line 2: onset 'three' is not a number"),
])
def test_label_sheets(tmp_path, capsys, sheet, needle):
    from training.evaluate import main as evaluate
    (tmp_path / "gt.csv").write_text(sheet)
    (tmp_path / "pred.csv").write_text("subject,video,onset,offset,emotion\ns1,v1,1,5,x\n")
    assert evaluate(["--gt", str(tmp_path / "gt.csv"), "--pred",
                     str(tmp_path / "pred.csv")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
