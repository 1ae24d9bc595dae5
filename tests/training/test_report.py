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


def test_union_of_test_folders_keeps_same_named_videos_apart(monkeypatch):
    """Two SynthME sets of the same identities reuse video names; their union must not merge
    them (the metrics match spots to labels by video)."""
    import numpy as np
    import pytest

    from training import features
    from training.features import VideoFeatures, load_union
    from training.infer import ground_truth

    def fake_split(root, cache, workers=2, limit=None):
        onset = 10 if root.endswith("a") else 200
        label = (onset, onset + 40, "macro", "positive")
        return [VideoFeatures("biden", "biden_003", np.zeros((300, 3, 2, 2), np.float16),
                              np.ones(300, bool), 30.0, (label,))]

    monkeypatch.setattr(features, "load_split", fake_split)
    union = load_union(["data/set_a", "data/set_b"], "cache")
    assert [v.video for v in union] == ["set_a/biden_003", "set_b/biden_003"]
    gt = ground_truth(union)
    # each set's label is found in its own video only: predicting set_a's label for both
    # videos is one hit and one false positive, not two hits
    pred = [Spot(subject="biden", video=f"{name}/biden_003", onset=10, offset=50,
                 emotion="positive", kind="macro", score=0.9) for name in ("set_a", "set_b")]
    overall = evaluate(gt, pred)["spotting"]["overall"]
    assert (overall["tp"], overall["fp"], overall["fn"]) == (1, 1, 1)
    assert load_union(["data/set_a"], "cache")[0].video == "biden_003"  # one folder: as is
    with pytest.raises(ValueError, match="names must differ"):
        load_union(["x/test", "y/test"], "cache")


def test_conversion_is_the_share_of_starts_not_withdrawn():
    from training.infer import conversion
    assert conversion({"starts": 4, "withdrawn": 1}) == 0.75
    assert conversion({"starts": 3, "withdrawn": 0}) == 1.0
    assert conversion({}) is None and conversion({"starts": 0, "withdrawn": 0}) is None
