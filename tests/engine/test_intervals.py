"""tIoU (scalar and matrix, one definition) and 1D soft-NMS."""
from __future__ import annotations

import math

import numpy as np
import pytest

from engine.intervals import soft_nms_1d, tiou, tiou_matrix

CASES = [
    ((1, 10), (1, 5), 0.5),  # 5 shared frames / 10
    ((1, 100), (1, 49), 0.49),
    ((1, 10), (6, 15), 5 / 15),
    ((1, 10), (11, 20), 0.0),  # touching, no shared frame
    ((5, 5), (5, 5), 1.0),  # single frame counts as 1
    ((5, 3), (1, 10), 0.0),  # empty interval
    ((1.5, 10.5), (1.5, 5.5), 0.5),  # float bounds (the tracker's weighted means)
]


@pytest.mark.parametrize("a,b,expected", CASES)
def test_tiou_counts_frames_inclusively(a, b, expected):
    assert tiou(*a, *b) == pytest.approx(expected)
    assert tiou(*b, *a) == pytest.approx(expected)


def test_matrix_equals_the_scalar_on_every_pair():
    a = np.array([c[0] for c in CASES], dtype=float)
    b = np.array([c[1] for c in CASES], dtype=float)
    m = tiou_matrix(a, b)
    assert m.shape == (len(CASES), len(CASES))
    for i in range(len(CASES)):
        for j in range(len(CASES)):
            assert m[i, j] == pytest.approx(tiou(*a[i], *b[j]))
    assert tiou_matrix(np.zeros((0, 2)), b).shape == (0, len(CASES))


def test_soft_nms_decays_overlaps_and_keeps_disjoint():
    iv = np.array([[0.0, 9.0], [0.0, 9.0], [20.0, 29.0], [5.0, 14.0]])
    sc = np.array([0.9, 0.8, 0.7, 0.6])
    keep, new = soft_nms_1d(iv, sc, sigma=0.5, min_score=0.0, max_keep=10)
    assert keep[0] == 0 and new[0] == pytest.approx(0.9)
    by = dict(zip(keep.tolist(), new.tolist()))
    assert by[2] == pytest.approx(0.7)  # disjoint from all: untouched
    iou = tiou_matrix(iv[0], iv[3:4])[0, 0]
    assert iou == pytest.approx(5 / 15)  # inclusive frames: 5 shared of 15
    decay = math.exp(-(iou ** 2) / 0.5)
    assert by[3] == pytest.approx(0.6 * decay)  # decayed once, by row 0
    # row 1 is identical to row 0 (IoU 1) and overlaps row 3, kept before it
    assert by[1] == pytest.approx(0.8 * math.exp(-1 / 0.5) * decay)
    assert keep.tolist() == [0, 2, 3, 1]
    keep2, _ = soft_nms_1d(iv, sc, sigma=0.5, min_score=0.5, max_keep=10)
    assert keep2.tolist() == [0, 2]  # row 3 fell to 0.48 < 0.5
    keep3, _ = soft_nms_1d(iv, sc, sigma=0.5, min_score=0.0, max_keep=2)
    assert keep3.tolist() == [0, 2]
    with pytest.raises(ValueError, match="sigma"):
        soft_nms_1d(iv, sc, sigma=0.0, min_score=0.0, max_keep=2)


