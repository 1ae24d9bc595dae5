"""New identities from two photos of one split: a landmark-driven face morph.

The second face is aligned to the first by its eye centres; both are warped
(a smooth landmark-driven field, see :func:`_warp_to`) to the interpolated
landmark geometry and cross-dissolved inside the face
oval; outside it (hair, background) the first photo stays. With mixing
weights in 0.25-0.6, 14 training identities give 91 pairs of new faces
without leaving the split.
"""
from __future__ import annotations

import numpy as np

from .aus import FaceFrame
from .faces import FacePhoto

#: Face-oval landmark indices (MediaPipe), clockwise from the forehead.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103,
             67, 109)


def _align(b: FacePhoto, a: FacePhoto) -> tuple[np.ndarray, np.ndarray]:
    """``b``'s image and landmarks moved so its eye centres land on ``a``'s."""
    import cv2

    fa = FaceFrame.from_landmarks(a.landmarks.astype(np.float64))
    fb = FaceFrame.from_landmarks(b.landmarks.astype(np.float64))
    s = fa.iod / fb.iod
    ang = np.degrees(np.arctan2(fb.ex[1], fb.ex[0]) - np.arctan2(fa.ex[1], fa.ex[0]))
    m = cv2.getRotationMatrix2D((float(fb.centre[0]), float(fb.centre[1])), ang, s)
    m[:, 2] += fa.centre - fb.centre
    h, w = a.image.shape[:2]
    img = cv2.warpAffine(b.image, m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return img, b.landmarks.astype(np.float64) @ m[:, :2].T + m[:, 2]


def _warp_to(img: np.ndarray, src_lm: np.ndarray, dst_lm: np.ndarray) -> np.ndarray:
    """Warp ``img`` so that ``src_lm`` moves (approximately) to ``dst_lm``.

    The backward displacement is a normalised Gaussian average of the landmark
    displacements (Shepard interpolation, sigma ~ 0.12 IOD) with a zero-displacement prior,
    so it fades to 0 away from the face. (Delaunay interpolation via scipy was tried:
    its simplex search takes seconds on some sliver-rich landmark sets.)
    """
    import cv2

    h, w = img.shape[:2]
    step = 8  # evaluate on a coarse grid, then resize
    sigma = 0.12 * FaceFrame.from_landmarks(dst_lm).iod
    pts, disp = dst_lm[:468], src_lm[:468] - dst_lm[:468]  # iris points duplicate eyelids
    gy, gx = np.mgrid[0:h:step, 0:w:step].astype(np.float64)
    grid = np.stack([gx.ravel(), gy.ravel()], -1)
    d2 = ((grid[:, None, :] - pts[None, :, :]) ** 2).sum(-1)  # (G, 468)
    wgt = np.exp(-d2 / (2 * sigma ** 2))
    prior = np.exp(-2.0)  # weight of "no displacement": matters only ~2 sigma off the mesh
    d = (wgt @ disp) / (wgt.sum(1, keepdims=True) + prior)
    d = cv2.resize(d.reshape(*gx.shape, 2).astype(np.float32), (w, h),
                   interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, xx + d[..., 0], yy + d[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def morph(a: FacePhoto, b: FacePhoto, t: float) -> FacePhoto:
    """A face ``t`` of the way from ``a`` to ``b`` (same split; keeps ``a``'s id and split).

    Raises:
        ValueError: ``t`` outside [0, 1] or the photos come from different splits.
    """
    import cv2

    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must be in [0, 1], got {t}")
    if a.split != b.split:
        raise ValueError(f"cannot mix {a.id} ({a.split}) with {b.id} ({b.split}): splits differ")
    b_img, b_lm = _align(b, a)
    a_lm = a.landmarks.astype(np.float64)
    lm = (1 - t) * a_lm + t * b_lm
    wa = _warp_to(a.image, a_lm, lm).astype(np.float32)
    wb = _warp_to(b_img, b_lm, lm).astype(np.float32)
    mask = np.zeros(a.image.shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(lm[list(FACE_OVAL)].astype(np.int32)), 255)
    ff = FaceFrame.from_landmarks(lm)
    k = max(3, int(0.15 * ff.iod) | 1)
    alpha = cv2.GaussianBlur(mask, (k, k), 0).astype(np.float32)[..., None] / 255.0 * t
    # match b's mean colour inside the face to a's so the blend does not show a seam
    inside = mask > 0
    if inside.any():
        wb = wb * (wa[inside].mean(0) + 1) / (wb[inside].mean(0) + 1)
    img = np.clip(wa * (1 - alpha) + wb * alpha, 0, 255).astype(np.uint8)
    return FacePhoto(id=a.id, identity=a.identity, split=a.split, image=img,
                     landmarks=lm.astype(np.float32))


def yaw(photo: FacePhoto) -> float:
    """Head-yaw proxy: the nose tip's offset from the eye midpoint along the eye line (IOD)."""
    ff = FaceFrame.from_landmarks(photo.landmarks.astype(np.float64))
    return float(ff.uv(photo.landmarks[[1]].astype(np.float64))[0, 0])


#: Photos mix only when their yaws differ by at most this and neither exceeds MAX_YAW
#: (otherwise the blend shows two noses / ghost contours).
MAX_YAW_DIFF, MAX_YAW = 0.15, 0.3


def compatible(a: FacePhoto, b: FacePhoto) -> bool:
    """Whether ``a`` and ``b`` can be morphed: same split, other identity, similar pose."""
    ya, yb = yaw(a), yaw(b)
    return (a.split == b.split and a.identity != b.identity and abs(ya) <= MAX_YAW
            and abs(yb) <= MAX_YAW and abs(ya - yb) <= MAX_YAW_DIFF)
