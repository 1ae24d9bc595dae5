"""SynthME CLI: both output formats load through the dataset readers with the right counts."""
from __future__ import annotations

import csv
import json

import pytest

from training.datasets.layout import videos
from training.datasets.readers import read_synthme
from training.synth.__main__ import main

ARGS = ["--minutes", "0.15", "--split", "val", "--seed", "3", "--workers", "1",
        "--video-seconds", "4.5", "--no-progress", "--set", "gap_scale=0.05"]


def _video_rows(out):
    with open(out / "videos.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_casme2_format_loads_through_the_reader(tmp_path):
    out = tmp_path / "c2"
    assert main(["--out", str(out), "--format", "casme2", *ARGS]) == 0
    summary = json.loads((out / "synthme.json").read_text())
    rows = _video_rows(out)
    anns = read_synthme(out / "SynthME_gt.xlsx")
    assert len(anns) == sum(int(r["events"]) for r in rows) == sum(summary["events"].values())
    assert len(anns) > 0 and {a.kind for a in anns} <= {"micro", "macro"}
    vids = videos(anns, out)
    assert all(v.path is not None and v.first_frame == 1 for v in vids)
    frames = {r["video"]: int(r["frames"]) for r in rows}
    for v in vids:
        assert len(list(v.path.glob("img*.jpg"))) == frames[v.video]
        assert (v.path / f"img{frames[v.video]}.jpg").is_file()
    assert all(1 <= a.onset < a.apex < a.offset <= frames[a.video] for a in anns)
    assert {r["subject"] for r in rows} <= {"einstein", "hanks", "t1_c", "oldphoto_b", "child_e"}


def test_mp4_format_loads_through_the_reader(tmp_path):
    import cv2

    out = tmp_path / "mp4"
    assert main(["--out", str(out), "--format", "mp4", *ARGS]) == 0
    rows = _video_rows(out)
    anns = read_synthme(out / "labels.csv")
    assert len(anns) == sum(int(r["events"]) for r in rows) > 0
    vids = videos(anns, out)
    assert all(v.path is not None and v.path.suffix == ".mp4" and v.first_frame == 0
               for v in vids)
    for r in rows:
        cap = cv2.VideoCapture(str(out / f"{r['video']}.mp4"))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape == (360, 640, 3) and n == int(r["frames"])
    assert all(0 <= a.onset < a.offset < 10_000 for a in anns)


@pytest.mark.parametrize("extra,message", [
    (["--minutes", "0"], "minutes"), (["--minutes", "1", "--disable", "rain"], "rain"),
    (["--minutes", "1", "--set", "nope=1"], "nope"), (["--minutes", "1", "--faces", "zz"], "zz"),
])
def test_bad_arguments_exit_2(tmp_path, capsys, extra, message):
    assert main(["--out", str(tmp_path / "x"), "--no-progress", *extra]) == 2
    assert message in capsys.readouterr().err


def test_refuses_a_non_empty_output(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["--out", str(tmp_path), "--minutes", "0.1", "--no-progress"]) == 2
    assert "not empty" in capsys.readouterr().err
