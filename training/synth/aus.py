"""Facial action units as dense displacement fields over a face photo.

Each AU is a few *handles* placed on MediaPipe face-mesh landmarks: a
displacement (in inter-ocular distances, IOD; ``u`` along the eye line and
pointing away from the face midline, ``v`` down the face) spread by a
Gaussian of radius ``r`` (IOD). AUs that a Gaussian cannot make without
smearing or folding use a region instead: the forehead and brows (AU1/AU2
brow raisers), the eye opening (AU5 upper-lid raiser), the lower face below
the lip line (AU25 lips part, AU26 jaw drop, torn open along the lip line)
and the eyelid band (AU43 / blinks). Fields are computed once per
face at unit amplitude; a frame scales and sums them and remaps the face
(``cv2.remap``), so the per-frame cost is one remap of the face region.

Amplitude 1.0 is a typical macro apex. It is calibrated (:data:`CALIBRATION`)
so that a macro smile (AU6 + AU12 at 1.0) displaces the mouth region by a
mean of ~4.5 px and the eye regions by ~1.7 px at the 128-px aligned-crop
scale (IOD = 64 px), the figures of a real posed smile in DESIGN.md §8.
Appearance a warp cannot make is drawn too: skin creases and bulges as a
brightness map per AU (:data:`CREASES`, :func:`au_shade`: nasolabial folds,
lower-lid bulge, crow's feet, forehead lines), the eye white a raised upper lid
uncovers (:func:`sclera_reveal`), and the dark mouth interior and teeth where
the lower face tears open (``render._mouth_interior``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: MediaPipe face-mesh landmark indices used below (image-left side first).
EYE_R, EYE_L = (33, 133, 159, 145), (362, 263, 386, 374)
UPPER_LID, LOWER_LID = (159, 386), (145, 374)
EYE_CORNERS = ((33, 133), (362, 263))
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39,
              40, 185)
UPPER_INNER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LOWER_INNER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
MOUTH_LINE, CHIN = (13, 14), 152
MOUTH_CORNERS = (61, 291)

#: handles per AU: (landmark indices, (u_out, v) displacement in IOD, radius in IOD).
HANDLES: dict[str, list[tuple[tuple[int, ...], tuple[float, float], float]]] = {
    "4": [((107, 336, 55, 285, 66, 296), (-0.035, 0.045), 0.13)],
    "6": [((117, 346, 118, 347, 50, 280), (0.0, -0.036), 0.17),
          ((145, 374), (0.0, -0.018), 0.07)],
    "7": [((145, 374), (0.0, -0.060), 0.10), ((159, 386), (0.0, 0.030), 0.09)],
    "9": [((129, 358, 98, 327), (0.0, -0.050), 0.11), ((107, 336), (0.0, 0.020), 0.12)],
    "10": [((37, 267, 0, 40, 270), (0.0, -0.050), 0.11)],
    "12": [((61, 291), (0.085, -0.065), 0.21)],
    "14": [((61, 291), (0.060, -0.010), 0.10)],
    "15": [((61, 291), (0.010, 0.070), 0.14)],
    "17": [((152, 199, 175), (0.0, -0.055), 0.20), ((17, 84, 314), (0.0, -0.070), 0.12)],
}
#: Brow raisers as regions (a Gaussian blob cannot lift a brow without smearing the eye
#: below it): per side, the brow landmarks the lift is centred on, the lift (IOD) and its
#: lateral reach (IOD). The forehead moves up with the brow; the lift fades to 0 from the
#: brow down to the lower lid, so the lid skin stretches without folding.
BROW_RAISE: dict[str, tuple[tuple[tuple[int, ...], tuple[int, ...]], float, float]] = {
    "1": (((107, 66), (336, 296)), 0.025, 0.12),
    "2": (((70, 63), (300, 293)), 0.045, 0.16),
}
#: Upper lid raiser (AU5, eyes widened) as a region: the upper lid and the skin above it
#: move up by the first value times the eye's opening (not calibrated: the eye's height
#: decides), the stretch spread from the lower lid up (the eye opens without folding); the
#: second scales the fade-out towards the brow.
EYE_WIDEN: dict[str, tuple[float, float]] = {"5": (0.6, 1.0)}
#: AUs made by regions rather than handles: lower-face drop (IOD) and eyelid closure.
LOWER_FACE_DROP: dict[str, float] = {"25": 0.055, "26": 0.13}
#: Handles added to a region AU: the jaw drop draws the mouth corners in (an oval mouth).
JAW_HANDLES: dict[str, list[tuple[tuple[int, ...], tuple[float, float], float]]] = {
    "26": [((61, 291), (-0.030, 0.020), 0.10)],
}
#: The renderer samples each pixel from x - f(x) (the field at the pixel's target), so a
#: Gaussian centred on its landmark moves that landmark only part of the way and magnifies
#: what surrounds it (thick, bunched lip corners in a smile). Centred this share of the way
#: to the target, the corner lands near it and the lips stretch thin behind it.
HANDLE_AT_TARGET: dict[str, float] = {"6": 1.0, "12": 1.0}
BLINK_AU = "43"
#: Jaw drop shape: least vertical ramp from the upper to the lower lip (IOD) and, per AU,
#: how far towards the mouth corners (multiple of the half mouth width) the opening reaches.
#: The dropped jaw's opening is narrower than parted lips' (AU25, kept at 0.7): a round "O",
#: not a slot as wide as the mouth (on a photo that grins at rest a wide opening kept the
#: grin's shape). With ``render.RESTING_LIP_COVER``, macro surprise on all photos: fer 64 ->
#: 67 %, facex 53 -> 57 % (README, realism).
JAW_RAMP = 0.03
JAW_CORNER_REACH: dict[str, float] = {"25": 0.7, "26": 0.55}
#: Every AU this module can render.
AUS: tuple[str, ...] = ("1", "2", "4", "5") + tuple(h for h in HANDLES if h != "4") + tuple(
    LOWER_FACE_DROP) + (BLINK_AU,)
#: Appearance a warp cannot make, as relative brightness at amplitude 1 (the renderer scales
#: the warped face by 1 + sum of amplitude x shade): skin creases and the bulges beside them,
#: drawn where the AU's own field moves the face. A real-face classifier reads a smile by
#: its nasolabial folds and the raised cheek's lower-lid bulge and crow's feet, and raised
#: brows by the horizontal forehead lines, as much as by the shape (a warp alone moved fer,
#: not facex: README, realism). Per crease: (dark, width) of the line and (light, offset,
#: width) of the bulge beside it, all in IOD; light > 0 brightens the bulge.
CREASES: dict[str, dict[str, tuple[float, float, float, float, float]]] = {
    "12": {"nasolabial": (0.24, 0.05, 0.12, 0.10, 0.06)},
    "6": {"lower_lid": (0.20, 0.030, 0.10, 0.06, 0.035),
          "crows_feet": (0.16, 0.018, 0.0, 0.0, 1.0)},
    "1": {"forehead": (0.14, 0.028, 0.06, 0.05, 0.03)},
    "2": {"forehead": (0.14, 0.028, 0.06, 0.05, 0.03)},
}
#: Crease geometry, per side (image-left first): nasolabial fold from the nose wing down past
#: the mouth corner; the lower-lid landmarks (the bulge's crease runs LID_CREASE_DROP below);
#: crow's feet from the outer eye corner, their angles (degrees, 0 = outward) and length;
#: forehead lines above the brows (first line, spacing), their count and lateral weighting.
NASOLABIAL = ((129, 206, 216, 212), (358, 426, 436, 432))
LOWER_LID_LINE = ((33, 7, 163, 144, 145, 153, 154, 155, 133),
                  (263, 249, 390, 373, 374, 380, 381, 382, 362))
LID_CREASE_DROP = 0.10
OUTER_CORNERS, CROWS_ANGLES, CROWS_LEN = (33, 263), (-28.0, 0.0, 24.0), 0.14
BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)
FOREHEAD_LINES = (0.13, 0.09, 3)
#: Forehead-line weight across the face: AU1 (inner brows) in the middle, AU2 at the sides;
#: (centre |u|, spread) in IOD.
FOREHEAD_SPAN = {"1": (0.0, 0.30), "2": (0.55, 0.20)}
#: Creases are drawn from samples this far apart along them (IOD).
CREASE_STEP = 0.03
#: Global gain applied to every handle/region so that the smile hits DESIGN.md §8.
CALIBRATION: float = 2.25


#: AU combinations per emotion and their weights, per kind (what the generator animates).
#: Macro apexes are full prototypes, as real-face classifiers need them to see the emotion
#: (training/synth/README.md, realism): positive = cheek raise + lip corners up (+ lips
#: parted over the upper teeth); negative = brow lowerer with lid tightener, lip corner
#: depressor and chin raiser (anger / sadness), inner-brow raise in sadness, nose wrinkle
#: and upper-lip raise (disgust); surprise = brows up, upper lids up, jaw dropped (an open
#: oval mouth). Micro-expressions are fragments: one or two AUs, as in the real labels.
AU_COMBOS: dict[str, dict[str, list[tuple[tuple[str, ...], float]]]] = {
    "macro": {
        "positive": [(("6", "12", "25"), 0.75), (("6", "12"), 0.25)],
        "negative": [(("4", "7", "15", "17"), 0.3), (("4", "15", "17"), 0.2),
                     (("1", "4", "15", "17"), 0.2), (("4", "7", "9", "10", "17"), 0.2),
                     (("4", "9", "10"), 0.1)],
        "surprise": [(("1", "2", "5", "26"), 0.8), (("5", "26"), 0.2)],
        "others": [(("14",), 0.3), (("4",), 0.2), (("7",), 0.2), (("17",), 0.15),
                   (("14", "17"), 0.15)],
    },
    "micro": {
        "positive": [(("12",), 0.5), (("6", "12"), 0.5)],
        "negative": [(("4", "7"), 0.3), (("15", "17"), 0.25), (("4",), 0.15), (("9", "10"), 0.15),
                     (("4", "15", "17"), 0.15)],
        "surprise": [(("1", "2"), 0.4), (("1", "2", "5"), 0.3), (("1", "2", "5", "26"), 0.3)],
        "others": [(("14",), 0.3), (("4",), 0.2), (("7",), 0.2), (("17",), 0.15),
                   (("14", "17"), 0.15)],
    },
}


@dataclass(frozen=True)
class FaceFrame:
    """Eye-line coordinate frame of a face.

    Attributes:
        centre: (2,) midpoint between the eye centres, pixels.
        ex: (2,) unit vector from the image-left eye to the image-right eye.
        ey: (2,) unit vector down the face (ex rotated +90° in image coordinates).
        iod: inter-ocular distance, pixels.
    """

    centre: np.ndarray
    ex: np.ndarray
    ey: np.ndarray
    iod: float

    @classmethod
    def from_landmarks(cls, lm: np.ndarray) -> "FaceFrame":
        """The frame of a (478, 2) landmark array."""
        if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] != 2:
            raise ValueError(f"landmarks must be (>=468, 2), got {lm.shape}")
        a, b = lm[list(EYE_R)].mean(0), lm[list(EYE_L)].mean(0)
        d = b - a
        iod = float(np.hypot(*d))
        ex = d / iod
        if ex[0] < 0:  # mirrored photo: keep ex pointing image-right (faces are upright)
            ex = -ex
        ey = np.array([-ex[1], ex[0]])
        centre = (a + b) / 2
        if (lm[list(MOUTH_LINE)].mean(0) - centre) @ ey < 0:  # mirrored face: keep ey downwards
            ey = -ey
        return cls(centre=centre, ex=ex, ey=ey, iod=iod)

    def uv(self, pts: np.ndarray) -> np.ndarray:
        """(N, 2) pixel points -> (N, 2) (u, v) in IOD units."""
        rel = pts - self.centre
        return np.stack([rel @ self.ex, rel @ self.ey], -1) / self.iod

    def uv_grid(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinate grids (H, W) -> (u, v) grids (H, W) in IOD units."""
        uv = self.uv(np.stack([xs.ravel(), ys.ravel()], -1)).reshape(*xs.shape, 2)  # (H·W, 2)
        return uv[..., 0], uv[..., 1]


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def au_field(au: str, lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Forward displacement field (2, H, W) float32, pixels, of ``au`` at amplitude 1.

    Args:
        au: one of :data:`AUS`.
        lm: (478, 2) landmarks in the image the field is for.
        shape: (H, W) of that image.
    """
    if au not in AUS:
        raise ValueError(f"au must be one of {AUS}, got {au!r}")
    h, w = shape
    ff = FaceFrame.from_landmarks(lm)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    field = np.zeros((2, h, w), np.float32)
    gain = CALIBRATION * ff.iod
    if au in HANDLES:
        _add_handles(field, HANDLES[au], lm, ff, xs, ys, gain, HANDLE_AT_TARGET.get(au, 0.0))
        return field
    u, vv = ff.uv_grid(xs, ys)
    if au in EYE_WIDEN:
        lift, spread = EYE_WIDEN[au]
        field = np.zeros((2, h, w), np.float32)
        for (c0, c1), top, bot in zip(EYE_CORNERS, UPPER_LID, LOWER_LID):
            corners = ff.uv(lm[[c0, c1]])
            uc = corners[:, 0].mean()
            half_w = abs(corners[1, 0] - corners[0, 0]) / 2
            vt, vb = ff.uv(lm[[top]])[0, 1], ff.uv(lm[[bot]])[0, 1]
            span = spread * max(vb - vt, 0.05)  # the stretch is spread over the whole eye
            # up: 0 at the lower lid, full just above the upper lid, fading out to the brow
            prof = np.where(vv > vt - 0.3 * span, _smoothstep((vb - vv) / (vb - vt + 0.3 * span)),
                            _smoothstep(1 - (vt - 0.3 * span - vv) / (2.5 * span)))
            wgt = np.exp(-((u - uc) / (1.1 * half_w)) ** 4)
            d = -ff.iod * lift * max(vb - vt, 0.02) * ff.ey  # share of the eye's opening
            field[0] += d[0] * prof * wgt
            field[1] += d[1] * prof * wgt
        return field
    if au in BROW_RAISE:
        (sides, lift, reach) = BROW_RAISE[au]
        wgt = np.zeros((h, w), np.float32)
        for brow, lid in zip(sides, LOWER_LID):  # fades out at the lower lid: no fold
            b = ff.uv(lm[list(brow)])
            ub, vb = float(b[:, 0].mean()), float(b[:, 1].mean())
            vl = float(ff.uv(lm[[lid]])[0, 1])
            vert = np.where(vv < vb, np.exp(-((vb - vv) / 0.6) ** 2),
                            _smoothstep((vl - vv) / max(vl - vb, 0.05)))
            wgt = np.maximum(wgt, vert * np.exp(-((u - ub) / reach) ** 2 / 2))
        d = gain * lift * ff.ey
        return np.stack([-d[0] * wgt, -d[1] * wgt]).astype(np.float32)
    if au in LOWER_FACE_DROP:
        wgt = _jaw_weight(lm, ff, u, vv, JAW_CORNER_REACH[au])
        d = gain * LOWER_FACE_DROP[au] * ff.ey
        field = np.stack([d[0] * wgt, d[1] * wgt]).astype(np.float32)
        _add_handles(field, JAW_HANDLES.get(au, []), lm, ff, xs, ys, gain)
        return field
    # blink / AU43: the band of each eye moves down by its opening height.
    for (c0, c1), top, bot in zip(EYE_CORNERS, UPPER_LID, LOWER_LID):
        corners = ff.uv(lm[[c0, c1]])
        uc = corners[:, 0].mean()
        half_w = abs(corners[1, 0] - corners[0, 0]) / 2
        vt, vb = ff.uv(lm[[top]])[0, 1], ff.uv(lm[[bot]])[0, 1]
        open_h = max(vb - vt, 0.02)
        prof = np.where(vv < vt, _smoothstep(1 - (vt - vv) / (2.2 * open_h)),
                        np.where(vv > vb, _smoothstep(1 - (vv - vb) / (0.6 * open_h)), 1.0))
        wgt = prof * np.exp(-((u - uc) / (1.05 * half_w)) ** 4)
        d = ff.iod * open_h * ff.ey  # full closure, not calibrated: geometry decides
        field[0] += d[0] * wgt
        field[1] += d[1] * wgt
    return field


def _add_handles(field: np.ndarray, handles, lm: np.ndarray, ff: FaceFrame, xs: np.ndarray,
                 ys: np.ndarray, gain: float, at_target: float = 0.0) -> None:
    """Add Gaussian landmark handles (indices, (outward, down) in IOD, radius in IOD) to the
    (2, H, W) ``field`` in place; "outward" points away from the face centre on each side.
    ``at_target`` moves each Gaussian's centre that share of the way to where it sends its
    landmark (see :data:`HANDLE_AT_TARGET`)."""
    for idx, (u_out, v), r in handles:
        sig2 = 2.0 * (r * ff.iod) ** 2
        for i in idx:
            p = lm[i]
            side = np.sign((p - ff.centre) @ ff.ex) or 1.0
            d = gain * (side * u_out * ff.ex + v * ff.ey)
            c = p + at_target * d
            g = np.exp(-((xs - c[0]) ** 2 + (ys - c[1]) ** 2) / sig2)
            field[0] += d[0] * g
            field[1] += d[1] * g


def _jaw_weight(lm: np.ndarray, ff: FaceFrame, u: np.ndarray, vv: np.ndarray,
                reach: float) -> np.ndarray:
    """(H, W) weight of the lower-face drop (AU25/26): 0 above the line midway between the
    inner lips, 1 a thin ramp (``JAW_RAMP``) below it, so the lower lip (and a photo's lower
    teeth) move whole and the warp tears open only along the lip line (the renderer paints
    the torn band as mouth interior); tapering to 0 at ``reach`` x the half mouth width
    near the lips (an oval opening, corners fixed; :data:`JAW_CORNER_REACH`) and to a broad
    jaw-wide shape at the chin."""
    up, low = ff.uv(lm[list(UPPER_INNER_LIP)]), ff.uv(lm[list(LOWER_INNER_LIP)])
    cu = ff.uv(lm[list(MOUTH_CORNERS)])[:, 0]
    uc = max(float(np.abs(cu - cu.mean()).max()), 0.1)  # half mouth width, IOD
    rel = u - float(cu.mean())
    o_up, o_low = np.argsort(up[:, 0]), np.argsort(low[:, 0])
    v_up = np.interp(u, up[o_up, 0], up[o_up, 1])
    v_low = np.interp(u, low[o_low, 0], low[o_low, 1])
    mid = (v_up + v_low) / 2  # an open mouth tears between its upper and lower teeth
    wgt = _smoothstep((vv - (mid - JAW_RAMP / 2)) / JAW_RAMP)
    v_chin = float(ff.uv(lm[[CHIN]])[0, 1])
    t = _smoothstep((vv - mid) / max(v_chin - float(mid.mean()), 0.1))
    oval = np.clip(1 - (rel / (reach * uc)) ** 2, 0, 1) ** 0.6
    wgt *= (1 - t) * oval + t * np.exp(-(u / 0.55) ** 2)
    wgt *= np.where(vv > v_chin, np.exp(-((vv - v_chin) / 0.25) ** 2), 1.0)
    return wgt


#: Upper-lid margin landmarks per eye (corner to corner), image-left eye's first.
UPPER_LID_LINE = ((33, 246, 161, 160, 159, 158, 157, 173, 133),
                  (263, 466, 388, 387, 386, 385, 384, 398, 362))
#: Eye-opening landmarks per eye (the sclera's colour is sampled inside).
EYE_OPENING = ((33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7),
               (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249))


def sclera_reveal(lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(2, H, W) float32, per eye (image-left first): for each pixel between its upper lid
    and where AU5 raises it, the AU5 amplitude at which the raised lid uncovers it (inf
    elsewhere). AU5's warp stretches the eye, iris included; a real raised lid uncovers the
    white above the iris, so the renderer paints this band as sclera. Consistent with
    :func:`au_field`'s AU5 lift."""
    h, w = shape
    ff = FaceFrame.from_landmarks(lm)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    u, vv = ff.uv_grid(xs, ys)
    lift, _ = EYE_WIDEN["5"]
    out = np.full((2, h, w), np.inf, np.float32)
    for k, ((c0, c1), top, bot, line) in enumerate(zip(EYE_CORNERS, UPPER_LID, LOWER_LID,
                                                        UPPER_LID_LINE)):
        corners = ff.uv(lm[[c0, c1]])
        uc = corners[:, 0].mean()
        half_w = abs(corners[1, 0] - corners[0, 0]) / 2
        vt, vb = ff.uv(lm[[top]])[0, 1], ff.uv(lm[[bot]])[0, 1]
        lid = ff.uv(lm[list(line)])
        o = np.argsort(lid[:, 0])
        inside = (u > lid[o[0], 0]) & (u < lid[o[-1], 0])
        v_lid = np.interp(u, lid[o, 0], lid[o, 1])
        rise = lift * max(vb - vt, 0.02) * np.exp(-((u - uc) / (1.1 * half_w)) ** 4)  # IOD
        t = (v_lid - vv) / np.maximum(rise, 1e-4)
        band = inside & (t > 0) & (t < 2.0)
        out[k][band] = t[band]
    return out


def region_masks(lm: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean masks (H, W) of the mouth, eyes and brows regions (for calibration/tests)."""
    ff = FaceFrame.from_landmarks(lm)
    out = {}
    pad = 0.12 * ff.iod
    groups = {"mouth": OUTER_LIPS, "eyes": EYE_R + EYE_L + (7, 163, 144, 153, 154, 155, 246,
                                                            161, 160, 158, 157, 173, 249, 390,
                                                            373, 380, 381, 382, 466, 388, 387,
                                                            385, 384, 398),
              "brows": (46, 53, 52, 65, 55, 70, 63, 105, 66, 107, 276, 283, 282, 295, 285, 300,
                        293, 334, 296, 336)}
    for name, idx in groups.items():
        m = np.zeros(shape, np.uint8)
        if name == "eyes":
            for side in (EYE_R + (7, 163, 144, 153, 154, 155, 246, 161, 160, 158, 157, 173),
                         EYE_L + (249, 390, 373, 380, 381, 382, 466, 388, 387, 385, 384, 398)):
                pts = lm[list(side)]
                x0, y0 = (pts.min(0) - pad).astype(int)
                x1, y1 = (pts.max(0) + pad).astype(int)
                m[max(y0, 0):y1, max(x0, 0):x1] = 1
        else:
            pts = lm[list(idx)]
            x0, y0 = (pts.min(0) - pad).astype(int)
            x1, y1 = (pts.max(0) + pad).astype(int)
            m[max(y0, 0):y1, max(x0, 0):x1] = 1
        out[name] = m.astype(bool)
    return out


def au_shade(au: str, lm: np.ndarray, shape: tuple[int, int],
             field: np.ndarray) -> np.ndarray | None:
    """Relative brightness change (H, W) float32 of ``au`` at amplitude 1 (:data:`CREASES`),
    or None for an AU without creases.

    Args:
        au: one of :data:`AUS`.
        lm: (478, 2) landmarks in the image the map is for.
        shape: (H, W) of that image.
        field: (2, H, W) the AU's own forward field (:func:`au_field`): the creases are
            drawn where it moves the landmarks.
    """
    if au not in CREASES:
        return None
    h, w = shape
    ff = FaceFrame.from_landmarks(lm)
    xi = np.clip(lm[:, 0].round().astype(int), 0, w - 1)
    yi = np.clip(lm[:, 1].round().astype(int), 0, h - 1)
    moved = lm + field[:, yi, xi].T
    out = np.zeros((h, w), np.float32)
    for name, prof in CREASES[au].items():
        for curve in _crease_curves(name, au, moved, ff):
            _draw_crease(out, curve, ff, prof)
    return out


def _crease_curves(name: str, au: str, moved: np.ndarray, ff: FaceFrame) -> list[np.ndarray]:
    """The pixel polylines (N, 2) of crease ``name``, image-left side first (forehead lines:
    one per line)."""
    if name == "nasolabial":
        # past the outer landmark the fold runs on down beside the mouth corner
        return [np.concatenate([moved[list(idx)], moved[[idx[-1]]] + 0.1 * ff.iod * ff.ey])
                for idx in NASOLABIAL]
    if name == "lower_lid":
        return [moved[list(idx)] + LID_CREASE_DROP * ff.iod * ff.ey for idx in LOWER_LID_LINE]
    if name == "crows_feet":
        out = []
        for side, i in zip((-1.0, 1.0), OUTER_CORNERS):
            for ang in CROWS_ANGLES:
                a = np.deg2rad(ang)
                d = (side * np.cos(a) * ff.ex + np.sin(a) * ff.ey) * ff.iod
                p0 = moved[i] + 0.05 * d
                out.append(np.stack([p0, p0 + CROWS_LEN * d]))
        return out
    # forehead: lines parallel to the (raised) brows, arched, weighted across the face
    v_brow = float(ff.uv(moved[list(BROWS)])[:, 1].mean())
    first, step, n = FOREHEAD_LINES
    centre, spread = FOREHEAD_SPAN[au]
    us = np.linspace(-0.75, 0.75, 31)
    lines = []
    for k in range(n):
        v = v_brow - first - step * k + 0.12 * us ** 2
        pts = ff.centre + ff.iod * (us[:, None] * ff.ex + v[:, None] * ff.ey)
        lines.append(np.concatenate([pts, np.exp(-((np.abs(us) - centre) / spread) ** 2 / 2)
                                     [:, None]], 1))
    return lines


def _draw_crease(out: np.ndarray, curve: np.ndarray, ff: FaceFrame, prof) -> None:
    """Add one crease along the pixel polyline ``curve`` (N, 2; an optional third column
    weights it along its length) to ``out`` (H, W) in place: a dark line, a light bulge on
    its lateral (away from the face midline) or, for a line across the face, upper side, both
    fading towards the curve's ends."""
    dark, width, light, off, lw = prof
    pts, wts = curve[:, :2], (curve[:, 2] if curve.shape[1] > 2 else np.ones(len(curve)))
    seg = np.r_[0.0, np.cumsum(np.hypot(*np.diff(pts, axis=0).T))]
    if seg[-1] <= 0:
        return
    step = CREASE_STEP * ff.iod
    t = np.linspace(0.0, seg[-1], max(int(np.ceil(seg[-1] / step)) + 1, 4))
    dense = np.stack([np.interp(t, seg, pts[:, 0]), np.interp(t, seg, pts[:, 1])], -1)
    wt = (np.interp(t, seg, wts) * np.sin(np.pi * np.clip(t / seg[-1], 0, 1)) ** 0.6)
    tan = np.gradient(dense, axis=0)
    tan /= np.hypot(*tan.T)[:, None] + 1e-9
    nrm = np.stack([-tan[:, 1], tan[:, 0]], -1)
    across = abs(float((pts[-1] - pts[0]) @ ff.ex)) > 0.6 * seg[-1]  # runs across the face
    outward = np.sign((pts.mean(0) - ff.centre) @ ff.ex) or 1.0  # mirrored photos too
    ref = -ff.ey if across else outward * ff.ex  # the bulge's side: above, or lateral
    nrm *= np.where(nrm @ ref < 0, -1.0, 1.0)[:, None]
    reach = (3 * width + ((off + 3 * lw) if light > 0 else 0.0)) * ff.iod
    x0, y0 = np.floor(dense.min(0) - reach).astype(int)
    x1, y1 = np.ceil(dense.max(0) + reach).astype(int)
    h, w = out.shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    mid = dense.mean(0)
    pc = np.stack([xs.ravel() - mid[0], ys.ravel() - mid[1]], -1).astype(np.float32)  # (P, 2)
    q = (dense - mid).astype(np.float32)  # (N, 2) samples, centred so the expansion is exact
    k = np.argmin((q ** 2).sum(-1)[None, :] - 2.0 * (pc @ q.T), 1)  # nearest sample, by matmul
    rel = (pc - q[k]) / np.float32(ff.iod)
    s = (rel * nrm[k].astype(np.float32)).sum(-1)  # across the crease
    along = np.abs((rel * tan[k].astype(np.float32)).sum(-1))  # within a sample's reach: 0
    dist2 = s ** 2 + np.maximum(along - np.float32(CREASE_STEP / 2), 0) ** 2
    val = -dark * np.exp(-0.5 * dist2 / width ** 2)
    if light > 0:
        val += light * np.exp(-0.5 * ((s - off) / lw) ** 2) * _smoothstep(s / (2 * width))
    out[y0:y1, x0:x1] += (val * wt[k]).reshape(y1 - y0, x1 - x0).astype(np.float32)
