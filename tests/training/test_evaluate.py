"""MEGC CSV / JSONL interop and the evaluate and stats command lines."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from training.datasets import annotations_dir, load_real
from training.datasets.readers import REAL_FILES
from training.evaluate import main as evaluate_main
from engine.contracts import Event, EventStart, Status, Summary
from stream.events import to_json
from stream.megc_csv import Spot, megc_csv_text, read_jsonl_events, read_megc_csv, write_megc_csv
from training.datasets.records import spot_from_annotation

ROOT = Path(__file__).parents[2]
ANN = annotations_dir()

GT_CSV = """subject,video,onset,offset,emotion,type
s1,v1,1,10,negative,micro
s1,v1,50,90,positive,macro
s1,v2,5,20,surprise,micro
"""
PRED_CSV = """subject,video,onset,offset,emotion,type,score
s1,v1,1,5,negative,micro,0.9
s1,v1,55,95,negative,macro,0.8
s1,v2,100,120,others,micro,0.3
"""


@pytest.mark.parametrize("text", [
    GT_CSV,
    PRED_CSV,
    "subject,video,onset,offset,emotion\n1,EP02_01f,7,75,happiness\n006,006_1,-3,65,others\n",
    "subject,video,onset,offset,emotion,type,apex,score\ns1,v1,1,10,,micro,4,0.125\n",
])
def test_csv_round_trip_is_identical(tmp_path, text):
    path = tmp_path / "in.csv"
    path.write_text(text)
    spots = read_megc_csv(path)
    assert megc_csv_text(spots) == text
    write_megc_csv(spots, tmp_path / "out.csv")
    assert (tmp_path / "out.csv").read_text() == text


@pytest.mark.parametrize("name", ["casme2", "sammlv", "casme3"])
def test_real_labels_round_trip_through_csv(tmp_path, name):
    spots = [spot_from_annotation(a) for a in load_real(name)]
    write_megc_csv(spots, tmp_path / "gt.csv")
    again = read_megc_csv(tmp_path / "gt.csv")
    assert again == spots
    assert megc_csv_text(again) == (tmp_path / "gt.csv").read_text()


def test_csv_errors_are_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("subject,video,onset\ns1,v1,3\n")
    with pytest.raises(ValueError, match="missing \\['offset', 'emotion'\\]"):
        read_megc_csv(path)
    path.write_text("subject,video,onset,offset,emotion\ns1,v1,3.5,9,x\n")
    with pytest.raises(ValueError, match="line 2: onset '3.5' is not a whole frame"):
        read_megc_csv(path)
    path.write_text("subject,video,onset,offset,emotion,type\ns1,v1,3,9,x,huge\n")
    with pytest.raises(ValueError, match="type 'huge'"):
        read_megc_csv(path)


def test_jsonl_events_skip_other_records_and_shift_frames(tmp_path):
    path = tmp_path / "events.jsonl"
    event = Event(onset_frame=10, apex_frame=14, offset_frame=20, onset_s=0.33, offset_s=0.67,
                  kind="micro", emotion="positive", score=0.75, latency_ms=12.0)
    start = EventStart(onset_frame=3, apex_frame=4, offset_frame=4, onset_s=0.1, offset_s=0.13,
                       kind="micro", emotion="others", score=0.2)
    lines = [Status("face_found", 0), start, event, Summary("clip.mp4", "torch", "block", 100)]
    path.write_text("\n".join(json.dumps(to_json(x)) for x in lines) + "\n")
    (spot,) = read_jsonl_events(path, "s15", "15_0401", first_frame=1)
    assert spot == Spot("s15", "15_0401", 11, 21, "positive", "micro", 15, 0.75)
    path.write_text("{not json\n")
    with pytest.raises(ValueError, match="events.jsonl:1: not JSON"):
        read_jsonl_events(path)


def test_evaluate_cli_table_and_json(tmp_path, capsys):
    (tmp_path / "gt.csv").write_text(GT_CSV)
    (tmp_path / "pred.csv").write_text(PRED_CSV)
    args = ["--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv")]
    assert evaluate_main(args) == 0
    table = capsys.readouterr().out
    assert "micro" in table and "STRS" in table and "mAP@tIoU" in table
    assert evaluate_main(args + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # micro: [1,5] vs [1,10] IoU 0.5 -> TP; v2 [100,120] misses [5,20]; macro IoU 36/46 -> TP
    assert result["spotting"]["micro"] == pytest.approx(
        {"tp": 1, "fp": 1, "fn": 1, "precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert result["spotting"]["macro"]["tp"] == 1
    assert result["spotting"]["overall"]["f1"] == pytest.approx(2 / 3)
    assert result["map"] is not None and 0 < result["map"]["map"] <= 1
    assert result["strs"]["official"] is True
    assert evaluate_main(args + ["--json", "--clean-strs"]) == 0
    assert json.loads(capsys.readouterr().out)["strs"]["official"] is False


def test_evaluate_cli_jsonl_prediction(tmp_path, capsys):
    (tmp_path / "gt.csv").write_text(GT_CSV)
    event = {"type": "event", "onset_frame": 0, "apex_frame": 3, "offset_frame": 9,
             "onset_s": 0.0, "offset_s": 0.3, "kind": "micro", "emotion": "negative",
             "score": 0.9}
    (tmp_path / "ev.jsonl").write_text(json.dumps(event) + "\n")
    base = ["--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "ev.jsonl"), "--json"]
    assert evaluate_main(base) == 2  # no subject/video anywhere
    assert "--video SUBJECT/VIDEO" in capsys.readouterr().err
    assert evaluate_main(base + ["--video", "s1/v1", "--first-frame", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["spotting"]["micro"]["tp"] == 1


@pytest.mark.parametrize("gt,pred,message", [
    ("missing.csv", "pred.csv", "--gt file not found"),
    ("gt.txt", "pred.csv", "--gt must be .xlsx/.xls"),
    ("gt.csv", "missing.csv", "--pred file not found"),
    ("gt.csv", "bad.csv", "MEGC CSV needs columns"),
])
def test_evaluate_cli_bad_input_exits_2_with_one_line(tmp_path, gt, pred, message):
    (tmp_path / "gt.csv").write_text(GT_CSV)
    (tmp_path / "gt.txt").write_text(GT_CSV)
    (tmp_path / "pred.csv").write_text(PRED_CSV)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    proc = subprocess.run([sys.executable, "-m", "training.evaluate", "--gt",
                           str(tmp_path / gt), "--pred", str(tmp_path / pred)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and proc.stdout == ""


def test_evaluate_cli_on_real_label_file(tmp_path, capsys):
    spots = [spot_from_annotation(a) for a in load_real("casme2")]
    write_megc_csv(spots[:100], tmp_path / "pred.csv")
    gt = str(ANN / REAL_FILES["casme2"])
    assert evaluate_main(["--gt", gt, "--pred", str(tmp_path / "pred.csv"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    overall = result["spotting"]["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (100, 0, 257)
    assert result["n_gt"] == 357


def test_stats_cli_writes_figure_and_counts(tmp_path, capsys):
    from training.datasets.stats import main as stats_main

    out = tmp_path / "stats.png"
    assert stats_main(["--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)["datasets"]
    assert out.stat().st_size > 10_000
    assert report["casme2"]["kinds"]["micro"]["events"] == 57
    assert report["sammlv"]["videos"] == 147
    assert report["casme3"]["kinds"]["micro"]["frames_q"]["0.5"] == 22.0
    assert report["casme3_blinks"]["events"] == 841


# --- bad label / prediction files (issue 18): each a one-line error naming file, line, column
HEADER = "subject,video,onset,offset,emotion,type,score\n"


@pytest.mark.parametrize("row, message", [
    ("s1,v1,inf,10,x,micro,0.5", "line 2: onset 'inf' is not a finite frame number"),
    ("s1,v1,-inf,10,x,micro,0.5", "line 2: onset '-inf' is not a finite frame number"),
    ("s1,v1,nan,10,x,micro,0.5", "line 2: onset 'nan' is not a finite frame number"),
    ("s1,v1,3,nan,x,micro,0.5", "line 2: offset 'nan' is not a finite frame number"),
    ("s1,v1,20,10,x,micro,0.5", "line 2: onset 20 > offset 10"),
    ("s1,v1,abc,10,x,micro,0.5", "line 2: onset 'abc' is not a number"),
    ("s1,v1,,10,x,micro,0.5", "line 2: onset is empty"),
    ("s1,v1", "line 2: onset is empty"),  # a short row: the missing cells are named
    ("s1,v1,3,10,x,micro,inf", "line 2: score 'inf' is not a finite number"),
])
@pytest.mark.parametrize("role", ["--gt", "--pred"])
def test_evaluate_bad_csv_row_names_file_line_and_column(tmp_path, capsys, role, row, message):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    good.write_text(PRED_CSV)
    bad.write_text(HEADER + row + "\n")
    args = ["--gt", str(bad), "--pred", str(good)] if role == "--gt" else \
        ["--gt", str(good), "--pred", str(bad)]
    assert evaluate_main(args) == 2
    err = capsys.readouterr()
    assert err.out == "" and err.err.count("\n") == 1
    assert f"bad.csv {message}" in err.err


@pytest.mark.parametrize("event, message", [
    ({"onset_frame": float("inf"), "offset_frame": 9}, "onset_frame inf is not a finite"),
    ({"onset_frame": float("nan"), "offset_frame": 9}, "onset_frame nan is not a finite"),
    ({"onset_frame": 12, "offset_frame": 9}, "onset_frame 12 > offset_frame 9"),
    ({"offset_frame": 9}, "event record lacks 'onset_frame'"),
    ({"onset_frame": 1, "offset_frame": 9, "score": "high"}, "score 'high' is not a finite"),
    ({"onset_frame": 1, "offset_frame": 9, "kind": "mega"}, "kind must be one of"),
])
def test_evaluate_bad_jsonl_event_names_file_and_line(tmp_path, capsys, event, message):
    (tmp_path / "gt.csv").write_text(GT_CSV)
    record = {"type": "event", "apex_frame": 3, "onset_s": 0.0, "offset_s": 0.3,
              "kind": "micro", "emotion": "negative", "score": 0.9, **event}
    ok = {"type": "status", "status": "face_found", "frame": 0}
    (tmp_path / "ev.jsonl").write_text(json.dumps(ok) + "\n" + json.dumps(record) + "\n")
    assert evaluate_main(["--gt", str(tmp_path / "gt.csv"), "--pred",
                          str(tmp_path / "ev.jsonl"), "--video", "s1/v1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ev.jsonl:2: " in err and message in err


def _casme2_sheet(path, rows):
    import pandas as pd
    pd.DataFrame(rows).to_excel(path, sheet_name="CASFEcode_final", header=False, index=False)


@pytest.mark.parametrize("bad_row, message", [
    ([1, "happy1_1", "abc", 5, 9, "AU12", "happiness", "macro-expression"],
     "row 2: onset 'abc' is not a number"),
    ([1, "happy1_1", float("inf"), 5, 9, "AU12", "happiness", "macro-expression"],
     "row 2: onset inf is not a finite frame number"),
    ([1, "happy1_1", 1, 5, None, "AU12", "happiness", "macro-expression"],
     "row 2: offset is empty"),
    ([1, "happy1_1", 30, 5, 9, "AU12", "happiness", "macro-expression"],
     "row 2: onset 30 > offset 9"),
    ([1, "happy1_1", 1, 5], "row 2: offset is empty"),  # a short row: its empty cells
    (None, "row 1: expected the 9 CAS(ME)^2 columns, got 4"),  # a sheet missing columns
])
def test_evaluate_bad_label_sheet_names_row_and_column(tmp_path, capsys, bad_row, message):
    good = [1, "anger1_1", 1, 5, 9, "AU4", "anger", "micro-expression", ""]
    rows = ([good[:4], good[:4]] if bad_row is None
            else [good, bad_row + [None] * (9 - len(bad_row))])
    _casme2_sheet(tmp_path / "labels.xlsx", rows)
    (tmp_path / "pred.csv").write_text(PRED_CSV)
    rc = evaluate_main(["--gt", str(tmp_path / "labels.xlsx"), "--pred",
                        str(tmp_path / "pred.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert f"labels.xlsx {message}" in err, err


def test_evaluate_no_predicted_video_in_ground_truth_is_an_error(tmp_path, capsys):
    """stream.analyze without --labels writes the folder name as subject: nothing matches,
    and that must not print F1 0.000 as if it were a result."""
    (tmp_path / "gt.csv").write_text(GT_CSV)
    (tmp_path / "pred.csv").write_text(PRED_CSV.replace("s1,", "videos,"))
    rc = evaluate_main(["--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv")])
    out = capsys.readouterr()
    assert rc == 2 and out.out == "" and out.err.count("\n") == 1
    assert "no predicted (subject, video) is in the ground truth" in out.err
    assert "videos/v1" in out.err and "s1/v1" in out.err and "--labels" in out.err


def test_evaluate_some_unknown_videos_are_scored_and_named(tmp_path, capsys):
    (tmp_path / "gt.csv").write_text(GT_CSV)
    (tmp_path / "pred.csv").write_text(PRED_CSV + "s9,v9,1,5,negative,micro,0.4\n")
    rc = evaluate_main(["--gt", str(tmp_path / "gt.csv"), "--pred", str(tmp_path / "pred.csv"),
                        "--json"])
    out = capsys.readouterr()
    assert rc == 0
    result = json.loads(out.out)
    assert result["unmatched_videos"] == ["s9/v9"]
    assert result["spotting"]["micro"]["fp"] == 2  # the unknown video's spot is a FP
    assert "1 predicted video(s) not in the ground truth" in out.err and "s9/v9" in out.err


def test_evaluate_empty_prediction_is_a_result_not_an_error(tmp_path, capsys):
    (tmp_path / "gt.csv").write_text(GT_CSV)
    (tmp_path / "pred.csv").write_text("subject,video,onset,offset,emotion\n")
    assert evaluate_main(["--gt", str(tmp_path / "gt.csv"), "--pred",
                          str(tmp_path / "pred.csv"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["spotting"]["overall"]["fn"] == 3
