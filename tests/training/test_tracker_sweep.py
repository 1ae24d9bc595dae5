"""training.tracker_sweep: grid parsing, and the sweep over the live schedule."""
from __future__ import annotations

import json

import pytest

from tests.training.planted import planted_video
from training import features
from engine.config import parse_grid
from training.tracker_sweep import combinations, main


def test_grid_values_take_the_field_types_and_combine():
    grid = parse_grid(["hold_frames=0,24", "on_thresh=0.5,0.7"])
    assert grid == {"hold_frames": [0, 24], "on_thresh": [0.5, 0.7]}
    assert isinstance(grid["hold_frames"][1], int)
    combos = combinations(grid)
    assert len(combos) == 4 and {"hold_frames": 24, "on_thresh": 0.7} in combos
    assert combinations({}) == [{}]
    assert parse_grid(["kind_from_duration=false,true"]) == {"kind_from_duration": [False, True]}


@pytest.mark.parametrize("item, match", [("nope=1", "FIELD one of"), ("hold_frames", "FIELD="),
                                         ("hold_frames=x", "takes int"),
                                         ("kind_from_duration=maybe", "takes bool")])
def test_bad_grid_is_a_one_line_error(item, match):
    with pytest.raises(ValueError, match=match):
        parse_grid([item])


def test_sweep_runs_every_setting_through_the_live_schedule(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(features, "load_union",
                        lambda roots, cache, limit=None: [planted_video("v", size=64)])
    out = tmp_path / "sweep.json"
    assert main(["--val", "x", "--grid", "hold_frames=0,40", "off_frames=4", "--out",
                 str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted(r["settings"]["hold_frames"] for r in rows) == [0, 40]
    for r in rows:
        assert 0 <= r["overall"] <= 1 and r["starts"] >= r["withdrawn"] >= 0
    assert rows[0]["overall"] >= rows[1]["overall"]  # best first
    assert "hold_frames=40 off_frames=4" in capsys.readouterr().out


def test_out_of_range_setting_exits_2_before_loading(capsys):
    assert main(["--grid", "on_thresh=1.5"]) == 2
    assert "on_thresh" in capsys.readouterr().err
