"""Face detection, landmark tracking, smoothing and alignment (design §2, issue 4).

Landmarks come from MediaPipe 0.10.14 face mesh, whose wheel bundles the
detector and mesh models (nothing is downloaded). A mesh graph in tracking
mode runs its detector only while it tracks fewer faces than it was built
for; otherwise each face's landmarks are predicted from a region derived
from its previous landmarks (~3 ms per frame on 2 cores). So the tracker
holds one graph per face count k = 1..max_faces and keeps the one that
matches the scene active: the detector runs on the first frame and when a
face is lost, not on every frame. Every ``detect_every`` frames (and when a
new face appears) a standalone detector pass (~1.5 ms) looks for untracked
faces: with room for more it switches to the graph for more faces; at
``max_faces`` it restarts the graph if an untracked face would win the
primary-face policy; with fewer faces than the graph expects it switches
down.

The mesh graph's own detector is MediaPipe's short-range model, which misses
faces narrower than ~1/8 of the frame (a group photo). So the check also runs
the full-range detector (on the first checks, while no face is visible, and
every :data:`FAR_EVERY` checks) and each small face it finds is followed by a
one-face graph on a crop around it (:mod:`stream.face_roi`). Faces narrower
than :data:`MIN_FACE_FRACTION` of the frame's longer side are found on some
frames or not at all (the full-range detector's limit, measured). Graphs are built on first
use, so ``max_faces`` costs nothing until that many faces are seen.

On top of MediaPipe this module keeps stable ``track_id``s (IoU matching,
with a grace period for short losses), smooths landmarks with a one-euro
filter, picks the primary face and warps each face to the canonical crop.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Iterator

import cv2
import numpy as np

from engine.config import StreamConfig
from stream.align import align_crop
from engine.contracts import FaceObs, Frame
from stream.face_roi import RoiMeshes
from stream.smoothing import OneEuroFilter

MEDIAPIPE_HINT = ("stream.face needs MediaPipe 0.10.14 (its wheel bundles the face models): "
                  "pip install --no-deps mediapipe==0.10.14")

#: Observation returned for "no face".
NO_FACE = FaceObs(found=False)
#: Smallest face tracked on every frame: face box width (``FaceObs.bbox``) as a fraction of
#: the frame's longer side — 36 px at 640×360, 106 px at 1920×1080. Measured on a real face
#: photo in 640×360 and 1280×720 frames: every frame from 0.055 on; from ~0.035 to 0.05 on
#: most frames; not at all below ~0.03 (the full-range detector's limit).
MIN_FACE_FRACTION = 0.055
#: Faces narrower than this fraction of the longer side are followed on a crop of their own
#: (the mesh graph's short-range detector finds them from ~0.12 up).
ROI_FRACTION = 0.12
#: While faces are visible, the full-range detector runs at every FAR_EVERY-th check
#: (it costs ~10-25 ms, the short-range one ~1.5 ms).
FAR_EVERY = 4


def min_face_px(width: int, height: int) -> int:
    """Narrowest face (pixels) :class:`FaceTracker` finds in a ``width``×``height`` frame."""
    return int(np.ceil(MIN_FACE_FRACTION * max(width, height)))


# protobuf 4.25 warns on every graph output that MediaPipe 0.10.14 parses; harmless.
warnings.filterwarnings("ignore", message=r"SymbolDatabase\.GetPrototype\(\) is deprecated",
                        category=UserWarning)


@contextlib.contextmanager
def _native_stderr_muted() -> Iterator[None]:
    """Silence file descriptor 2 (MediaPipe's C++ glog / TFLite lines) for a moment.

    Python-level errors still surface: they are raised, not printed, inside.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(devnull)
        os.close(saved)


def _solutions():
    """Import mediapipe.solutions lazily, with a one-line error when it is missing."""
    os.environ.setdefault("GLOG_minloglevel", "2")  # silence the graph's C++ INFO/WARNING lines
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mediapipe.python import solutions
    except ImportError as exc:  # no mediapipe, or a release without `solutions`
        raise ImportError(f"{MEDIAPIPE_HINT} ({exc})") from None
    return solutions


@dataclass(frozen=True)
class FaceUpdate:
    """What ``FaceTracker.update`` saw in one frame.

    Attributes:
        index: frame index.
        t_capture: capture time, seconds.
        faces: visible faces, primary first (empty tuple when none); each
            FaceObs has bbox, N×2 float32 smoothed landmarks, S×S uint8 crop.
        status: "found" when a face is visible after a frame with none,
            "lost" when none is visible after a frame with one, else None.
        started: track ids visible now but not in the previous frame.
        ended: track ids visible in the previous frame but not now.
        detected: True when a full-frame detection ran on this frame.
    """

    index: int
    t_capture: float
    faces: tuple[FaceObs, ...]
    status: str | None = None
    started: tuple[int, ...] = ()
    ended: tuple[int, ...] = ()
    detected: bool = False

    @property
    def primary(self) -> FaceObs:
        """The face that drives single-face outputs (``found=False`` when none)."""
        return self.faces[0] if self.faces else NO_FACE

    @property
    def found(self) -> bool:
        """Whether any face is visible."""
        return bool(self.faces)


@dataclass
class _Track:
    track_id: int
    bbox: np.ndarray  # (4,) x0, y0, x1, y1
    last_seen: float
    filt: OneEuroFilter
    visible: bool = True
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Stateful face stage: ``update(frame) -> FaceUpdate`` every frame, then ``close()``.

    Args:
        cfg: stream settings (crop_size, max_faces, detect_every, face_landmarks,
            face_confidence, primary_face, track_keep_s, smooth_*).

    Raises:
        ImportError: MediaPipe 0.10.14 is not installed (one line, says how).
    """

    #: A challenger must beat the current primary face by this factor (no flip-flopping).
    PRIMARY_MARGIN = 1.25
    #: Minimum IoU between a track's last box and a new face to keep the track_id.
    MATCH_IOU = 0.2
    #: Two faces in one frame overlapping more than this are one face.
    DUPLICATE_IOU = 0.5

    def __init__(self, cfg: StreamConfig | None = None) -> None:
        self.cfg = cfg or StreamConfig()
        self._sol = _solutions()
        self._blank = np.zeros((32, 32, 3), np.uint8)
        # One mesh graph per face count k = 1..max_faces (~20-40 ms and ~10 MB each, so
        # built on first use); the graph for k faces runs its detector only while it tracks
        # fewer than k, so the active graph matches the scene.
        self._graphs: dict[int, object] = {1: self._new_graph(1)}
        with _native_stderr_muted():
            self._detector = self._sol.face_detection.FaceDetection(  # the detect_every check
                model_selection=0, min_detection_confidence=self.cfg.face_confidence)
            self._detector.process(self._blank)
        self._far = None  # full-range detector, built on the first check that needs it
        self._rois = RoiMeshes(lambda: self._new_graph(1), _native_stderr_muted)
        self._roi_failed: list[tuple[np.ndarray, int]] = []  # (box, frames left) not to retry
        self._n_checks = 0
        self._n_main = 0  # faces the active graph returned in the last frame
        self._k = 1  # faces the active graph tracks
        self._tracks: dict[int, _Track] = {}
        self._next_id = 0
        self._primary_id: int | None = None
        self._pinned_id: int | None = None
        self._policy = self.cfg.primary_face
        self._prev_visible: tuple[int, ...] = ()
        self._detector_due = True  # the graph runs its detector on the next frame
        self._since_check = self.cfg.detect_every - 1  # check on the first frame
        self._reset_cooldown = 0
        self._up_from: int | None = None  # face count before the last switch up
        self.last_timings: dict[str, float] = {}

    # ------------------------------------------------------------------ public API
    def set_primary(self, choice: str | int) -> None:
        """Switch the primary face: a policy ("largest" | "central") or a track id to pin."""
        if isinstance(choice, str):
            if choice not in ("largest", "central"):
                raise ValueError(f"set_primary: choice must be 'largest', 'central' or a "
                                 f"track id, got {choice!r}")
            self._policy, self._pinned_id = choice, None
        elif isinstance(choice, (int, np.integer)) and choice >= 0:
            self._pinned_id = int(choice)
        else:
            raise ValueError(f"set_primary: choice must be 'largest', 'central' or a "
                             f"track id >= 0, got {choice!r}")
        self._primary_id = None  # re-choose on the next update, without hysteresis

    def update(self, frame: Frame) -> FaceUpdate:
        """Track faces in one frame (call on every frame, in order)."""
        img = frame.image
        if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
                and img.shape[2] == 3):
            raise ValueError(f"FaceTracker.update: frame.image must be H×W×3 uint8 BGR, got "
                             f"{getattr(img, 'dtype', type(img))} {getattr(img, 'shape', '')}")
        h, w = img.shape[:2]
        t = float(frame.t_capture)
        t0 = time.perf_counter()
        # MediaPipe runs on the frame scaled to face_max_side at most: its cost then stays
        # flat with resolution (landmarks come back normalized, so in frame pixels as before;
        # the aligned crop below is still cut from the full-resolution frame).
        scale = min(1.0, self.cfg.face_max_side / max(h, w))
        small = img if scale == 1.0 else cv2.resize(
            img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_LINEAR)
        rgb = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
        # While crop graphs follow every face and the main graph tracks none, the main
        # graph (its detector, ~4 ms) runs on check frames only: a new large face is then
        # found by the check, within detect_every frames.
        idle = (self._n_main == 0 and len(self._rois) > 0
                and self._since_check + 1 < self.cfg.detect_every)
        detected = self._detector_due and not idle
        raw = [] if idle else [
            np.array([(p.x * w, p.y * h) for p in face.landmark], dtype=np.float64)
            for face in (self._graphs[self._k].process(rgb).multi_face_landmarks or [])]
        self._detector_due = len(raw) < self._k
        self._n_main = len(raw)
        if len(self._rois):
            main_boxes = [np.array([*pts.min(0), *pts.max(0)]) for pts in raw]
            # A small face the main graph now tracks itself needs no crop graph any more.
            self._rois.stop_where(lambda b: all(_iou(b, m) < self.DUPLICATE_IOU
                                                for m in main_boxes))
            raw += self._rois.update(rgb, scale)
            # A crop where no face was ever found (a false detection): not again for a while.
            self._roi_failed += [(b, 10 * self.cfg.detect_every) for b in self._rois.failed]
        t1 = time.perf_counter()
        visible = self._associate(raw, t)
        t2 = time.perf_counter()
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        obs = {}
        for tr in visible:
            crop, _ = align_crop(gray, tr.landmarks, self.cfg.crop_size)
            obs[tr.track_id] = FaceObs(found=True, bbox=tuple(float(v) for v in tr.bbox),
                                       landmarks=tr.landmarks.astype(np.float32), crop=crop,
                                       track_id=tr.track_id)
        t3 = time.perf_counter()
        order = self._order(visible, w, h)
        if any(tr.track_id not in self._prev_visible for tr in visible):
            self._since_check = self.cfg.detect_every - 1  # a new face: look for others now
        detected |= self._check(rgb, visible, w, h)
        t4 = time.perf_counter()
        now = tuple(tr.track_id for tr in visible)
        prev = self._prev_visible
        status = ("found" if now and not prev else "lost" if prev and not now else None)
        self._prev_visible = now
        self.last_timings = {"mesh_ms": (t1 - t0) * 1e3, "track_ms": (t2 - t1) * 1e3,
                             "align_ms": (t3 - t2) * 1e3, "check_ms": (t4 - t3) * 1e3,
                             "detected": float(detected)}
        return FaceUpdate(index=frame.index, t_capture=t,
                          faces=tuple(obs[i] for i in order), status=status,
                          started=tuple(i for i in now if i not in prev),
                          ended=tuple(i for i in prev if i not in now), detected=detected)

    def close(self) -> None:
        """Release the MediaPipe graphs (idempotent)."""
        for g in (*self._graphs.values(), self._detector, self._far):
            if g is not None:
                g.close()
        self._rois.close()
        self._graphs, self._detector, self._far = {}, None, None

    def _new_graph(self, k: int, static_image_mode: bool = False):
        """A mesh graph for ``k`` faces, its TFLite set-up lines (on its first frame) muted.

        ``static_image_mode``: MediaPipe re-detects on every frame (the face-stage sweep's
        ``static_mesh`` option); the tracker itself always follows faces between frames.
        """
        with _native_stderr_muted():
            graph = self._sol.face_mesh.FaceMesh(
                static_image_mode=static_image_mode, max_num_faces=k,
                refine_landmarks=self.cfg.face_landmarks == 478,
                min_detection_confidence=self.cfg.face_confidence,
                min_tracking_confidence=self.cfg.face_confidence)
            graph.process(self._blank)
        return graph

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _associate(self, raw: list[np.ndarray], t: float) -> list[_Track]:
        """Match raw landmark sets to tracks by IoU (greedy), smooth, start new tracks."""
        cfg = self.cfg
        # Forget tracks unseen for longer than the grace period.
        self._tracks = {k: tr for k, tr in self._tracks.items()
                        if tr.visible or t - tr.last_seen <= cfg.track_keep_s}
        raw = self._dedupe(raw)
        boxes = [np.array([*pts.min(0), *pts.max(0)]) for pts in raw]
        cands = sorted(((_iou(b, tr.bbox), i, tr.track_id)
                        for i, b in enumerate(boxes) for tr in self._tracks.values()),
                       reverse=True)
        taken_i, taken_t, match = set(), set(), {}
        for iou, i, tid in cands:
            if iou < self.MATCH_IOU:
                break
            if i not in taken_i and tid not in taken_t:
                match[i] = tid
                taken_i.add(i)
                taken_t.add(tid)
        was_visible = {k for k, tr in self._tracks.items() if tr.visible}
        for tr in self._tracks.values():
            tr.visible = False
        out = []
        for i, pts in enumerate(raw):
            if i in match:
                tr = self._tracks[match[i]]
            else:
                tr = _Track(self._next_id, boxes[i], t, OneEuroFilter(
                    cfg.smooth_min_cutoff, cfg.smooth_beta, default_dt=1.0 / cfg.fps))
                self._tracks[tr.track_id] = tr
                self._next_id += 1
            if tr.track_id not in was_visible:
                tr.filt.reset()  # back after a loss: do not drag old positions along
            tr.landmarks = tr.filt(pts, t)
            tr.bbox = np.array([*tr.landmarks.min(0), *tr.landmarks.max(0)])
            tr.last_seen, tr.visible = t, True
            out.append(tr)
        return out

    def _dedupe(self, raw: list[np.ndarray]) -> list[np.ndarray]:
        """Drop duplicate faces (the graph briefly reports a tracked face twice when a
        new detection overlaps it), keeping the one closest to a known track."""
        if len(raw) < 2:
            return raw
        boxes = [np.array([*pts.min(0), *pts.max(0)]) for pts in raw]
        fit = [max((_iou(b, tr.bbox) for tr in self._tracks.values()), default=0.0)
               for b in boxes]
        kept: list[int] = []
        for i in sorted(range(len(raw)), key=lambda k: -fit[k]):
            if all(_iou(boxes[i], boxes[k]) < self.DUPLICATE_IOU for k in kept):
                kept.append(i)
        return [raw[i] for i in sorted(kept)]

    def _score(self, bbox: np.ndarray, w: int, h: int) -> float:
        """Primary-face score under the current policy (higher is better, > 0)."""
        if self._policy == "largest":
            return float((bbox[2] - bbox[0]) * (bbox[3] - bbox[1]))
        cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
        return 1.0 / (1e-3 + np.hypot((cx - w / 2) / w, (cy - h / 2) / h))

    def _order(self, visible: list[_Track], w: int, h: int) -> list[int]:
        """Track ids, primary first (pinned id, else policy with hysteresis)."""
        if not visible:
            return []
        scores = {tr.track_id: self._score(tr.bbox, w, h) for tr in visible}
        best = max(scores, key=scores.get)
        if self._pinned_id in scores:
            best = self._pinned_id
        elif (self._primary_id in scores
              and scores[best] < self.PRIMARY_MARGIN * scores[self._primary_id]):
            best = self._primary_id
        self._primary_id = best
        rest = sorted((k for k in scores if k != best), key=scores.get, reverse=True)
        return [best, *rest]

    def _switch(self, k: int) -> None:
        """Make the graph for ``k`` faces active, from a clean state (it detects next frame)."""
        self._k = k
        if k in self._graphs:
            with _native_stderr_muted():  # a restarted graph logs its set-up lines again
                self._graphs[k].reset()
                self._graphs[k].process(self._blank)
        else:
            self._graphs[k] = self._new_graph(k)
        self._detector_due = True

    @staticmethod
    def _boxes(detector, rgb: np.ndarray, w: int, h: int) -> list[np.ndarray]:
        """Face boxes (x0, y0, x1, y1 pixels) a MediaPipe face detector finds."""
        out = []
        for det in detector.process(rgb).detections or []:
            rb = det.location_data.relative_bounding_box
            out.append(np.array([rb.xmin * w, rb.ymin * h, (rb.xmin + rb.width) * w,
                                 (rb.ymin + rb.height) * h]))
        return out

    def _check(self, rgb: np.ndarray, visible: list[_Track], w: int, h: int) -> bool:
        """Every ``detect_every`` frames, run the standalone detectors and adapt the graphs.

        - untracked small faces (< :data:`ROI_FRACTION` of the frame) and room for more:
          follow each on a crop of its own (:class:`~stream.face_roi.RoiMeshes`);
        - untracked larger faces and room for more: switch to the graph for more faces
          (faces it then still does not track are followed on crops);
        - max_faces tracked and an untracked face would beat the weakest one under the
          primary policy: restart the graph (it re-detects, best faces first);
        - fewer faces than the active graph expects and none untracked: switch down, so
          the graph stops running its detector on every frame.

        Returns:
            Whether the detector ran.
        """
        self._since_check += 1
        self._reset_cooldown = max(0, self._reset_cooldown - 1)
        self._roi_failed = [(b, left - 1) for b, left in self._roi_failed if left > 1]
        if self._since_check < self.cfg.detect_every:
            return False
        self._since_check = 0
        n, most = len(visible), self.cfg.max_faces
        boxes = self._boxes(self._detector, rgb, w, h)
        if n < most and (not visible or self._n_checks % FAR_EVERY == 0):
            if self._far is None:
                with _native_stderr_muted():
                    self._far = self._sol.face_detection.FaceDetection(
                        model_selection=1, min_detection_confidence=self.cfg.face_confidence)
                    self._far.process(self._blank)  # its set-up lines come on a first frame
            boxes += [b for b in self._boxes(self._far, rgb, w, h)
                      if not any(_contains(o, b) for o in boxes)]
        self._n_checks += 1
        untracked = [b for b in boxes if not any(_contains(tr.bbox, b) for tr in visible)]
        small = [b for b in untracked
                 if max(b[2] - b[0], b[3] - b[1]) < ROI_FRACTION * max(w, h)]
        large = [b for b in untracked if not any(b is s for s in small)]
        if self._up_from is not None and n <= self._up_from:
            # The last switch up found nothing new (e.g. a face the detector sees but the
            # mesh cannot track): do not restart the graph again for a while, and try
            # those faces on crops of their own instead.
            self._reset_cooldown = 10 * self.cfg.detect_every
            small, large = small + large, []
        self._up_from = None
        room = most - n  # every running crop graph follows a visible face
        for box in small:
            if room > 0 and not any(_contains(f, box) for f, _ in self._roi_failed):
                self._rois.start(box + np.array([-0.1, -0.3, 0.1, 0.1]) * (box[2] - box[0]))
                room -= 1
        # Detector boxes are tighter than landmark boxes: enlarge to compare sizes.
        untracked = [b + np.array([-0.1, -0.3, 0.1, 0.1]) * (b[2] - b[0]) for b in untracked]
        large = [b + np.array([-0.1, -0.3, 0.1, 0.1]) * (b[2] - b[0]) for b in large]
        if large and n < most and not self._reset_cooldown:
            self._up_from = n
            self._switch(min(most, self._n_main + len(large)))
        elif untracked and n == most and not self._reset_cooldown:
            weakest = min(self._score(tr.bbox, w, h) for tr in visible)
            if max(self._score(b, w, h) for b in untracked) > self.PRIMARY_MARGIN * weakest:
                self._switch(self._k)
                self._reset_cooldown = 10 * self.cfg.detect_every  # no restart loops
        elif max(1, self._n_main) < self._k:
            self._switch(max(1, self._n_main))  # stop running the detector on every frame
        return True


def _contains(outer: np.ndarray, box: np.ndarray) -> bool:
    """Whether the centre of ``box`` lies inside ``outer`` (both x0, y0, x1, y1)."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return bool(outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3])
