"""FlowStage: time-based reference, head-motion compensation, strain, masks."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.config import StreamConfig
from stream.align import region_slices
from engine.contracts import FaceObs, Frame
from stream.flow import FlowStage, optical_strain


def _texture(size: int = 128, seed: int = 0) -> np.ndarray:
    """Smooth random texture, S×S uint8 (something DIS can track everywhere)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    tex = cv2.GaussianBlur(noise, (0, 0), 2.0)
    tex = (tex - tex.min()) / (tex.max() - tex.min())
    return (tex * 200 + 25).astype(np.uint8)


def _obs(crop: np.ndarray, track_id: int = 0) -> FaceObs:
    return FaceObs(found=True, bbox=(0.0, 0.0, 1.0, 1.0), crop=crop, track_id=track_id)


def _shift_rows(img: np.ndarray, rows: slice, dx: float) -> np.ndarray:
    """Move the band ``rows`` of ``img`` right by ``dx`` px (a local, non-rigid motion)."""
    out = img.copy()
    m = np.float32([[1, 0, dx], [0, 1, 0]])
    moved = cv2.warpAffine(img, m, img.shape[::-1], borderMode=cv2.BORDER_REFLECT)
    out[rows] = moved[rows]
    return out


def test_no_face_gives_invalid_zero_flow():
    cfg = StreamConfig()
    ff = FlowStage(cfg).update(FaceObs(found=False), 7, 0.5)
    assert not ff.valid and ff.track_id == -1 and ff.index == 7 and ff.t_capture == 0.5
    assert ff.flow.shape == (3, cfg.flow_size, cfg.flow_size) and ff.flow.dtype == np.float16
    assert not ff.flow.any()


def test_first_delta_of_a_track_is_invalid_then_valid():
    st = FlowStage(StreamConfig(fps=30, flow_dt_s=0.2))
    tex = _texture()
    valid = [st.update(_obs(tex), i, i / 30).valid for i in range(10)]
    # The reference must lie within 0.5·Δ of t − Δ, i.e. ≥ 0.1 s back: frame 3 is the
    # boundary (float rounding decides), frames 0–2 have none, frames 4+ have one.
    assert valid[:3] == [False] * 3 and all(valid[4:])


def test_reference_is_chosen_by_time_under_dropped_frames():
    st = FlowStage(StreamConfig(flow_dt_s=0.2))
    tex = _texture()
    kept = [i for i in range(21) if i not in (13, 14)]  # frames 13, 14 dropped by the camera
    for i in kept:
        st.update(_obs(tex), i, i / 30)
    # t = 20/30, t − Δ = 14/30; 14 is gone: nearest in time is 15 (1/30 away), not 12 (2/30)
    # and not "6 frames back in the list" (which would be 12).
    assert st.last_reference[0] == 15
    # Irregular timestamps (jittery live camera): nearest to t − Δ wins.
    st = FlowStage(StreamConfig(flow_dt_s=0.2))
    for i, t in enumerate([0.0, 0.05, 0.11, 0.18, 0.26, 0.31, 0.36]):
        st.update(_obs(tex), i, t)
    assert st.last_reference == (3, 0.18)  # t − Δ = 0.16: 0.18 is 0.02 off, 0.11 is 0.05 off


def test_reference_outside_tolerance_gives_invalid():
    st = FlowStage(StreamConfig(flow_dt_s=0.2, flow_dt_tol=0.25))
    tex = _texture()
    st.update(_obs(tex), 0, 0.0)
    assert not st.update(_obs(tex), 1, 0.5).valid  # only reference is 0.5 s old, Δ = 0.2
    assert st.update(_obs(tex), 2, 0.72).valid     # 0.5 is 0.22 s back: within 0.05 of Δ


def test_flow_is_scaled_to_exactly_delta():
    size = 128
    tex = _texture(size)
    rows = region_slices("mouth", size)[0]
    moved = _shift_rows(tex, rows, 2.0)
    mags = []
    for gap in (0.2, 0.26):  # reference exactly Δ back, and 1.3·Δ back
        st = FlowStage(StreamConfig(flow_dt_s=0.2))
        st.update(_obs(tex), 0, 0.0)
        ff = st.update(_obs(moved), 1, gap)
        assert ff.valid
        r = region_slices("mouth", 64)
        mags.append(float(ff.flow[0][r].astype(np.float32).mean()))
    assert mags[0] > 1.0  # ~2 px right in the mouth band
    assert mags[1] / mags[0] == pytest.approx(0.2 / 0.26, rel=0.1)


def test_tracks_have_separate_histories():
    st = FlowStage(StreamConfig(flow_dt_s=0.2))
    a, b = _texture(seed=1), _texture(seed=2)
    rows = slice(60, 128)
    for i in range(12):
        st.update(_obs(_shift_rows(a, rows, 0.3 * i), track_id=0), i, i / 30)
        fb = st.update(_obs(b, track_id=1), i, i / 30)
    assert fb.valid and fb.track_id == 1
    assert np.abs(fb.flow[:2].astype(np.float32)).max() < 0.2  # track 1 never moved


def test_global_motion_is_compensated():
    tex = _texture()
    st = FlowStage(StreamConfig(flow_dt_s=0.2))
    m = cv2.getRotationMatrix2D((64, 64), 2.0, 1.03)
    m[:, 2] += (1.5, -1.0)
    moved = cv2.warpAffine(tex, m, (128, 128), borderMode=cv2.BORDER_REFLECT)
    st.update(_obs(tex), 0, 0.0)
    ff = st.update(_obs(moved), 6, 0.2)
    inner = (slice(8, 56), slice(8, 56))
    mag = np.hypot(ff.flow[0].astype(np.float32), ff.flow[1].astype(np.float32))
    assert mag[inner].mean() < 0.15  # rotation + scale + shift of ~2–3 px removed


def test_optical_strain_of_linear_fields():
    y, x = np.mgrid[0:32, 0:32].astype(np.float64)
    np.testing.assert_allclose(optical_strain(0.1 * x, 0 * x), 0.1, atol=1e-6)   # stretch
    np.testing.assert_allclose(optical_strain(-0.05 * y, 0.05 * x), 0.0, atol=1e-6)  # rotation
    np.testing.assert_allclose(optical_strain(0.2 * y, 0 * x), np.sqrt(2) * 0.1, atol=1e-6)
    np.testing.assert_allclose(optical_strain(0.1 * x, 0 * x, spacing=2.0), 0.05, atol=1e-6)


def test_bad_input():
    st = FlowStage(StreamConfig(crop_size=128))
    with pytest.raises(ValueError, match="obs.crop"):
        st.update(_obs(np.zeros((64, 64), np.uint8)), 0, 0.0)
    st.update(_obs(_texture()), 0, 1.0)
    with pytest.raises(ValueError, match="back in time"):
        st.update(_obs(_texture()), 1, 0.5)


# ---------------------------------------------------------------- with the face tracker
def _run(frames: list[np.ndarray], cfg: StreamConfig):
    from stream.face import FaceTracker
    out = []
    with FaceTracker(cfg) as tr:
        st = FlowStage(cfg)
        for i, img in enumerate(frames):
            up = tr.update(Frame(i, i / cfg.fps, img))
            out.append((up, st.update(up.primary, i, i / cfg.fps)))
    return out


def _region_mag(ff, name: str) -> float:
    mag = np.hypot(ff.flow[0].astype(np.float32), ff.flow[1].astype(np.float32))
    return float(mag[region_slices(name, mag.shape[0])].mean())


def test_rigid_head_motion_gives_near_zero_flow(face_bgr, face_scene):
    pytest.importorskip("mediapipe")
    cfg = StreamConfig(max_faces=1)
    frames = [face_scene(face_bgr, center=(320 + 8 * np.sin(i / 5), 180 + 4 * np.sin(i / 7)),
                         angle=3 * np.sin(i / 6)) for i in range(45)]
    res = _run(frames, cfg)
    assert all(up.found for up, _ in res)
    for up, ff in res[15:]:
        assert ff.valid
        face = [_region_mag(ff, r) for r in ("eyes", "brows", "mouth", "nose")]
        assert max(face) < 0.4, (up.index, face)


def test_mouth_corner_warp_gives_flow_at_the_mouth(face_bgr, face_scene):
    pytest.importorskip("mediapipe")
    from stream.face import FaceTracker
    cfg = StreamConfig(max_faces=1)
    still = face_scene(face_bgr)
    with FaceTracker(cfg) as tr:
        lm = tr.update(Frame(0, 0.0, still)).primary.landmarks
    corners = lm[[61, 291]]  # mouth corners (subject's right, left)
    dirs = np.array([[-0.6, -0.8], [0.6, -0.8]])  # outwards and up: a smile-like pull
    yy, xx = np.mgrid[0:360, 0:640].astype(np.float32)
    disp = np.zeros((360, 640, 2), np.float32)
    for (cx, cy), d in zip(corners, dirs):
        w = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 7.0 ** 2))
        disp += w[..., None] * d
    frames = []
    for i in range(40):
        amp = np.clip((i - 25) / 6, 0, 1) * 3.0  # 0 → 3 px over 0.2 s from frame 25
        map_x = (xx - amp * disp[..., 0]).astype(np.float32)
        map_y = (yy - amp * disp[..., 1]).astype(np.float32)
        frames.append(cv2.remap(still, map_x, map_y, cv2.INTER_LINEAR))
    res = _run(frames, cfg)
    before, peak = res[24][1], res[31][1]
    assert before.valid and peak.valid
    mouth = _region_mag(peak, "mouth")
    others = [_region_mag(peak, r) for r in ("eyes", "brows", "nose")]
    assert mouth > 0.4 and mouth > 4 * max(others), (mouth, others)
    assert _region_mag(before, "mouth") < mouth / 4
