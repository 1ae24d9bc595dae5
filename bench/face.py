"""Benchmark of the face and flow stages (a section of ``make bench``).

    python -m bench.face [--clip PATH] [--frames N]
    python -m bench.face --compare      # landmark/detector candidates

Times, per 640×360 frame: face detection (frames where the mesh graph ran
its detector), landmark tracking (the other frames, incl. ID matching and
smoothing), alignment, the whole face stage (amortised) and flow; plus the
fraction of frames with a tracked face, and false detections on a clip with
no face.

Without ``--clip`` the face clip is synthetic: a real photo (matplotlib's
``grace_hopper.jpg``) moved by a small smooth head motion (±10 px, ±4°, ±5 %
scale) with camera noise — no real video ships with the project's
dependencies. Its tracking figure is therefore optimistic for real webcams.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

import cv2
import numpy as np

from engine.config import StreamConfig
from engine.contracts import Frame


def _portrait() -> np.ndarray:
    from matplotlib import cbook
    img = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return cv2.resize(img, (240, 280), interpolation=cv2.INTER_AREA)


def head_motion(i: int, size: tuple[int, int] = (640, 360),
                face_size: tuple[int, int] = (240, 280), fps: float = 30.0) -> np.ndarray:
    """2×3 affine (pixel centres) from portrait to frame pixels at frame ``i``.

    The synthetic head motion of :func:`make_face_clip`: ±10 px, ±4°, ±5 % scale around
    the frame centre; ``face_size`` is the portrait's (width, height).
    """
    w, h = size
    fw, fh = face_size
    t = i / fps
    angle = 4 * np.sin(2 * np.pi * 0.23 * t)
    scale = 1 + 0.05 * np.sin(2 * np.pi * 0.11 * t)
    cx = w / 2 + 10 * np.sin(2 * np.pi * 0.31 * t)
    cy = h / 2 + 5 * np.sin(2 * np.pi * 0.17 * t)
    m = cv2.getRotationMatrix2D((fw / 2, fh / 2), angle, scale)
    m[:, 2] += (cx - fw / 2, cy - fh / 2)
    return m


def make_face_clip(frames: int = 300, size: tuple[int, int] = (640, 360),
                   seed: int = 0, face_width: int = 240) -> list[np.ndarray]:
    """A real face with small synthetic head motion and sensor noise, BGR frames.

    ``face_width``: the portrait's width in pixels (240: the face box is ~90 px wide);
    frame ``i`` shows it moved by :func:`head_motion` ``(i, size, portrait size)``.
    """
    face = _portrait()
    if face_width != face.shape[1]:
        face = cv2.resize(face, (face_width, round(face_width * face.shape[0] / face.shape[1])),
                          interpolation=cv2.INTER_AREA)
    w, h = size
    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.normal(110, 40, (h, w, 3)).astype(np.float32), (0, 0), 8)
    bg = np.clip(bg, 0, 255).astype(np.uint8)
    out = []
    for i in range(frames):
        m = head_motion(i, size, (face.shape[1], face.shape[0]))
        img = cv2.warpAffine(face, m, (w, h), dst=bg.copy(), borderMode=cv2.BORDER_TRANSPARENT)
        noise = rng.normal(0, 2.0, img.shape)
        out.append(np.clip(img + noise, 0, 255).astype(np.uint8))
    return out


def make_empty_clip(frames: int = 150, size: tuple[int, int] = (640, 360),
                    seed: int = 1) -> list[np.ndarray]:
    """Textured frames with no face (for the false-detection rate)."""
    w, h = size
    rng = np.random.default_rng(seed)
    out = []
    for i in range(frames):
        sigma = 1 + (i % 10)
        img = cv2.GaussianBlur(rng.normal(120, 60, (h, w, 3)).astype(np.float32), (0, 0), sigma)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _read_clip(spec: str, limit: int) -> list[np.ndarray]:
    from stream.sources import open_source
    frames = []
    with open_source(spec) as src:
        while len(frames) < limit and (fr := src.read()) is not None:
            img = fr.image
            if img.shape[:2] != (360, 640):
                img = cv2.resize(img, (640, 360), interpolation=cv2.INTER_AREA)
            frames.append(img)
    return frames


def _stats(ms: list[float]) -> dict:
    if not ms:
        return {"n": 0}
    a = np.asarray(ms)
    return {"n": len(a), "p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3), "mean": round(float(a.mean()), 3)}


def bench_clip(frames: Sequence[np.ndarray], cfg: StreamConfig, fps: float = 30.0) -> dict:
    """Run FaceTracker + FlowStage over ``frames``; per-stage ms statistics."""
    from stream.face import FaceTracker
    from stream.flow import FlowStage
    det, trk, align, face, flow = [], [], [], [], []
    found = valid = 0
    with FaceTracker(cfg) as tracker:
        stage = FlowStage(cfg)
        for i, img in enumerate(frames):
            t0 = time.perf_counter()
            up = tracker.update(Frame(i, i / fps, img))
            t1 = time.perf_counter()
            ff = stage.update(up.primary, i, i / fps)
            t2 = time.perf_counter()
            lt = tracker.last_timings
            (det if up.detected else trk).append(lt["mesh_ms"] + lt["track_ms"] + lt["check_ms"])
            align.append(lt["align_ms"])
            face.append((t1 - t0) * 1e3)
            flow.append((t2 - t1) * 1e3)
            found += up.found
            valid += ff.valid
    n = max(1, len(frames))
    face_mean = float(np.mean(face)) if face else 0.0
    flow_mean = float(np.mean(flow)) if flow else 0.0
    return {"frames": len(frames), "max_faces": cfg.max_faces,
            "detection_ms": _stats(det), "tracking_ms": _stats(trk), "align_ms": _stats(align),
            "face_stage_ms": _stats(face), "flow_ms": _stats(flow),
            "face_plus_flow_fps": round(1e3 / max(1e-9, face_mean + flow_mean), 1),
            "tracked_fraction": round(found / n, 4), "valid_flow_fraction": round(valid / n, 4)}


def bench_detector(frames: Sequence[np.ndarray], cfg: StreamConfig) -> dict:
    """The standalone MediaPipe face detector (what a forced re-detection costs)."""
    from stream.face import _native_stderr_muted, _solutions
    ms = []
    with _solutions().face_detection.FaceDetection(
            model_selection=0, min_detection_confidence=cfg.face_confidence) as det:
        with _native_stderr_muted():  # TFLite's set-up lines on the first frame
            det.process(np.zeros((32, 32, 3), np.uint8))
        for img in frames:
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            t0 = time.perf_counter()
            det.process(rgb)
            ms.append((time.perf_counter() - t0) * 1e3)
    return _stats(ms)


def compare_detectors(face: Sequence[np.ndarray], empty: Sequence[np.ndarray]) -> dict:
    """ms/frame and hit rates of the landmark/detector candidates (docs/face_and_flow.md).

    yuface is measured only when importable (it is not a project dependency).
    """
    from stream.face import _solutions
    sol = _solutions()
    rgb = lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2RGB)  # noqa: E731
    mesh = lambda **kw: sol.face_mesh.FaceMesh(max_num_faces=1, **kw)  # noqa: E731
    cands = {
        "mediapipe_detection_short": (sol.face_detection.FaceDetection(model_selection=0),
                                      lambda g, im: len(g.process(rgb(im)).detections or [])),
        "mediapipe_mesh_tracking_468": (mesh(static_image_mode=False), None),
        "mediapipe_mesh_tracking_478": (mesh(static_image_mode=False, refine_landmarks=True),
                                        None),
        "mediapipe_mesh_static_468": (mesh(static_image_mode=True), None),
        "opencv_haar_frontalface_default": (
            cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml"),
            lambda g, im: len(g.detectMultiScale(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), 1.1, 5,
                                                 minSize=(60, 60))))}
    try:
        import yuface
        cands["yuface"] = (None, lambda g, im: len(yuface.detect(im, conf=0.5)[0]))
    except ImportError:
        pass
    out = {}
    for name, (graph, fn) in cands.items():
        fn = fn or (lambda g, im: len(g.process(rgb(im)).multi_face_landmarks or []))
        ms, hits = [], 0
        for im in face:
            t0 = time.perf_counter()
            hits += fn(graph, im) >= 1
            ms.append((time.perf_counter() - t0) * 1e3)
        false = sum(fn(graph, im) >= 1 for im in empty)
        out[name] = {**_stats(ms), "found": round(hits / len(face), 4),
                     "false_detections": round(false / len(empty), 4)}
        if hasattr(graph, "close"):
            graph.close()
    return out


def run(report: dict, clip: str | Sequence[np.ndarray] | None = None,
        frames: int = 300) -> None:
    """Add ``report["face_flow"]``: stage timings (ms/frame), tracked fraction, false detections.

    Args:
        report: the benchmark report (updated in place).
        clip: a source spec/path for ``stream.sources.open_source``, a sequence of
            640×360 BGR frames, or None for the synthetic real-face clip.
        frames: frames of the synthetic clip (or the most read from ``clip``).
    """
    if clip is None:
        images, origin = make_face_clip(frames), "synthetic: grace_hopper.jpg + head motion"
    elif isinstance(clip, str):
        images, origin = _read_clip(clip, frames), clip
    else:
        images, origin = list(clip), "frames given by the caller"
    cfg = StreamConfig()
    section = {"clip": origin, "size": [640, 360], "threads": cv2.getNumThreads(),
               "default": bench_clip(images, cfg),
               "single_face": bench_clip(images, StreamConfig(max_faces=1)),
               "detector_ms": bench_detector(images[:60], cfg)}
    empty = bench_clip(make_empty_clip(), cfg)
    section["no_face_false_detection_fraction"] = empty["tracked_fraction"]
    report["face_flow"] = section
    d, s = section["default"], section["single_face"]
    print(f"face+flow ({origin}, {d['frames']} frames): face stage "
          f"{d['face_stage_ms'].get('mean')} ms/frame mean (max_faces={d['max_faces']}), "
          f"{s['face_stage_ms'].get('mean')} ms (max_faces=1); flow "
          f"{d['flow_ms'].get('p50')} ms p50; tracked {d['tracked_fraction']:.1%}; "
          f"false detections on a no-face clip {empty['tracked_fraction']:.1%}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default=None, help="video / folder / source spec (default: "
                        "synthetic real-face clip)")
    parser.add_argument("--frames", type=int, default=300, help="frames to run")
    parser.add_argument("--compare", action="store_true",
                        help="only compare detector candidates (100 face + 100 empty frames)")
    args = parser.parse_args(argv)
    report: dict = {}
    if args.compare:
        report["detectors"] = compare_detectors(make_face_clip(100), make_empty_clip(100))
    else:
        run(report, clip=args.clip, frames=args.frames)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
