"""Hand-worked cases for MEGC spotting, STRS (official quirks and clean) and mAP."""
from __future__ import annotations

import pytest

from stream.megc_csv import Spot
from stream.metrics import (Counts, analysis, average_precision, map_tiou, match,
                              megc_spotting, strs)


def S(on, off, kind="micro", emotion="negative", video="v1", subject="s1", score=None):
    return Spot(subject=subject, video=video, onset=on, offset=off, emotion=emotion, kind=kind,
                score=score)


def test_iou_exactly_half_is_a_true_positive():
    got = megc_spotting([S(1, 10)], [S(1, 5)])
    assert got["micro"] == Counts(1, 0, 0)
    assert got["overall"].f1 == 1.0


def test_iou_049_is_not_a_true_positive():
    got = megc_spotting([S(1, 100)], [S(1, 49)])
    assert got["micro"] == Counts(0, 1, 1)
    assert got["micro"].f1 == 0.0


def test_one_prediction_over_two_ground_truths_matches_one():
    gt, pred = [S(1, 10), S(11, 20)], [S(1, 20)]  # IoU 0.5 with each
    pairs, fp, fn = match(gt, pred)
    assert pairs == [(0, 0)] and fp == [] and fn == [1]
    c = megc_spotting(gt, pred)["micro"]
    assert (c.precision, c.recall) == (1.0, 0.5)
    official = strs(gt, pred)["spotting"]  # quirk 1: one TP per overlapped GT
    assert (official["tp"], official["fp"], official["fn"]) == (2, 0, 0)
    clean = strs(gt, pred, official=False)["spotting"]
    assert (clean["tp"], clean["fp"], clean["fn"]) == (1, 0, 1)


def test_two_predictions_on_one_ground_truth():
    gt, pred = [S(1, 10)], [S(1, 10), S(2, 10)]
    assert megc_spotting(gt, pred)["micro"] == Counts(1, 1, 0)
    official = strs(gt, pred)["spotting"]
    assert (official["tp"], official["fp"], official["fn"]) == (2, 0, 0)


def test_higher_score_takes_the_ground_truth_first():
    gt = [S(1, 10)]
    pred = [S(1, 6, score=0.2), S(1, 9, score=0.9)]
    pairs, fp, _ = match(gt, pred)
    assert pairs == [(1, 0)] and fp == [0]


def test_empty_predictions():
    got = megc_spotting([S(1, 10), S(30, 40, kind="macro")], [])
    assert got["micro"] == Counts(0, 0, 1) and got["macro"] == Counts(0, 0, 1)
    assert got["overall"] == Counts(0, 0, 2)
    assert (got["overall"].precision, got["overall"].recall, got["overall"].f1) == (0, 0, 0)
    assert strs([S(1, 10)], [])["strs"] == 0.0


def test_empty_ground_truth():
    got = megc_spotting([], [S(1, 10), S(5, 9, kind="macro")])
    assert got["overall"] == Counts(0, 2, 0) and got["overall"].f1 == 0.0


def test_video_with_predictions_but_no_ground_truth():
    gt = [S(1, 10, video="v1")]
    pred = [S(1, 10, video="v1"), S(1, 10, video="v2")]
    assert megc_spotting(gt, pred)["micro"] == Counts(1, 1, 0)  # v2 prediction is an FP
    official = strs(gt, pred)["spotting"]  # quirk 3: videos without GT are not evaluated
    assert (official["tp"], official["fp"], official["fn"]) == (1, 0, 0)
    clean = strs(gt, pred, official=False)["spotting"]
    assert (clean["tp"], clean["fp"], clean["fn"]) == (1, 1, 0)


def test_subject_without_predictions_is_skipped_by_official_strs():
    gt = [S(1, 10, subject="s1"), S(1, 10, subject="s2")]
    pred = [S(1, 10, subject="s1")]
    assert strs(gt, pred)["spotting"]["fn"] == 0  # quirk 2
    assert strs(gt, pred, official=False)["spotting"]["fn"] == 1
    assert megc_spotting(gt, pred)["micro"] == Counts(1, 0, 1)


def test_kinds_are_matched_separately_and_overall_sums():
    gt = [S(1, 10, kind="micro"), S(50, 90, kind="macro")]
    pred = [S(1, 10, kind="macro"), S(50, 90, kind="macro")]
    got = megc_spotting(gt, pred)
    assert got["micro"] == Counts(0, 0, 1)
    assert got["macro"] == Counts(1, 1, 0)
    assert got["overall"] == Counts(1, 1, 1)


def test_untyped_records_give_overall_only():
    gt = [S(1, 10, kind="")]
    got = megc_spotting(gt, [S(1, 10, kind="")])
    assert set(got) == {"overall"} and got["overall"] == Counts(1, 0, 0)


def test_analysis_hand_worked():
    gt = ["negative", "negative", "positive", "surprise"]
    pred = ["negative", "positive", "positive", "negative"]
    labels = ["negative", "positive", "surprise"]
    a = analysis(gt, pred, labels, official=True)
    assert a["per_class"]["negative"]["f1"] == pytest.approx(0.5)
    assert a["per_class"]["positive"]["f1"] == pytest.approx(2 / 3)
    assert a["per_class"]["surprise"]["f1"] == 0.0
    assert a["precision"] == pytest.approx(1 / 3)  # (0.5 + 0.5 + 0) / 3
    assert a["recall"] == pytest.approx(0.5)  # (0.5 + 1 + 0) / 3
    assert a["f1"] == pytest.approx(0.4)  # 2 * 1/3 * 1/2 / (1/3 + 1/2)
    assert a["uf1"] == pytest.approx((0.5 + 2 / 3) / 3)
    assert a["uar"] == pytest.approx(1 / 3)  # quirk 6: mean precision
    assert analysis(gt, pred, labels, official=False)["uar"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="differ in length"):
        analysis(gt, pred[:2], labels)


def test_strs_is_spotting_f1_times_analysis_f1():
    gt = [S(1, 10, emotion="negative"), S(20, 30, emotion="positive"),
          S(40, 50, emotion="surprise"), S(60, 70, emotion="negative")]
    pred = [S(1, 10, emotion="negative"), S(20, 30, emotion="negative"),
            S(40, 50, emotion="surprise"), S(100, 110, emotion="others")]
    r = strs(gt, pred)
    assert r["labels"] == ["negative", "others", "positive", "surprise"]  # quirk 5
    spot = r["spotting"]
    assert (spot["tp"], spot["fp"], spot["fn"]) == (3, 1, 1)
    assert spot["f1"] == pytest.approx(0.75)
    # TPs: (neg,neg) (pos,neg) (sur,sur): P = (1/2 + 0 + 0 + 1)/4, R = (1 + 0 + 0 + 1)/4
    p, rec = 1.5 / 4, 2 / 4
    assert r["analysis"]["f1"] == pytest.approx(2 * p * rec / (p + rec))
    assert r["strs"] == pytest.approx(0.75 * 2 * p * rec / (p + rec))
    clean = strs(gt, pred, official=False)
    assert clean["labels"] == ["negative", "positive", "surprise"]
    assert clean["strs"] == pytest.approx(clean["spotting"]["f1"] * clean["analysis"]["f1"])


def test_strs_skips_ground_truth_without_emotion():
    gt = [S(1, 10, emotion=""), S(20, 30, emotion="positive")]
    pred = [S(1, 10, emotion="negative"), S(20, 30, emotion="positive")]
    r = strs(gt, pred, official=False)
    assert r["labels"] == ["positive"]
    assert r["analysis"]["per_class"]["positive"]["tp"] == 1
    assert r["analysis"]["f1"] == 1.0


def test_match_threshold_is_checked():
    with pytest.raises(ValueError, match="threshold"):
        match([S(1, 2)], [S(1, 2)], threshold=0)


def test_map_perfect_and_hand_worked():
    gt = [S(1, 10), S(20, 60, kind="macro")]
    perfect = [S(1, 10, score=0.9), S(20, 60, kind="macro", score=0.8)]
    assert map_tiou(gt, perfect)["map"] == pytest.approx(1.0)
    # a false positive ranked above the true positive: precision 1/2 at recall 1
    ap = average_precision([S(1, 10)], [S(50, 60, score=0.9), S(1, 10, score=0.8)])
    assert list(ap) == pytest.approx([0.5] * 5)
    # IoU 0.45 counts at tIoU 0.3 and 0.4 only -> mAP (1 + 1 + 0 + 0 + 0) / 5
    loose = map_tiou([S(1, 20)], [S(1, 9, score=0.5)])  # 9 / 20 = 0.45
    assert loose["per_threshold"] == {0.3: 1.0, 0.4: 1.0, 0.5: 0.0, 0.6: 0.0, 0.7: 0.0}
    assert loose["map"] == pytest.approx(0.4)


def test_map_one_match_per_ground_truth_and_needs_scores():
    ap = average_precision([S(1, 10)], [S(1, 10, score=0.9), S(1, 10, score=0.8)])
    assert list(ap) == pytest.approx([1.0] * 5)  # duplicate after the TP only lowers later P
    with pytest.raises(ValueError, match="score"):
        average_precision([S(1, 10)], [S(1, 10)])
    assert map_tiou([S(1, 10)], [])["map"] == 0.0
