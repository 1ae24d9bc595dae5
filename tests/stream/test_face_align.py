"""Similarity estimation and the canonical crop layout."""
from __future__ import annotations

import numpy as np
import pytest

from stream.align import REGIONS, STABLE_POINTS, TEMPLATE, align_crop, alignment_matrix, \
    region_slices, similarity


def _sim(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx],
                     [scale * np.sin(a), scale * np.cos(a), ty]])


@pytest.mark.parametrize("params", [(0, 1, 0, 0), (15, 1.2, 30, -4), (-40, 0.5, -7, 100)])
def test_similarity_recovers_a_known_transform(params):
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 300, (8, 2))
    m = _sim(*params)
    dst = src @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(similarity(src, dst), m, atol=1e-9)


def test_similarity_never_reflects():
    src = np.array([[0.0, 0], [1, 0], [0, 1]])
    dst = src * np.array([-1.0, 1.0])  # a mirror image
    m = similarity(src, dst)
    assert np.linalg.det(m[:, :2]) > 0


@pytest.mark.parametrize("src,dst", [(np.zeros((1, 2)), np.zeros((1, 2))),
                                     (np.zeros((3, 2)), np.zeros((4, 2))),
                                     (np.ones((3, 2)), np.zeros((3, 2)))])
def test_similarity_bad_input(src, dst):
    with pytest.raises(ValueError, match="similarity"):
        similarity(src, dst)


def test_template_puts_eyes_at_the_canonical_place():
    right_eye = TEMPLATE[:2].mean(0)
    left_eye = TEMPLATE[2:4].mean(0)
    np.testing.assert_allclose(right_eye, [0.25, 0.38], atol=1e-3)
    np.testing.assert_allclose(left_eye, [0.75, 0.38], atol=1e-3)
    assert len(STABLE_POINTS) == len(TEMPLATE)
    assert not {61, 291, 13, 14, 0, 17} & set(STABLE_POINTS)  # no mouth point


def test_alignment_matrix_maps_a_template_face_onto_the_template():
    size = 128
    lm = np.zeros((468, 2))
    m_true = _sim(12, 2.5, 200, 50)  # canonical → frame
    pts = TEMPLATE * size - 0.5
    lm[list(STABLE_POINTS)] = pts @ m_true[:, :2].T + m_true[:, 2]
    m = alignment_matrix(lm, size)
    back = lm[list(STABLE_POINTS)] @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(back, pts, atol=1e-6)
    gray = np.random.default_rng(0).integers(0, 255, (360, 640), dtype=np.uint8)
    crop, m2 = align_crop(gray, lm, size)
    assert crop.shape == (size, size) and crop.dtype == np.uint8
    np.testing.assert_allclose(m2, m)


def test_alignment_matrix_rejects_few_landmarks():
    with pytest.raises(ValueError, match="landmarks"):
        alignment_matrix(np.zeros((68, 2)), 128)


def test_regions():
    rows, cols = region_slices("mouth", 64)
    assert 0 <= rows.start < rows.stop <= 64 and 0 <= cols.start < cols.stop <= 64
    assert set(REGIONS) >= {"nose", "mouth", "eyes", "brows"}
    with pytest.raises(ValueError, match="region"):
        region_slices("chin", 64)
