"""``python -m stream.analyze`` as a batch command (issue 18): every input is processed, each
failure is recorded with its reason, every output that can be written is, and the exit code
says whether any input failed."""
from __future__ import annotations

import contextlib
import json

import pytest

from stream.analyze import main as analyze
from stream.megc_csv import read_megc_csv
from tests.stream import media

pytest.importorskip("mediapipe")


@pytest.fixture
def run(shared_engine, monkeypatch, capsys):
    from engine.runtime import Engine

    @contextlib.contextmanager
    def shared():
        yield shared_engine
    monkeypatch.setattr(Engine, "load", classmethod(lambda cls, *a, **k: shared()))

    def go(*args):
        code = analyze(["--no-progress", "--engine", "onnxruntime", *map(str, args)])
        out = capsys.readouterr()
        return code, out.out, out.err
    return go


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("order", ["good-bad", "bad-good"])
def test_every_input_is_processed_and_the_csv_written(run, tmp_path, order):
    good = media.make_cv2_video(tmp_path / "good.mp4", 12)
    bad = media.make_random_bytes(tmp_path / "bad.mp4")
    inputs = [good, bad] if order == "good-bad" else [bad, good]
    out, csv = tmp_path / "out", tmp_path / "all.csv"
    code, stdout, err = run(*inputs, "--out", out, "--csv", csv)
    assert code == 2
    assert _records(out / "good.jsonl")[-1]["type"] == "summary"  # the good one ran
    assert not (out / "bad.jsonl").exists()  # no empty file for the bad one
    assert csv.is_file() and read_megc_csv(csv) == []  # written (no face: no events)
    assert f"{bad}: skipped: cannot decode" in err and "1 of 2 inputs" in err
    assert "1 JSONL files" in stdout


def test_same_names_in_two_folders_get_two_jsonl_files(run, tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    a = media.make_cv2_video(tmp_path / "a" / "clip.mp4", 8)
    b = media.make_cv2_video(tmp_path / "b" / "clip.mp4", 11)
    out = tmp_path / "out"
    code, stdout, _ = run(a, b, "--out", out)
    assert code == 0
    files = sorted(out.glob("clip*.jsonl"))
    assert len(files) == 2
    counts = sorted(_records(f)[-1]["frames_read"] for f in files)
    assert counts == [8, 11]  # neither overwrote the other


def test_a_failed_input_leaves_no_stale_jsonl(run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "clip.jsonl").write_text('{"type":"status","status":"source_ended","frame":1}\n')
    bad = media.make_random_bytes(tmp_path / "clip.mp4")
    code, _, err = run(bad, "--out", out)
    assert code == 2 and "skipped" in err
    assert not (out / "clip.jsonl").exists()


@pytest.mark.parametrize("args, needle", [
    (["--fps", "inf"], "--fps must be a frame rate"),
    (["--fps", "-5"], "--fps must be a frame rate"),
    (["--csv", "/no/such/folder/x.csv"], "--csv folder does not exist"),
])
def test_bad_arguments_stop_before_any_input(run, tmp_path, args, needle):
    video = media.make_cv2_video(tmp_path / "v.mp4", 5)
    code, stdout, err = run(video, "--out", tmp_path / "out", *args)
    assert code == 2 and err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "out" / "v.jsonl").exists()


def test_short_file_is_reported_in_the_line(run, tmp_path):
    cut = media.make_cut_avi(tmp_path / "cut.avi")
    code, stdout, _ = run(cut, "--out", tmp_path / "out")
    assert code == 0
    assert "of 240 promised: see source_short" in stdout
    statuses = [r for r in _records(tmp_path / "out" / "cut.jsonl") if r.get("status")]
    assert any(r["status"] == "source_short" for r in statuses)
