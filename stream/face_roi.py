"""Landmarks of faces too small for the mesh graph's own detector: one graph per face, on a crop.

MediaPipe's face mesh finds faces with its short-range detector, which misses
faces narrower than ~1/8 of the frame (a group photo, a person across the
room). The full-range detector finds them (down to ~1/18 of the frame, see
:data:`stream.face.MIN_FACE_FRACTION`); each such face then gets a one-face
mesh graph of its own that runs on a square crop around the face, scaled to
:attr:`RoiMeshes.CROP` pixels — in the crop the face is large, so the graph
detects and tracks it as usual. The crop follows the face from frame to
frame (its centre and size come from the last landmarks), so in crop
coordinates the face stays put, which is what the graph's tracking expects.

A region whose graph misses its face on :attr:`RoiMeshes.MISSES` frames in a
row is stopped (its graph goes back to the pool); graphs are built on first
use and reused.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import cv2
import numpy as np


@dataclass
class _Roi:
    graph: Any  # a MediaPipe FaceMesh for one face
    box: np.ndarray  # (4,) x0, y0, x1, y1 of the face in the frame, pixels
    crop: np.ndarray  # (4,) the box the current crop was made from (moved with hysteresis)
    seen: int = 0  # frames in which its face was found
    misses: int = 0  # frames in a row without it


def _crop_transform(box: np.ndarray, margin: float, side: int) -> np.ndarray:
    """2×3 affine from frame pixels to a ``side``² crop centred on ``box``, ``margin`` × its
    size."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    span = margin * max(box[2] - box[0], box[3] - box[1], 1.0)
    s = side / span
    return np.array([[s, 0.0, side / 2 - cx * s], [0.0, s, side / 2 - cy * s]])


class RoiMeshes:
    """One-face mesh graphs on crops around faces, ``update`` once per frame.

    Args:
        make_graph: builds one ready one-face FaceMesh graph (called on first use).
        mute: a context manager that silences native stderr (a graph restarted by
            ``reset`` logs TFLite set-up lines on its next frame).
    """

    #: Side of the crop each graph sees, pixels (the landmark model's input is 192²).
    CROP = 192
    #: Crop side / face box side: room for the face to move between two frames.
    MARGIN = 2.0
    #: The crop is moved only when the face's centre left the middle of the crop by more
    #: than this fraction of the crop box, or its size changed by more than this ratio:
    #: the graph tracks in crop coordinates, and a crop that rescales every frame makes its
    #: landmark estimate drift (measured: a still 37 px face shrank to 27 px in 10 frames).
    RECENTRE, RESIZE = 0.15, 0.25
    #: Frames in a row a region may miss its face before it is stopped (the graph runs
    #: its own detector on the frame after a miss, e.g. when the crop's scale changed).
    MISSES = 2

    def __init__(self, make_graph: Callable[[], Any],
                 mute: Callable[[], ContextManager] = contextlib.nullcontext) -> None:
        self._make_graph, self._mute = make_graph, mute
        self._blank = np.zeros((32, 32, 3), np.uint8)
        self._free: list[Any] = []
        self._rois: list[_Roi] = []
        #: Boxes of the regions stopped in the last update without ever finding a face.
        self.failed: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._rois)

    @property
    def boxes(self) -> list[np.ndarray]:
        """Boxes of the faces being followed."""
        return [r.box for r in self._rois]

    def start(self, box: np.ndarray) -> None:
        """Follow the face in ``box`` (frame pixels) from the next :meth:`update` on."""
        graph = self._free.pop() if self._free else self._make_graph()
        box = np.asarray(box, np.float64)
        self._rois.append(_Roi(graph, box, box))

    def update(self, rgb: np.ndarray, scale: float = 1.0) -> list[np.ndarray]:
        """Landmarks (N×2 frame pixels) of each followed face still found in this frame.

        ``rgb`` is the frame scaled by ``scale`` (boxes and landmarks stay in the
        full frame's pixels). Regions whose face was not found are stopped.
        """
        found: list[np.ndarray] = []
        kept: list[_Roi] = []
        self.failed = []
        for roi in self._rois:
            m = _crop_transform(roi.crop, self.MARGIN, self.CROP)  # frame px -> crop px
            m_rgb = np.hstack([m[:, :2] / scale, m[:, 2:]])  # scaled frame px -> crop px
            crop = cv2.warpAffine(rgb, m_rgb, (self.CROP, self.CROP), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT)
            res = roi.graph.process(crop)
            if not res.multi_face_landmarks:
                roi.misses += 1
                if roi.misses < self.MISSES:
                    kept.append(roi)
                    continue
                if not roi.seen:
                    self.failed.append(roi.box)
                self._release(roi)
                continue
            roi.misses = 0
            pts = np.array([(p.x * self.CROP, p.y * self.CROP)
                            for p in res.multi_face_landmarks[0].landmark])  # (N, 2) crop px
            pts = (pts - m[:, 2]) / m[0, 0]  # back to frame pixels (uniform scale)
            roi.box = np.array([*pts.min(0), *pts.max(0)])
            if self._moved(roi.box, roi.crop):
                roi.crop = roi.box
            roi.seen += 1
            kept.append(roi)
            found.append(pts)
        self._rois = kept
        return found

    def _moved(self, box: np.ndarray, crop: np.ndarray) -> bool:
        """Whether ``box`` is off the middle of, or much larger/smaller than, ``crop``."""
        size = max(crop[2] - crop[0], crop[3] - crop[1], 1.0)
        now = max(box[2] - box[0], box[3] - box[1], 1.0)
        shift = np.hypot((box[0] + box[2] - crop[0] - crop[2]) / 2,
                         (box[1] + box[3] - crop[1] - crop[3]) / 2)
        return bool(shift > self.RECENTRE * size
                    or not 1 / (1 + self.RESIZE) < now / size < 1 + self.RESIZE)

    def stop_where(self, keep: Callable[[np.ndarray], bool]) -> int:
        """Stop following every face whose box fails ``keep``; returns how many stopped."""
        stay = [r for r in self._rois if keep(r.box)]
        for roi in self._rois:
            if roi not in stay:
                self._release(roi)
        stopped, self._rois = len(self._rois) - len(stay), stay
        return stopped

    def _release(self, roi: _Roi) -> None:
        with self._mute():  # a clean state for the next face it follows, set-up lines muted
            roi.graph.reset()
            roi.graph.process(self._blank)
        self._free.append(roi.graph)

    def close(self) -> None:
        """Release every graph (idempotent)."""
        for graph in [*self._free, *(r.graph for r in self._rois)]:
            graph.close()
        self._free, self._rois = [], []
