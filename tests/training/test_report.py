"""Report helpers: streaming/offline agreement and the results table."""
from __future__ import annotations

from training.evaluate import evaluate
from stream.megc_csv import Spot
from training.report import agreement, per_subject, table


def _s(on, off, kind="macro", video="v"):
    return Spot(subject="s", video=video, onset=on, offset=off, emotion="negative", kind=kind,
                score=0.9)


def test_agreement_counts_same_kind_overlaps():
    a = [_s(10, 40), _s(100, 110, "micro"), _s(300, 340)]
    b = [_s(12, 41), _s(100, 111, "macro"), _s(500, 520)]
    res = agreement(a, b)
    assert res["matched"] == 1 and res["a"] == 3 and res["b"] == 3
    assert res["a_in_b"] == 1 / 3
    assert agreement([], []) == {"a": 0, "b": 0, "matched": 0, "a_in_b": 1.0, "b_in_a": 1.0}


def test_table_has_one_row_per_method():
    gt = [_s(10, 40), _s(100, 110, "micro")]
    results = {"perfect": evaluate(gt, gt), "half": evaluate(gt, gt[:1])}
    md = table(results).splitlines()
    assert len(md) == 4 and md[0].startswith("| method |")
    assert "| perfect | 1.000 | 1.000 | 1.000 |" in md[2]
    assert md[3].split(" | ")[3] == "0.000"  # 'half' misses the micro one: micro F1 0


def test_per_subject_splits_counts():
    gt = [_s(10, 40), Spot("t", "w", 5, 20, "negative", "macro")]
    pred = [_s(10, 40), Spot("t", "w", 100, 120, "negative", "macro", score=0.5)]
    res = per_subject(gt, pred)
    assert res["s"] == {"tp": 1, "fp": 0, "fn": 0, "f1": 1.0}
    assert res["t"] == {"tp": 0, "fp": 1, "fn": 1, "f1": 0.0}
