"""Similarity alignment of a face to the canonical S×S crop (design §8).

Only points that do not move with expressions drive the transform: the four
eye corners and the nose bridge (MediaPipe face-mesh indices). The mouth,
brows and jaw are left free, so their motion shows up in the optical flow
instead of being aligned away.

Canonical pose: eye centres at (25 %, 38 %) and (75 %, 38 %) of the crop;
the nose-bridge points on the vertical midline below them. The template
below was measured on a frontal face (matplotlib's ``grace_hopper.jpg``)
and made left/right symmetric.
"""
from __future__ import annotations

import cv2
import numpy as np

#: MediaPipe face-mesh indices of the stable points (valid for 468 and 478 meshes):
#: eye outer/inner corners (subject's right, then left), then nose bridge top to bottom.
STABLE_POINTS: tuple[int, ...] = (33, 133, 362, 263, 168, 6, 197, 195)

#: Canonical positions of STABLE_POINTS as fractions of the crop side (x, y).
TEMPLATE: np.ndarray = np.array([
    [0.140, 0.377], [0.360, 0.383],   # subject's right eye: outer, inner corner
    [0.640, 0.383], [0.860, 0.377],   # subject's left eye: inner, outer corner
    [0.500, 0.345], [0.500, 0.404],   # nose bridge: between the eyes, upper bridge
    [0.500, 0.460], [0.500, 0.514],   # nose bridge: middle, lower
], dtype=np.float64)

#: Regions of the canonical crop, (x0, y0, x1, y1) as fractions of the side.
#: ``nose`` is the rigid reference for head-motion compensation in the flow stage.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "nose": (0.42, 0.36, 0.58, 0.56),
    "eyes": (0.05, 0.28, 0.95, 0.48),
    "brows": (0.05, 0.12, 0.95, 0.30),
    "mouth": (0.22, 0.76, 0.78, 0.98),
}


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst.

    Umeyama's closed form without reflection.

    Args:
        src: N×2 points (N ≥ 2).
        dst: N×2 target points.

    Returns:
        2×3 float64 matrix M with dst ≈ M[:, :2] @ src + M[:, 2].
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity: src and dst must both be N×2 with N ≥ 2, "
                         f"got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("similarity: src points are all identical")
    cov = d0.T @ s0 / len(src)  # 2×2
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = (u * sign) @ vt
    scale = (sig * sign).sum() / var_s
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """2×3 similarity from frame pixels to the canonical ``size``×``size`` crop.

    Args:
        landmarks: N×2 face-mesh landmarks in frame pixels (N ≥ 468).
        size: crop side S, pixels.
    """
    if landmarks.ndim != 2 or landmarks.shape[0] < 468 or landmarks.shape[1] != 2:
        raise ValueError(f"landmarks must be N×2 face-mesh points with N ≥ 468, "
                         f"got shape {landmarks.shape}")
    src = landmarks[list(STABLE_POINTS)]
    # Pixel centres: fraction f of the side maps to f·S − 0.5 in pixel coordinates.
    return similarity(src, TEMPLATE * size - 0.5)


def align_crop(gray: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face to the canonical crop.

    Args:
        gray: H×W uint8 gray frame.
        landmarks: N×2 face-mesh landmarks in frame pixels.
        size: crop side S.

    Returns:
        (crop S×S uint8, M 2×3 float64 frame → crop).
    """
    m = alignment_matrix(landmarks, size)
    crop = cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def region_slices(name: str, size: int) -> tuple[slice, slice]:
    """(rows, cols) slices of region ``name`` (a key of REGIONS) in an S×S map."""
    if name not in REGIONS:
        raise ValueError(f"unknown region {name!r}; known: {sorted(REGIONS)}")
    x0, y0, x1, y1 = REGIONS[name]
    return (slice(int(round(y0 * size)), int(round(y1 * size))),
            slice(int(round(x0 * size)), int(round(x1 * size))))
