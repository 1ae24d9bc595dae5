"""SynthME's flow calibration (DESIGN.md §8) and the expression renderer's mouth interior."""
from __future__ import annotations

import numpy as np

from training.synth.calibrate import REAL_SMILE, SMILE_TOLERANCE, measure, still_timeline


def test_smile_at_amplitude_1_matches_the_real_posed_smile():
    """AU6+12 at amplitude 1: mean DIS flow over the face assets on the 128-px crop is the
    real posed smile's (mouth ≈ 4.5 px, eyes ≈ 1.7 px) within the tolerance."""
    res = measure(1.0, combos={"smile": ("6", "12")})["smile"]
    mouth, eyes = np.nanmean(res, 0)[:2]
    assert abs(mouth - REAL_SMILE["mouth"]) <= SMILE_TOLERANCE["mouth"], mouth
    assert abs(eyes - REAL_SMILE["eyes"]) <= SMILE_TOLERANCE["eyes"], eyes
    half = np.nanmean(measure(0.5, combos={"smile": ("6", "12")})["smile"], 0)[0]
    assert 0.35 * mouth < half < 0.65 * mouth  # amplitude scales the motion


def _scene(photo_id: str):
    from training.synth.config import SynthConfig
    from training.synth.faces import load
    from training.synth.render import build_scene

    return build_scene(load(photo_id), SynthConfig().without_distractors(),
                       np.random.default_rng(0))


def _mouth_box(scene, pad: float = 0.35):
    lm = scene.landmarks
    iod = float(np.hypot(*(lm[263] - lm[33])))
    x0, y0 = (lm[[61, 291, 13, 14]].min(0) - pad * iod).astype(int)
    x1, y1 = (lm[[61, 291, 13, 14]].max(0) + pad * iod).astype(int)
    return slice(max(y0, 0), y1), slice(max(x0, 0), x1)


def test_jaw_drop_opens_a_dark_mouth_and_a_smile_shows_teeth():
    """A closed-mouth photo: AU26 makes dark mouth interior, a smile with lips parted
    (AU6+12+25) makes bright upper teeth in the gap; neither wraps uint8 colours."""
    from training.synth.render import render_frame

    scene = _scene("hopper")  # lips closed at rest
    box = _mouth_box(scene)
    g = lambda img: img[box].astype(np.float32).mean(-1)  # noqa: E731
    rest = g(render_frame(scene, still_timeline((), 0.0), 0))
    jaw = g(render_frame(scene, still_timeline(("26",), 1.0), 0))
    smile = render_frame(scene, still_timeline(("6", "12", "25"), 1.0), 0)[box]
    lm = scene.landmarks
    iod = float(np.hypot(*(lm[263] - lm[33])))
    assert ((jaw < 40) & (rest >= 40)).sum() > 0.02 * iod ** 2  # a dark opening appeared
    rest_bgr = render_frame(scene, still_timeline((), 0.0), 0)[box]
    chroma = lambda px: px.max(-1).astype(np.float32) - px.min(-1)  # noqa: E731
    skin_chroma, skin = np.median(chroma(rest_bgr)), np.percentile(rest, 95)

    def teeth(img: np.ndarray) -> int:  # bright, near-grey pixels (the skin's cast removed)
        return int(((img.astype(np.float32).mean(-1) > 0.8 * skin)
                    & (chroma(img) < 0.5 * skin_chroma)).sum())

    assert teeth(smile) > 0.01 * iod ** 2 + teeth(rest_bgr)


def test_own_teeth_of_a_photo_stay_when_the_lips_part():
    """A photo that shows its teeth at rest: dropping the jaw keeps those teeth (only the
    torn band is painted dark), instead of covering them."""
    from training.synth.render import render_frame

    scene = _scene("obama")  # a toothy smile at rest
    box = _mouth_box(scene)
    rest = render_frame(scene, still_timeline((), 0.0), 0)[box].astype(np.float32).mean(-1)
    opened = render_frame(scene, still_timeline(("26",), 1.0), 0)[box]
    opened = opened.astype(np.float32).mean(-1)
    white = np.percentile(rest, 97)
    # painting the whole gap between the moved lips (the earlier renderer) kept ~62 %
    assert (opened > 0.8 * white).sum() > 0.75 * (rest > 0.8 * white).sum()


def test_creases_darken_folds_and_forehead_only_for_their_aus():
    """AU12 draws nasolabial folds (dark lines beside the mouth, a lighter cheek bulge
    lateral to them), AU1/AU2 forehead lines above the brows; AUs without creases draw
    none. The maps are brightness factors at amplitude 1 (-0.3..0.2)."""
    from training.synth.aus import AUS, FaceFrame

    scene = _scene("hopper")
    assert {AUS[j] for j in scene.shades} == {"1", "2", "6", "12"}
    x0, y0 = scene.roi[:2]
    ff = FaceFrame.from_landmarks(scene.landmarks.astype(np.float64))
    for au, region in (("12", "cheeks"), ("1", "forehead")):
        (b0, b1, c0, c1), m = scene.shades[AUS.index(au)]
        assert -0.35 < m.min() < -0.1 and 0 <= m.max() < 0.2
        ys, xs = np.nonzero(m < -0.1)
        uv = ff.uv(np.stack([xs + c0 + x0, ys + b0 + y0], -1).astype(np.float64))
        if region == "cheeks":  # beside the nose and mouth, below the eyes, both sides
            assert (np.abs(uv[:, 0]) > 0.3).all() and (uv[:, 1] > 0.4).all()
            assert (uv[:, 0] < 0).any() and (uv[:, 0] > 0).any()
        else:  # above the brows
            assert (uv[:, 1] < -0.3).all()


def test_smile_corner_lands_at_its_target():
    """AU12's Gaussian is centred where it sends the corner (aus.HANDLE_AT_TARGET): the
    pixel at the target samples the resting corner (the renderer maps x <- x - f(x)),
    instead of stopping ~40 % short as a Gaussian centred on the corner does."""
    from training.synth.aus import AUS, CALIBRATION, HANDLES, FaceFrame

    scene = _scene("hopper")
    lm = scene.landmarks.astype(np.float64)
    ff = FaceFrame.from_landmarks(lm)
    (idx, (u_out, v), _), = HANDLES["12"]
    f = scene.fields[AUS.index("12")]
    x0, y0 = scene.roi[:2]
    for i in idx:
        side = np.sign((lm[i] - ff.centre) @ ff.ex)
        d = CALIBRATION * ff.iod * (side * u_out * ff.ex + v * ff.ey)
        tx, ty = (lm[i] + d - (x0, y0)).round().astype(int)
        src = lm[i] + d - f[:, ty, tx]
        assert np.hypot(*(src - lm[i])) < 0.15 * np.hypot(*d)


def test_raised_upper_lid_uncovers_eye_white():
    """AU5 paints the band a raised upper lid uncovers with each eye's white (the warp
    alone stretches the iris into it); a blink (AU43) paints nothing."""
    from dataclasses import replace

    from training.synth.render import render_frame

    scene = _scene("collins")  # eyes open, no glasses
    bare = replace(scene, sclera=None)  # the warp alone
    lm = scene.landmarks
    iod = float(np.hypot(*(lm[263] - lm[33])))
    x0, y0 = scene.roi[:2]
    for k, ((b0, b1, c0, c1), t) in enumerate(scene.sclera):
        band = np.zeros(scene.base.shape[:2], bool)
        band[y0 + b0:y0 + b1, x0 + c0:x0 + c1] = t < 0.7
        assert band.sum() > 0.01 * iod ** 2
        white = scene.sclera_bgr[k]
        off = lambda s: np.abs(render_frame(s, still_timeline(("5",), 1.0), 0)[band]  # noqa: E731
                               - white).mean()
        assert off(scene) < 0.5 * off(bare)
    blink = still_timeline(("43",), 1.0)
    assert np.array_equal(render_frame(scene, blink, 0), render_frame(bare, blink, 0))
