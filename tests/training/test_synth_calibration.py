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
