"""Scenes and frames: a face photo placed in a frame, animated by a Timeline.

:func:`build_scene` does the per-video work once (augmentation, placement,
background, one displacement field per AU over the face region);
:func:`render_frame` does the per-frame work: a weighted sum of the active AU
fields and one ``cv2.remap`` of the face region, the creases of the active AUs
(a brightness map each), the eye white a raised upper lid uncovers, the mouth
interior when the lips part, then head pose (one ``warpAffine``), occluder,
lighting, noise and compression bursts, each only when its timeline entry is
active.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .aus import (AUS, EYE_OPENING, LOWER_INNER_LIP, UPPER_INNER_LIP, FaceFrame, au_field,
                  au_shade, sclera_reveal)
from .config import SynthConfig
from .faces import FacePhoto
from .timeline import AU_COLUMN, Timeline

#: AUs that part the lips (the mouth interior is drawn dark when they act).
LIP_PARTING = ("25", "26")
#: Mouth interior: how far outside each lip line the drop is sampled (IOD), the upper share
#: of the gap that shows teeth in a smile, teeth brightness (x the face's bright skin).
MOUTH_PROBE, TEETH_SHARE, TEETH_BRIGHTNESS = 0.025, 0.8, 1.0
#: Teeth relief (``_teeth_relief``): darkening towards the mouth corners and just under the
#: upper lip, and the gaps between teeth (|u| from the mouth centre, IOD: incisors, laterals,
#: canines, first premolars; foreshortened) and their darkening.
TOOTH_CORNER_SHADE, TOOTH_LIP_SHADE = 0.45, 0.15
TOOTH_GAPS, TOOTH_GAP_DARK = (0.0, 0.13, 0.23, 0.31, 0.37), 0.22
#: Eye white uncovered by AU5: the brightest share of the eye opening's pixels gives its
#: colour (percentile), the band's soft edge (AU5 amplitude units) and the lid's shadow on
#: it (darkening at the lid margin).
SCLERA_PERCENTILE, SCLERA_EDGE, SCLERA_LID_SHADOW = 80.0, 0.08, 0.3
#: Mouth interior colour: this share of the warped pixels, plus a dark red (BGR 10, 10, 20).
MOUTH_DARK = 0.15
#: The warp tears (mouth interior shows) where the remap's source misses the pixel by more
#: than this, pixels (0 at the first value, fully painted at the second).
TEAR_MISS_PX = (0.75, 2.0)
#: Teeth are drawn in a smile only on photos whose lips are closed at rest (inner-lip gap
#: below this, IOD): an open photo shows its own teeth.
TEETH_REST_GAP = 0.12
#: A photo's resting smile (mouth corners above the lip line by more than RESTING_LIFT_FREE
#: IOD) is let go by the negative AUs that oppose a smile, each by this share of AU12 at
#: the resting amount (a negative prototype's shares sum to about 1). Not by surprise's
#: jaw drop: corners pulled down on an open mouth read as anger (tried).
RESTING_LIFT_FREE = 0.02
RELAX_SHARE: dict[str, float] = {"15": 0.6, "4": 0.4, "9": 0.3, "10": 0.3}
#: On such a photo the jaw drop (AU26) also lowers the upper lip back over the grin's teeth
#: (this share of AU10, the upper-lip raiser, reversed, at the resting amount): a surprised
#: face's upper lip is relaxed, and a dropped jaw under a bared row of upper teeth read as a
#: laugh (fer reads the mouth region: with it greyed out its "happy" went 99 -> 0 % on
#: obama). The corners stay where they are (see above). With the rounder opening
#: (``aus.JAW_CORNER_REACH``), macro surprise on all photos: fer 64 -> 67 %, facex 53 -> 57 %
#: (README, realism).
RESTING_LIP_COVER: dict[str, float] = {"26": 0.8}
#: Resting-face variety: AUs given a static random amplitude per video.
MORPH_AUS = ("1", "2", "4", "6", "7", "10", "12", "15", "17")


@dataclass
class Scene:
    """One video's static scene.

    Attributes:
        base: (H, W, 3) uint8 neutral frame (face placed on its background).
        roi: (x0, y0, x1, y1) face region the AU fields cover.
        fields: (len(AUS), 2, h, w) float32 forward displacement at amplitude 1, pixels.
        gx, gy: (h, w) float32 absolute source coordinates of the ROI pixels.
        landmarks: (478, 2) float32 landmarks in frame coordinates.
        centre: (2,) face centre (pose pivot), pixels.
        face_w: face width, pixels.
        skin: (3,) BGR colour of the occluder ("hand").
        photo_id: the face asset used.
        mirrored: whether the photo was mirrored.
        shades: {AU column: ((y0, y1, x0, x1) box in the ROI, float32 relative brightness
            at amplitude 1 over it)}, for the AUs with creases (``aus.CREASES``).
        sclera: per eye, ((y0, y1, x0, x1) box in the ROI, float32 AU5 amplitude that
            uncovers each of its pixels as eye white, ``aus.sclera_reveal``; inf: never), and
            sclera_bgr (2, 3) each eye white's colour.
    """

    base: np.ndarray
    roi: tuple[int, int, int, int]
    fields: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    landmarks: np.ndarray
    centre: np.ndarray
    face_w: float
    skin: np.ndarray
    photo_id: str
    mirrored: bool
    shades: dict[int, tuple[tuple[int, int, int, int], np.ndarray]] = field(default_factory=dict)
    sclera: list | None = None
    sclera_bgr: np.ndarray | None = None


def _augment_photo(image: np.ndarray, rng: np.random.Generator,
                   blur_sigma: tuple[float, float]) -> np.ndarray:
    """Colour, contrast, gamma, greyscale and blur augmentation of a uint8 BGR image.

    ``blur_sigma`` is the Gaussian blur sigma range (pixels), applied with p 0.5.
    """
    import cv2

    img = image.astype(np.float32)
    img *= rng.uniform(0.85, 1.15, 3)[None, None, :]
    mean = img.mean()
    img = (img - mean) * rng.uniform(0.75, 1.25) + mean + rng.uniform(-20, 20)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.8, 1.25)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.15:
        out = cv2.cvtColor(cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(*blur_sigma))
    return out


def build_scene(photo: FacePhoto, cfg: SynthConfig, rng: np.random.Generator) -> Scene:
    """Place ``photo`` (augmented) in a ``cfg.width`` x ``cfg.height`` frame."""
    import cv2

    img, lm = photo.image.copy(), photo.landmarks.astype(np.float64).copy()
    size = img.shape[0]
    mirrored = bool(rng.random() < 0.5)
    if mirrored:
        img = img[:, ::-1].copy()
        lm[:, 0] = size - 1 - lm[:, 0]
    if cfg.identity_morph > 0:  # resting-face variety: a static random AU mix
        mix = {au: float(rng.uniform(-1, 1) * cfg.identity_morph) for au in MORPH_AUS}
        f = sum(a * au_field(au, lm, img.shape[:2]) for au, a in mix.items())
        img = _remap(img, f)
        xi = np.clip(lm.round().astype(int), 0, size - 1)
        lm = lm + f[:, xi[:, 1], xi[:, 0]].T
    face_w_src = float(np.hypot(*(lm[454] - lm[234])))  # frontal width: yaw keeps the size
    if cfg.yaw_deg[1] > 0:  # drawn only when on: default videos stay as they were
        yaw = np.deg2rad(rng.uniform(*cfg.yaw_deg)) * rng.choice((-1.0, 1.0))
        img, lm = _turn_head(img, lm, float(yaw))
    img = _augment_photo(img, rng, cfg.blur_sigma)
    ff = FaceFrame.from_landmarks(lm)
    s = rng.uniform(*cfg.face_width) / face_w_src
    angle = rng.uniform(-8, 8)
    w, h = cfg.width, cfg.height
    target = np.array([w / 2 + rng.uniform(-0.12, 0.12) * w, h / 2 + rng.uniform(-0.06, 0.06) * h])
    m = cv2.getRotationMatrix2D(tuple(ff.centre), angle, s)
    m[:, 2] += target - ff.centre
    tile = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    alpha = np.zeros((size, size), np.float32)
    ramp = np.minimum(np.arange(size), size - 1 - np.arange(size)) / (0.18 * size)
    alpha[:] = np.clip(np.minimum(ramp[:, None], ramp[None, :]), 0, 1)
    alpha = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    bg = cv2.resize(img, (w, w), interpolation=cv2.INTER_AREA)[(w - h) // 2:(w - h) // 2 + h]
    small = cv2.resize(bg, (w // 8, h // 8), interpolation=cv2.INTER_AREA)
    bg = cv2.resize(cv2.GaussianBlur(small, (0, 0), 3), (w, h), interpolation=cv2.INTER_LINEAR)
    base = (tile * alpha + bg * (1 - alpha)).astype(np.uint8)
    lm_f = lm @ m[:, :2].T + m[:, 2]
    ff = FaceFrame.from_landmarks(lm_f)
    x0, y0 = lm_f.min(0) - np.array([0.45, 0.75]) * ff.iod
    x1, y1 = lm_f.max(0) + np.array([0.45, 0.65]) * ff.iod
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(np.ceil(x1)), w), min(int(np.ceil(y1)), h)
    fields = np.stack([au_field(au, lm_f - (x0, y0), (y1 - y0, x1 - x0)) for au in AUS])
    _relax_resting_smile(fields, lm_f)
    shades = {}
    for j, au in enumerate(AUS):
        sh = au_shade(au, lm_f - (x0, y0), (y1 - y0, x1 - x0), fields[j])
        if sh is not None:
            shades[j] = _crop(sh, np.abs(sh) > 1e-3)
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    sclera = [_crop(t, np.isfinite(t))
              for t in sclera_reveal(lm_f - (x0, y0), (y1 - y0, x1 - x0))]
    inner = cv2.boundingRect(lm_f[[50, 280, 152, 9]].astype(np.float32))
    patch = base[inner[1]:inner[1] + inner[3], inner[0]:inner[0] + inner[2]].reshape(-1, 3)
    skin = np.median(patch, 0) * rng.uniform(0.6, 1.0) if patch.size else np.full(3, 120.0)
    return Scene(base=base, roi=(x0, y0, x1, y1), fields=fields.astype(np.float32), gx=gx, gy=gy,
                 landmarks=lm_f.astype(np.float32), centre=ff.centre.astype(np.float32),
                 face_w=face_w_src * s, skin=skin.astype(np.float32), photo_id=photo.id,
                 mirrored=mirrored, shades=shades, sclera=sclera,
                 sclera_bgr=_sclera_colour(base, lm_f))


def _sclera_colour(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """(2, 3) BGR of each eye's white (an eye in shadow has a darker one): the mean of the
    brightest pixels inside its opening."""
    import cv2

    out = []
    for idx in EYE_OPENING:
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, [lm[list(idx)].round().astype(np.int32)], 255)
        px = img[mask > 0].reshape(-1, 3).astype(np.float32)
        lum = px.mean(1) if len(px) >= 4 else None
        out.append(np.full(3, 200.0) if lum is None
                   else px[lum >= np.percentile(lum, SCLERA_PERCENTILE)].mean(0))
    return np.array(out, np.float32)


def resting_smile(lm: np.ndarray) -> float:
    """How far a face smiles at rest, in AU12 amplitude units (0 = mouth corners level with
    the lip line or below, 1 = as high as AU12 at amplitude 1 lifts them), from (478, 2)
    landmarks."""
    from .aus import CALIBRATION, HANDLES, MOUTH_CORNERS, MOUTH_LINE

    uv = FaceFrame.from_landmarks(lm.astype(np.float64)).uv(lm.astype(np.float64))
    lift = float(uv[list(MOUTH_LINE), 1].mean() - uv[list(MOUTH_CORNERS), 1].mean())
    au12_lift = -CALIBRATION * HANDLES["12"][0][1][1]
    return float(np.clip((lift - RESTING_LIFT_FREE) / au12_lift, 0.0, 1.0))


def _relax_resting_smile(fields: np.ndarray, lm: np.ndarray) -> None:
    """On a photo that smiles at rest, the AUs that oppose a smile (:data:`RELAX_SHARE`)
    also let the resting smile go (a share of AU12's field, reversed): a frown replaces the
    smile instead of sitting on a grin; the jaw drop lowers the upper lip over the grin's
    teeth (:data:`RESTING_LIP_COVER`, a share of AU10 reversed). In place on
    (len(AUS), 2, h, w)."""
    k = resting_smile(lm)
    if k <= 0:
        return
    smile = fields[AUS.index("12")].copy()
    lip_raise = fields[AUS.index("10")].copy()
    for au, share in RELAX_SHARE.items():
        fields[AUS.index(au)] -= (k * share) * smile
    for au, share in RESTING_LIP_COVER.items():
        fields[AUS.index(au)] -= (k * share) * lip_raise


def _turn_head(img: np.ndarray, lm: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Turn a frontal face photo by ``yaw`` radians (> 0: towards +x) about a vertical axis.

    The head is a vertical cylinder through the face centre whose radius is 0.55 face
    widths: a point at angle θ on it is seen at ``R sin(θ + yaw)``, so the side turned
    away is foreshortened and partly hidden, and the near side's hair and background come
    into view, as on a 3/4-profile face (test identity ``t1_e``). Beyond the cylinder the
    image is shifted to stay continuous. ``lm`` (478, 2) moves the same way.

    Returns the (H, W, 3) warped image and the (478, 2) moved landmarks.
    """
    import cv2

    h, w = img.shape[:2]
    cx = float(lm[[234, 454], 0].mean())
    r = 0.55 * float(np.hypot(*(lm[454] - lm[234])))
    half = np.pi / 2

    def forward(x: np.ndarray) -> np.ndarray:  # source x -> image x
        theta = np.arcsin(np.clip((x - cx) / r, -1, 1))
        inside = cx + r * np.sin(np.clip(theta + yaw, -half, half))
        return np.where(np.abs(x - cx) < r, inside,
                        x + r * (np.sin(np.clip(np.sign(x - cx) * half + yaw, -half, half))
                                 - np.sign(x - cx)))

    # backward map, per output column: the source column whose forward image it is
    xs = np.arange(w, dtype=np.float64)
    grid = np.linspace(-3 * r, 3 * r, 4097) + cx  # forward is monotone: invert by interpolation
    src_x = np.interp(xs, forward(grid), grid)
    map_x = np.broadcast_to(src_x.astype(np.float32)[None, :], (h, w)).copy()
    map_y = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w)).copy()
    out = cv2.remap(img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    moved = lm.copy()
    moved[:, 0] = forward(lm[:, 0])
    return out, moved


def _remap(img: np.ndarray, field: np.ndarray) -> np.ndarray:
    """Warp a whole image by a forward field (backward-mapped approximation)."""
    import cv2

    h, w = img.shape[:2]
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, gx - field[0], gy - field[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


class NoiseBank:
    """A few precomputed sensor-noise frames (uint8 positive / negative parts)."""

    def __init__(self, shape: tuple[int, int, int], sigma: float, seed: int, n: int = 4):
        rng = np.random.default_rng(seed)
        self.pos, self.neg = [], []
        for _ in range(n):
            z = rng.normal(0, sigma, shape)
            self.pos.append(np.clip(z, 0, 255).astype(np.uint8))
            self.neg.append(np.clip(-z, 0, 255).astype(np.uint8))

    def apply(self, img: np.ndarray, i: int) -> np.ndarray:
        import cv2

        k = (i * 7 + i // 5) % len(self.pos)
        return cv2.subtract(cv2.add(img, self.pos[k]), self.neg[(k + 1) % len(self.neg)])


def render_frame(scene: Scene, tl: Timeline, i: int, noise: NoiseBank | None = None) -> np.ndarray:
    """Frame ``i`` of the video (H, W, 3) uint8 BGR."""
    import cv2

    img = scene.base.copy()
    a = tl.amp[i]
    active = np.flatnonzero(a > 1e-4)
    if active.size:
        x0, y0, x1, y1 = scene.roi
        fx = np.zeros_like(scene.gx)
        fy = np.zeros_like(scene.gy)
        for j in active:
            fx += a[j] * scene.fields[j, 0]
            fy += a[j] * scene.fields[j, 1]
        img[y0:y1, x0:x1] = cv2.remap(scene.base, scene.gx - fx, scene.gy - fy, cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE)
        shaded = [j for j in active if j in scene.shades]
        if shaded:  # creases and bulges (aus.CREASES), on the warped face
            _shade(img, scene, [(scene.shades[j], float(a[j])) for j in shaded])
        if a[AU_COLUMN["5"]] > 0.02 and scene.sclera is not None:
            _paint_sclera(img, scene, float(a[AU_COLUMN["5"]]))
        if sum(a[AU_COLUMN[au]] for au in LIP_PARTING) > 0.02:
            _mouth_interior(img, scene, fx, fy, teeth=a[AU_COLUMN["12"]] > 0.3)
    px, py, rot, sc = (float(v) for v in tl.pose[i])
    if abs(px) > 0.01 or abs(py) > 0.01 or abs(rot) > 0.01 or abs(sc - 1) > 1e-4:
        m = cv2.getRotationMatrix2D((float(scene.centre[0]), float(scene.centre[1])), rot, sc)
        m[:, 2] += (px, py)
        img = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REPLICATE)
    else:
        m = None
    if tl.occluder[i] > 0:
        _occluder(img, scene, float(tl.occluder[i]), int(tl.occluder_side[i]), m)
    gain, bias = float(tl.light[i, 0]), float(tl.light[i, 1])
    if abs(gain - 1) > 1e-4 or abs(bias) > 1e-3:
        img = cv2.convertScaleAbs(img, alpha=gain, beta=bias)
    if noise is not None:
        img = noise.apply(img, i)
    if tl.jpeg_q[i] > 0:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(tl.jpeg_q[i])])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


def _crop(m: np.ndarray, keep: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """((y0, y1, x0, x1), m[y0:y1, x0:x1]): ``m`` cut to the bounding box of ``keep``
    (an empty box when nothing is kept)."""
    ys, xs = np.nonzero(keep)
    if not len(ys):
        return (0, 0, 0, 0), m[:0, :0]
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    return (y0, y1, x0, x1), np.ascontiguousarray(m[y0:y1, x0:x1])


def _shade(img: np.ndarray, scene: Scene, maps: list) -> None:
    """Scale the face by 1 + sum of amplitude x shade over the boxes of the (box, map),
    amplitude pairs ``maps`` (``Scene.shades``), in place."""
    import cv2

    boxes = np.array([b for (b, _), _ in maps])
    ya, yb, xa, xb = boxes[:, 0].min(), boxes[:, 1].max(), boxes[:, 2].min(), boxes[:, 3].max()
    if yb <= ya or xb <= xa:
        return
    gain = np.ones((yb - ya, xb - xa), np.float32)
    for ((b0, b1, c0, c1), m), amp in maps:
        gain[b0 - ya:b1 - ya, c0 - xa:c1 - xa] += amp * m
    x0, y0 = scene.roi[:2]
    box = (slice(y0 + ya, y0 + yb), slice(x0 + xa, x0 + xb))
    img[box] = cv2.multiply(img[box], cv2.merge([gain] * 3), dtype=cv2.CV_8U)


def _paint_sclera(img: np.ndarray, scene: Scene, amp: float) -> None:
    """Paint the eye white a raised upper lid uncovers at AU5 amplitude ``amp`` (the band
    below the raised lid, ``aus.sclera_reveal``), in the lid's shadow near its margin."""
    x0, y0 = scene.roi[:2]
    edge = SCLERA_EDGE
    for ((b0, b1, c0, c1), t), colour in zip(scene.sclera, scene.sclera_bgr):
        m = np.clip((amp - edge - t) / edge, 0, 1)
        if not m.any():
            continue
        shade = 1 - SCLERA_LID_SHADOW * np.clip(t / max(amp, 1e-3), 0, 1)  # under the lid
        box = (slice(y0 + b0, y0 + b1), slice(x0 + c0, x0 + c1))
        roi = img[box].astype(np.float32)
        white = colour[None, None, :] * shade[..., None]
        img[box] = np.clip(roi * (1 - m[..., None]) + white * m[..., None], 0,
                           255).astype(np.uint8)


def _mouth_interior(img: np.ndarray, scene: Scene, fx: np.ndarray, fy: np.ndarray,
                    teeth: bool = False) -> None:
    """Paint the mouth interior a warp cannot show where the lower-face drop tears the
    face open along the lip line (the warp's vertical stretch there is large): dark, and
    with ``teeth`` (a smile on a photo whose lips are closed at rest) a band of upper teeth
    in its upper part. A photo's own teeth and open mouth stay as they are (only the torn
    band is new)."""
    import cv2

    x0, y0 = scene.roi[:2]
    h, w = fx.shape
    lm = scene.landmarks.astype(np.float64)
    ff = FaceFrame.from_landmarks(lm)
    probe = MOUTH_PROBE * ff.iod * ff.ey  # sample the drop just outside the tear line

    def moved(idx: tuple[int, ...], side: float) -> np.ndarray:
        p = scene.landmarks[list(idx)]
        q = p + side * probe
        xi = np.clip((q[:, 0] - x0).round().astype(int), 0, w - 1)
        yi = np.clip((q[:, 1] - y0).round().astype(int), 0, h - 1)
        return p + np.stack([fx[yi, xi], fy[yi, xi]], -1)

    mid = (scene.landmarks[list(UPPER_INNER_LIP)] + scene.landmarks[list(LOWER_INNER_LIP)]) / 2
    top = mid + moved(UPPER_INNER_LIP, -1.0) - scene.landmarks[list(UPPER_INNER_LIP)]
    bottom = mid + moved(LOWER_INNER_LIP, 1.0) - scene.landmarks[list(LOWER_INNER_LIP)]
    poly = np.concatenate([top, bottom[::-1]])
    pad = int(np.ceil(0.05 * ff.iod)) + 2
    bx, by, bw, bh = cv2.boundingRect(poly.astype(np.float32))
    bx0, by0 = max(bx - pad, x0, 0), max(by - pad, y0, 0)
    bx1 = min(bx + bw + pad, x0 + w, img.shape[1])
    by1 = min(by + bh + pad, y0 + h, img.shape[0])
    if bx1 - bx0 < 3 or by1 - by0 < 3 or bh < 1:
        return
    sub = (slice(by0 - y0, by1 - y0), slice(bx0 - x0, bx1 - x0))
    # the tear: pixels no source pixel moves to. The remap takes each pixel from
    # s = x - f(x); where the field jumps (the lip line), s + f(s) misses x by the jump.
    sx = (scene.gx[sub] - fx[sub] - x0).astype(np.float32)
    sy = (scene.gy[sub] - fy[sub] - y0).astype(np.float32)
    miss = np.hypot(sx + cv2.remap(fx, sx, sy, cv2.INTER_LINEAR) - (scene.gx[sub] - x0),
                    sy + cv2.remap(fy, sx, sy, cv2.INTER_LINEAR) - (scene.gy[sub] - y0))
    tear = np.clip((miss - TEAR_MISS_PX[0]) / (TEAR_MISS_PX[1] - TEAR_MISS_PX[0]), 0, 1)
    near = np.zeros(tear.shape, np.uint8)  # only the mouth's own tear (not chin or corners)
    off = np.array([bx0, by0], np.float32)
    cv2.fillPoly(near, [(poly - off).round().astype(np.int32)], 255, cv2.LINE_AA)
    near = cv2.dilate(near, np.ones((3, 3), np.uint8)).astype(np.float32) / 255.0
    mask = cv2.GaussianBlur(tear.astype(np.float32) * near, (3, 3), 0)[..., None]
    patch = img[by0:by1, bx0:bx1].astype(np.float32)
    inside = patch * MOUTH_DARK + np.array([10.0, 10.0, 20.0], np.float32)
    rest_gap = float(np.median(ff.uv(lm[list(LOWER_INNER_LIP)])[:, 1]
                               - ff.uv(lm[list(UPPER_INNER_LIP)])[:, 1]))
    if teeth and rest_gap < TEETH_REST_GAP:
        hi = top - 0.02 * ff.iod * ff.ey  # start just above the tear: no dark rim
        band = np.concatenate([hi, (top + TEETH_SHARE * (bottom - top))[::-1]])
        tmask = np.zeros(tear.shape, np.uint8)
        cv2.fillPoly(tmask, [(band - off).round().astype(np.int32)], 255, cv2.LINE_AA)
        tmask = cv2.GaussianBlur(tmask.astype(np.float32) / 255.0, (3, 3), 0)[..., None]
        face = scene.base[int(ff.centre[1]):int(ff.centre[1] + ff.iod),
                          int(ff.centre[0] - ff.iod / 2):int(ff.centre[0] + ff.iod / 2)]
        face = face.reshape(-1, 3).astype(np.float32)
        if not face.size:
            face = patch.reshape(-1, 3)
        # teeth: as bright as the face's bright skin, its colour cast mostly removed
        bright = np.percentile(face.mean(1), 95)
        cast = face.mean(0) / max(float(face.mean()), 1.0)
        tooth = bright * TEETH_BRIGHTNESS * (0.8 + 0.2 * cast)
        tooth = tooth * _teeth_relief(ff, hi, (bx0, by0, bx1, by1))[..., None]
        inside = inside * (1 - tmask) + tooth * tmask
        # the teeth cover the warp's stretched lip line too (else a dark rim around them)
        mask = np.maximum(mask, tmask * near[..., None])
    out = patch * (1 - mask) + inside * mask
    img[by0:by1, bx0:bx1] = np.clip(out, 0, 255).astype(np.uint8)


def _teeth_relief(ff: FaceFrame, upper: np.ndarray, box: tuple[int, int, int, int]
                  ) -> np.ndarray:
    """(h, w) brightness factor of the upper teeth under ``upper`` (the band's upper edge,
    (N, 2) pixels) over ``box`` (x0, y0, x1, y1): darker towards the mouth corners (the
    teeth turn away into shadow), just under the upper lip and at the gaps between the
    teeth (:data:`TOOTH_GAPS`), so the band reads as a row of teeth, not a flat strip."""
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    u, v = ff.uv_grid(xs, ys)
    edge = ff.uv(upper)
    o = np.argsort(edge[:, 0])
    uc, half = float(edge[:, 0].mean()), max(float(np.ptp(edge[:, 0])) / 2, 0.05)
    x = np.clip(np.abs(u - uc) / half, 0, 1)
    f = 1 - TOOTH_CORNER_SHADE * x ** 2
    f *= 1 - TOOTH_LIP_SHADE * np.exp(-((v - np.interp(u, edge[o, 0], edge[o, 1])) / 0.02) ** 2)
    for g in TOOTH_GAPS:
        f *= 1 - TOOTH_GAP_DARK * np.exp(-((np.abs(u - uc) - g) / 0.01) ** 2)
    return f.astype(np.float32)


def _occluder(img: np.ndarray, scene: Scene, cover: float, side: int,
              m: np.ndarray | None) -> None:
    """A hand-like blob covering ``cover`` of the face from the left, right or below."""
    import cv2

    c = scene.centre if m is None else m[:, :2] @ scene.centre + m[:, 2]
    fw = scene.face_w
    ax = (int(0.55 * fw), int(0.75 * fw))
    if side == 0:
        centre = (c[0] - fw * (1.05 - cover * 1.1), c[1] + 0.2 * fw)
    elif side == 1:
        centre = (c[0] + fw * (1.05 - cover * 1.1), c[1] + 0.2 * fw)
    else:
        centre = (c[0], c[1] + fw * (1.6 - cover * 1.3))
        ax = (int(0.75 * fw), int(0.55 * fw))
    colour = tuple(float(v) for v in scene.skin)
    cv2.ellipse(img, (int(centre[0]), int(centre[1])), ax, 0, 0, 360, colour, -1, cv2.LINE_AA)
