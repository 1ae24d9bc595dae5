"""Flow features through the live face + flow stages, and their on-disk cache."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from engine.config import StreamConfig
from training import features
from training.synth.__main__ import main as synth_main


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "mp4"
    assert synth_main(["--out", str(out), "--minutes", "0.05", "--split", "val", "--seed", "4",
                       "--workers", "1", "--video-seconds", "3", "--no-progress",
                       "--format", "mp4", "--set", "gap_scale=0.05"]) == 0
    return out


def test_features_of_a_synthme_video(synth_dir, tmp_path):
    items = features.load_split(synth_dir, tmp_path / "cache", workers=1, progress=False)
    assert len(items) >= 1
    v = items[0]
    s = StreamConfig().flow_size
    assert v.flow.shape == (v.n_frames, 3, s, s) and v.flow.dtype == np.float16
    frames = {r[1]: r for r in features.list_videos(synth_dir)}
    assert v.valid.dtype == bool and sum(i.n_frames for i in items) == 90 and v.video in frames
    cfg = StreamConfig()
    first_ok = int(np.ceil(cfg.flow_k(30.0) * (1 - cfg.flow_dt_tol)))
    assert not v.valid[:first_ok].any()  # no reference crop yet during the first Δ
    assert v.valid.mean() > 0.8  # the face is found in the synthetic video
    assert np.abs(np.asarray(v.flow[v.valid], np.float32)).mean() > 0
    assert not np.asarray(v.flow[~v.valid]).any()  # invalid frames are zeros, as served
    # the appearance input of the primary face: fer probabilities ‖ their baseline delta
    assert v.appearance.shape == (v.n_frames, 14) and v.appearance.dtype == np.float32
    seen = np.abs(v.appearance[:, :7]).sum(1) > 0
    np.testing.assert_allclose(v.appearance[seen, :7].sum(1), 1.0, atol=1e-4)
    assert seen[v.valid].all()  # a frame with valid flow had its face read
    labels = features.read_labels(synth_dir)
    assert tuple(labels.get(v.video, ())) == v.intervals
    summary = features.summarize(items)
    assert summary["frames"] == sum(i.n_frames for i in items)


def test_cache_is_reused_and_invalidated(synth_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = features.load_split(synth_dir, cache, workers=1, progress=False, limit=1)
    calls = []
    real = features.extract_video
    monkeypatch.setattr(features, "extract_video",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    again = features.load_split(synth_dir, cache, workers=1, progress=False, limit=1)
    assert calls == [] and isinstance(again[0].flow, np.memmap)
    np.testing.assert_array_equal(np.asarray(again[0].flow), np.asarray(first[0].flow))
    path = synth_dir / f"{first[0].video}.mp4"
    stat = path.stat()
    import os

    os.utime(path, (stat.st_atime, stat.st_mtime + 10))  # the source changed
    features.load_split(synth_dir, cache, workers=1, progress=False, limit=1)
    assert len(calls) == 1


def test_same_video_name_in_two_folders_keeps_two_entries(synth_dir, tmp_path, monkeypatch):
    """SynthME folders reuse names (train/obama_014, train2/obama_014): loading one folder must
    not evict the other's features, and an entry of the old stem-only layout is adopted."""
    import shutil

    other = tmp_path / "other"
    shutil.copytree(synth_dir, other)
    cache = tmp_path / "cache"
    features.load_split(synth_dir, cache, workers=1, progress=False, limit=1)
    features.load_split(other, cache, workers=1, progress=False, limit=1)
    calls = []
    real = features.extract_video
    monkeypatch.setattr(features, "extract_video",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    features.load_split(synth_dir, cache, workers=1, progress=False, limit=1)
    features.load_split(other, cache, workers=1, progress=False, limit=1)
    assert calls == []
    # the old layout named entries by stem only: rename one back, it is adopted, not re-made
    folder = cache / features.config_hash(StreamConfig())
    path = features.list_videos(other)[0][2]
    key = features.cache_key(path)
    for suffix in (".flow.npy", ".valid.npy", ".app.npy", ".json"):
        (folder / f"{key}{suffix}").rename(folder / f"{path.stem}{suffix}")
    features.load_split(other, cache, workers=1, progress=False, limit=1)
    assert calls == [] and (folder / f"{key}.flow.npy").is_file()
    assert not (folder / f"{path.stem}.flow.npy").exists()


def test_config_hash_tracks_flow_settings():
    base = StreamConfig()
    assert features.config_hash(base) == features.config_hash(StreamConfig())
    assert features.config_hash(base) != features.config_hash(replace(base, flow_dt_s=0.1))


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="videos.csv"):
        features.list_videos(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        features.cached_features(tmp_path / "nope.mp4", tmp_path / "cache")
    with pytest.raises(ValueError, match="workers"):
        features.load_split(tmp_path, tmp_path, workers=0)


def test_undecodable_frames_keep_rows_aligned_with_frame_numbers(tmp_path):
    """A frame that does not decode is a row too (valid=False): row i stays frame i."""
    from tests.stream import media
    from training.features import extract_video
    got = extract_video(media.make_corrupt_middle(tmp_path / "c.mp4", 240))
    flow, valid = got.flow, got.valid
    assert flow.shape[0] == valid.shape[0] == got.appearance.shape[0] == 240
    assert not valid.any()  # no face in the test pattern
