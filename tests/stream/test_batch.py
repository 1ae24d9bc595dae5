"""stream.batch on local Ray (2 CPUs): same answers as one process, failures, resume, --gt."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream import batch
from stream.sources import DEMO_CLIP

#: (folder, file, first demo frame) of the three 3-s clips cut from the demo clip (each
#: holds a labelled expression); two of them share a file name.
CLIPS = (("x", "clip.mp4", 130), ("y", "clip.mp4", 220), ("z", "other.mp4", 330))
CLIP_FRAMES = 90
TIMING = ("latency_ms",)  # fields that depend on the machine's speed, not on the video


def _cut(src: Path, dst: Path, start: int, n: int) -> None:
    cap = cv2.VideoCapture(str(src))
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    writer = None
    for _ in range(n):
        ok, image = cap.read()
        assert ok, f"demo clip ended before frame {start + n}"
        if writer is None:
            writer = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), 30.0,
                                     (image.shape[1], image.shape[0]))
        writer.write(image)
    writer.release()
    cap.release()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict:
    """Three SynthME clips (two named clip.mp4), one corrupt file, their ground truth."""
    root = tmp_path_factory.mktemp("archive")
    good = []
    gt_rows = ["subject,video,onset,offset,emotion,type,apex"]
    labels = [line.split(",") for line in
              (DEMO_CLIP.parent / "demo_labels.csv").read_text().splitlines()[1:]]
    for folder, name, start in CLIPS:
        (root / folder).mkdir()
        path = root / folder / name
        _cut(DEMO_CLIP, path, start, CLIP_FRAMES)
        good.append(path)
        for _, _, on, off, emo, kind, apex in labels:
            if start <= int(on) and int(off) < start + CLIP_FRAMES:
                gt_rows.append(f"{folder},{path.stem},{int(on) - start},{int(off) - start},"
                               f"{emo},{kind},{int(apex) - start}")
    broken = root / "z" / "broken.mp4"
    broken.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    gt = root / "gt.csv"
    gt.write_text("\n".join(gt_rows) + "\n")
    assert len(gt_rows) > 3, "the clips must hold labelled events"
    return {"root": root, "good": good, "broken": broken, "gt": gt}


@pytest.fixture(scope="module")
def single(archive, tmp_path_factory) -> dict[Path, list[dict]]:
    """Each good clip run by the single-process path, stream.analyze.analyze_video."""
    from engine.runtime import Engine
    from stream.analyze import analyze_video
    from stream.events import read_jsonl

    out = tmp_path_factory.mktemp("single")
    results = {}
    with Engine.load("auto", log=lambda _: None) as engine:
        for i, path in enumerate(archive["good"]):
            jsonl = out / f"{i}.jsonl"
            analyze_video(path, jsonl, engine, progress=False)
            results[path] = [_plain(r) for r in _events(jsonl)]
    return results


def _events(jsonl: Path) -> list[dict]:
    return [json.loads(line) for line in jsonl.read_text().splitlines()
            if json.loads(line)["type"] == "event"]


def _plain(event: dict) -> dict:
    return {k: v for k, v in event.items() if k not in TIMING}


@pytest.fixture(scope="module")
def local_ray():
    import ray  # the `scale` extra; `make venv` installs it

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def first_run(archive, local_ray, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("batch")
    lines: list[str] = []
    code = batch.main([str(archive["root"] / "x"), str(archive["root"] / "y"),
                       str(archive["root"] / "z"), "--out", str(out), "--gt",
                       str(archive["gt"]), "--no-progress"], log=lines.append)
    summary = json.loads((out / batch.SUMMARY_FILE).read_text())
    return {"out": out, "code": code, "lines": lines, "summary": summary}


def _by_source(summary: dict) -> dict[str, dict]:
    return {v["source"]: v for v in summary["per_video"]}


def test_every_good_video_equals_the_single_process_run(first_run, archive, single):
    s = first_run["summary"]
    assert (s["videos"], s["done"], s["failed"], s["skipped"]) == (4, 3, 1, 0)
    rows = _by_source(s)
    names = [rows[str(p)]["name"] for p in archive["good"]]
    assert len(set(names)) == 3, f"same-named clips must get distinct outputs: {names}"
    for path in archive["good"]:
        got = [_plain(e) for e in _events(first_run["out"] / f"{rows[str(path)]['name']}.jsonl")]
        assert got == single[path], f"{path}: batch events differ from stream.analyze"
        assert rows[str(path)]["frames"] == CLIP_FRAMES
        assert (first_run["out"] / f"{rows[str(path)]['name']}.done.json").is_file()
    assert sum(len(v) for v in single.values()) > 0, "no events at all: nothing was compared"
    assert s["frames"] == 3 * CLIP_FRAMES
    assert s["workers"] and all(w["fps"] > 0 for w in s["workers"].values())
    assert sum(w["videos"] for w in s["workers"].values()) == 3


def test_a_corrupt_video_is_one_recorded_failure(first_run, archive):
    s = first_run["summary"]
    assert first_run["code"] == 2
    assert [f["source"] for f in s["failures"]] == [str(archive["broken"])]
    assert "cannot decode video" in s["failures"][0]["reason"]
    assert any("FAILED broken" in line and "cannot decode" in line for line in first_run["lines"])
    failed = json.loads((first_run["out"] / "broken.failed.json").read_text())
    assert "cannot decode video" in failed["reason"]
    assert not (first_run["out"] / "broken.jsonl").exists()


def test_the_merged_csv_scores_with_gt(first_run, archive, single):
    from training.evaluate import evaluate, load_gt
    from stream.megc_csv import read_megc_csv

    csv = read_megc_csv(first_run["out"] / batch.CSV_FILE)
    expected = sorted((p.parent.name, p.stem, e["onset_frame"], e["offset_frame"], e["kind"])
                      for p, events in single.items() for e in events)
    assert sorted((r.subject, r.video, r.onset, r.offset, r.kind) for r in csv) == expected
    expected_score = json.loads(json.dumps(evaluate(load_gt(archive["gt"]), csv)))  # JSON keys
    assert first_run["summary"]["score"] == expected_score
    assert expected_score["spotting"]["overall"]["tp"] > 0, "a score of 0 would test nothing"
    text = "\n".join(first_run["lines"])
    assert "STRS" in text and "mAP@tIoU" in text and "micro" in text and "macro" in text


def test_a_rerun_does_no_work_and_a_killed_task_is_redone(first_run, archive):
    out = first_run["out"]
    inputs = [str(archive["root"] / f) for f in ("x", "y", "z")]
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*.jsonl")}
    assert batch.main(inputs + ["--out", str(out), "--no-progress"], log=lambda _: None) == 2
    s = json.loads((out / batch.SUMMARY_FILE).read_text())
    assert (s["done"], s["skipped"], s["failed"], s["frames"]) == (0, 3, 1, 0)
    assert "cpus" not in s["ray"], "nothing to do, yet Ray was asked"
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.jsonl")} == stamps
    # a task killed after writing its JSONL but before its marker: redone, and only it
    victim = _by_source(s)[str(archive["good"][2])]["name"]
    (out / f"{victim}.done.json").unlink()
    assert batch.main(inputs + ["--out", str(out), "--no-progress"], log=lambda _: None) == 2
    s = json.loads((out / batch.SUMMARY_FILE).read_text())
    assert (s["done"], s["skipped"], s["failed"]) == (1, 2, 1)
    assert [v["name"] for v in s["per_video"] if v["status"] == "done"] == [victim]


# --- without Ray -----------------------------------------------------------------------------
def test_plan_keeps_same_named_videos_apart_and_reads_frame_folders(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / "arch" / folder).mkdir(parents=True)
        (tmp_path / "arch" / folder / "clip.mp4").write_bytes(b"x")
    frames = tmp_path / "arch" / "c" / "s15_0101"
    frames.mkdir(parents=True)
    for i in (1, 2, 3):
        cv2.imwrite(str(frames / f"img{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
    jobs, missing = batch.plan([str(tmp_path / "arch"), str(tmp_path / "arch" / "a")], fps=30)
    assert missing == []
    assert [j.path for j in jobs] == [tmp_path / "arch" / "a" / "clip.mp4",
                                      tmp_path / "arch" / "b" / "clip.mp4", frames]
    assert len({j.name for j in jobs}) == 3 and jobs[0].name.startswith("clip-")
    assert [(j.subject, j.video) for j in jobs] == [("a", "clip"), ("b", "clip"),
                                                   ("c", "s15_0101")]
    assert (jobs[2].fps, jobs[2].first_frame) == (30, 1)
    from stream.analyze import output_names  # stream.analyze names the same files the same way
    files = [j.path for j in jobs[:2]]
    assert [j.name for j in jobs[:2]] == [output_names(files)[f] for f in files]
    assert batch.plan(sorted(str(p) for p in (tmp_path / "arch").rglob("*.mp4")))[0][0].name == \
        jobs[0].name, "names must not depend on how the inputs were given"


def test_plan_resolves_a_dataset_root_through_its_labels(tmp_path):
    root = tmp_path / "synth"
    (root / "kanade" / "v01").mkdir(parents=True)
    for i in (0, 1):
        cv2.imwrite(str(root / "kanade" / "v01" / f"img{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
    (root / "v02.mp4").write_bytes(b"x")
    labels = root / "labels.csv"
    labels.write_text("subject,video,onset,offset,emotion,type,apex\n"
                      "kanade,v01,3,9,positive,macro,5\nbiden,v02,1,4,negative,micro,2\n"
                      "biden,v03,1,4,negative,micro,2\n")
    (root / "obama_v04.mp4").write_bytes(b"x")  # in SynthME's videos.csv, without labels
    (root / "videos.csv").write_text("subject,video\nkanade,v01\nbiden,v02\nobama,obama_v04\n")
    jobs, missing = batch.plan([str(root)], labels=labels)
    assert [(j.subject, j.video, j.path) for j in jobs] == [
        ("kanade", "v01", root / "kanade" / "v01"), ("biden", "v02", root / "v02.mp4"),
        ("obama", "obama_v04", root / "obama_v04.mp4")]
    assert [j.name for j in jobs] == ["kanade_v01", "biden_v02", "obama_v04"]
    assert (jobs[0].fps, jobs[0].first_frame) == (30.0, 0) and jobs[1].fps is None
    assert missing == ["biden/v03"]


@pytest.mark.parametrize("args, message", [
    (["--num-cpus", "0"], "--num-cpus must be >= 1"),
    (["--num-cpus", "2", "--address", "auto"], "sizes local Ray only"),
    (["--cpus-per-task", "0"], "--cpus-per-task must be >= 1"),
    (["--address", "nowhere"], "--address must be"),
    (["--fps", "-1"], "--fps must be > 0"),
    (["--address", "127.0.0.1:1"], "cannot reach Ray at 127.0.0.1:1"),
    (["--address", "ray://127.0.0.1:1"], "cannot reach Ray at ray://127.0.0.1:1"),
])
def test_bad_arguments_are_one_line_and_exit_2(args, message, archive, tmp_path, capsys):
    assert batch.main([str(archive["good"][0]), "--out", str(tmp_path)] + args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_inputs_exit_2(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "img1.jpg"), np.zeros((8, 8, 3), np.uint8))
    for inputs, message in (([tmp_path / "nope.mp4"], "input not found"),
                            ([tmp_path / "empty"], "no video files"),
                            ([tmp_path / "frames"], "give its frame rate with --fps")):
        assert batch.main([str(p) for p in inputs] + ["--out", str(tmp_path / "o")]) == 2
        assert message in capsys.readouterr().err


def test_without_ray_the_error_names_the_extra(archive, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert batch.main([str(archive["good"][0]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pip install -e .[scale]" in err and len(err.splitlines()) == 1
