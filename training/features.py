"""Flow features for training, from exactly the live path, cached on disk.

Each video goes through the same stages as ``run_live``:
``VideoFileSource`` → ``FaceTracker.update(frame)`` → primary face →
``FlowStage.update(obs, index, t_capture)`` → ``FlowFrame.flow`` (3×S'×S'
float16) and ``valid``. So the network trains on the inputs it will serve on.

Cache layout (one folder per stream-config hash, so a changed flow setting
never reuses stale features)::

    <cache>/<hash>/<key>.flow.npy    (N, 3, S', S') float16  (memory-mapped on load)
    <cache>/<hash>/<key>.valid.npy   (N,) bool
    <cache>/<hash>/<key>.app.npy     (N, 14) float32 appearance input of the primary face
                                     (fer probabilities ‖ their baseline delta, stream/appearance.py)
    <cache>/<hash>/<key>.json        source path, size, mtime, frames, fps, seconds

``<key>`` is ``<video stem>-<hash of the source's absolute path>``: SynthME
folders reuse video names (``train/obama_014.mp4``, ``train2/obama_014.mp4``),
so the stem alone would make such videos evict each other. A cache entry is
reused when the source's size and mtime match.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from engine.config import StreamConfig
from stream.chain import PrimaryFace, primary_face_features

#: Bump when the extraction code changes in a way that changes its output.
FEATURE_VERSION = 2  # 2: + the appearance input (.app.npy)


@dataclass(frozen=True)
class VideoFeatures:
    """Cached flow features of one video plus its labels (stream indices, inclusive).

    Attributes:
        subject, video: identifiers as in the label file.
        flow: (N, 3, S', S') float16 flow maps (np.memmap when loaded from the cache).
        valid: (N,) bool, False where no face / no reference crop yet.
        fps: frame rate of the source.
        intervals: (onset, offset, kind, emotion) tuples, stream indices.
        appearance: (N, APPEARANCE_DIM) float32 appearance input of the primary face
            (what a model with ``ModelConfig.appearance_dim`` reads), or None.
    """

    subject: str
    video: str
    flow: np.ndarray
    valid: np.ndarray
    fps: float
    intervals: tuple[tuple[int, int, str, str], ...] = ()
    appearance: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.valid.shape[0])


def config_hash(cfg: StreamConfig) -> str:
    """Short hash of everything that changes the features."""
    text = json.dumps({"v": FEATURE_VERSION, **asdict(cfg)}, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def extract_video(path: str | Path, cfg: StreamConfig | None = None,
                  progress: bool = False) -> PrimaryFace:
    """Training features of one video: :func:`stream.chain.primary_face_features` (the live
    chain without an engine; the primary face of each frame, ``valid=False`` where none):
    flow, valid, fps and the appearance input.
    """
    return primary_face_features(path, cfg, progress)


def _entry(cache: Path, key: str) -> tuple[Path, Path, Path, Path]:
    return (cache / f"{key}.flow.npy", cache / f"{key}.valid.npy", cache / f"{key}.app.npy",
            cache / f"{key}.json")


def cache_key(path: Path) -> str:
    """``<stem>-<8 hex of the absolute path>``: unique per source file, readable."""
    return f"{path.stem}-{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"


def _meta_if_fresh(files: tuple[Path, Path, Path, Path], path: Path) -> dict | None:
    if not all(f.is_file() for f in files):
        return None
    f_meta = files[-1]
    meta = json.loads(f_meta.read_text())
    st = path.stat()
    ok = (meta.get("size") == st.st_size and meta.get("mtime") == st.st_mtime
          and Path(meta.get("source", "")).resolve() == path.resolve())
    return meta if ok else None


def _cached_meta(path: Path, cache_dir: str | Path, cfg: StreamConfig) -> dict | None:
    """The cache entry's metadata when it is complete and made from this very file, else None.

    An entry of the older stem-only layout made from this file is renamed into place
    (extracting again costs ~0.25 s per second of video on 2 cores; renaming costs nothing).
    """
    cache = Path(cache_dir) / config_hash(cfg)
    files = _entry(cache, cache_key(path))
    meta = _meta_if_fresh(files, path)
    if meta is None and _meta_if_fresh(legacy := _entry(cache, path.stem), path) is not None:
        for old, new in zip(legacy, files):
            os.replace(old, new)
        meta = _meta_if_fresh(files, path)
    return meta


def cached_features(path: str | Path, cache_dir: str | Path, cfg: StreamConfig | None = None,
                    progress: bool = False) -> PrimaryFace:
    """``extract_video`` with an on-disk cache; flow comes back memory-mapped."""
    cfg = cfg or StreamConfig()
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video not found: {path} (check the dataset folder)")
    cache = Path(cache_dir) / config_hash(cfg)
    cache.mkdir(parents=True, exist_ok=True)
    f_flow, f_valid, f_app, f_meta = _entry(cache, cache_key(path))
    st = path.stat()
    meta = _cached_meta(path, cache_dir, cfg)
    if meta is not None:
        return PrimaryFace(np.load(f_flow, mmap_mode="r"), np.load(f_valid), float(meta["fps"]),
                           np.load(f_app))
    t0 = time.perf_counter()
    got = extract_video(path, cfg, progress)
    valid, fps = got.valid, got.fps
    tmp = f_flow.with_suffix(".tmp.npy")
    np.save(tmp, got.flow)
    os.replace(tmp, f_flow)
    np.save(f_valid, valid)
    np.save(f_app, got.appearance)
    f_meta.write_text(json.dumps({"source": str(path.resolve()), "size": st.st_size,
                                  "mtime": st.st_mtime,
                                  "frames": int(len(valid)), "fps": fps,
                                  "valid_frac": float(valid.mean()) if len(valid) else 0.0,
                                  "seconds": round(time.perf_counter() - t0, 2)}))
    return PrimaryFace(np.load(f_flow, mmap_mode="r"), valid, fps, got.appearance)


def _one(args: tuple[str, str, StreamConfig]) -> str:
    path, cache_dir, cfg = args
    cached_features(path, cache_dir, cfg)
    return path


def list_videos(root: str | Path) -> list[tuple[str, str, Path]]:
    """(subject, video, mp4 path) of a SynthME ``--format mp4`` folder (``videos.csv``)."""
    root = Path(root)
    table = root / "videos.csv"
    if not table.is_file():
        raise ValueError(f"{table} not found: give a folder written by "
                         f"`python -m training.synth --format mp4`")
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [(r["subject"], r["video"], root / f"{r['video']}.mp4") for r in rows]


def read_labels(root: str | Path) -> dict[str, list[tuple[int, int, str, str]]]:
    """Per video, its (onset, offset, kind, emotion) labels (stream indices) from labels.csv."""
    from training.datasets.readers import read_synthme

    out: dict[str, list[tuple[int, int, str, str]]] = {}
    for a in read_synthme(Path(root) / "labels.csv"):
        if a.kind in ("micro", "macro"):
            out.setdefault(a.video, []).append((a.onset, a.offset, a.kind, a.emotion or "others"))
    return out


def load_split(root: str | Path, cache_dir: str | Path, cfg: StreamConfig | None = None,
               workers: int = 1, progress: bool = True,
               limit: int | None = None) -> list[VideoFeatures]:
    """Features + labels of every video of a SynthME mp4 folder, extracting what is missing.

    Args:
        root: folder written by ``python -m training.synth --format mp4``.
        cache_dir: feature cache root (e.g. ``data/features``).
        cfg: stream settings (must match the serving pipeline's).
        workers: processes for extraction (each runs its own MediaPipe graph).
        progress: tqdm bar over videos.
        limit: only the first ``limit`` videos (tests, quick runs).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers!r}")
    cfg = cfg or StreamConfig()
    videos = list_videos(root)[:limit]
    labels = read_labels(root)
    missing = [p for _, _, p in videos
               if not p.is_file() or _cached_meta(p, cache_dir, cfg) is None]
    # only what is not cached yet goes to the workers (each spawn imports MediaPipe: seconds)
    jobs = [(str(p), str(cache_dir), cfg) for p in missing]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for _ in tqdm(pool.imap_unordered(_one, jobs), total=len(jobs), disable=not progress,
                          desc=f"features {Path(root).name}", unit="video"):
                pass
    else:
        for job in tqdm(jobs, disable=not progress, desc=f"features {Path(root).name}",
                        unit="video"):
            _one(job)
    out = []
    for subject, video, path in videos:
        got = cached_features(path, cache_dir, cfg)
        out.append(VideoFeatures(subject, video, got.flow, got.valid, got.fps,
                                 tuple(labels.get(video, ())), got.appearance))
    return out


def load_union(roots: Sequence[str], cache: str, limit: int | None = None
               ) -> list[VideoFeatures]:
    """The videos of every folder in ``roots`` as one test set.

    With several folders each video is renamed ``<folder>/<video>``: two SynthME
    sets of the same identities reuse names (``biden_003`` in test and test_r),
    and the metrics match predictions to labels by video.
    """
    if len(roots) == 1:
        return load_split(roots[0], cache, workers=2, limit=limit)
    names = [Path(r).name for r in roots]
    if len(set(names)) != len(names):
        raise ValueError(f"test folders: their names must differ (they prefix the video names), "
                         f"got {names}")
    return [replace(v, video=f"{name}/{v.video}") for root, name in zip(roots, names)
            for v in load_split(root, cache, workers=2, limit=limit)]


def summarize(items: Sequence[VideoFeatures]) -> dict:
    """Counts for logs and the model card."""
    frames = sum(v.n_frames for v in items)
    kinds: dict[str, int] = {}
    for v in items:
        for _, _, kind, _ in v.intervals:
            kinds[kind] = kinds.get(kind, 0) + 1
    return {"videos": len(items), "frames": frames,
            "minutes": round(frames / 30.0 / 60.0, 2),
            "valid_frac": round(float(np.mean(np.concatenate([v.valid for v in items])))
                                if frames else 0.0, 4),
            "events": kinds}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.features ROOT [ROOT ...] --cache data/features --workers 2``."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m training.features",
                                 description="Extract and cache flow features (live path).")
    ap.add_argument("roots", nargs="+", help="SynthME --format mp4 folders")
    ap.add_argument("--cache", default="data/features", help="feature cache root")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N videos of each folder")
    a = ap.parse_args(argv)
    try:
        for root in a.roots:
            items = load_split(root, a.cache, workers=a.workers, limit=a.limit)
            print(f"{root}: {summarize(items)}")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
