"""Data contracts passed between stages (design §3). Frozen, shapes in docstrings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    Attributes:
        index: position in the stream, from 0, counting every frame the source
            produced (dropped ones included, so gaps show drops).
        t_capture: monotonic capture time, seconds (``time.monotonic()`` clock
            for live sources; the container timestamp for files).
        image: H×W×3 uint8 BGR.
        t_arrival: monotonic time the capture thread handed the frame to the
            ring (0.0 before that); event latency is measured from it, so a
            file paced with ``--realtime`` measures like a camera.
    """

    index: int
    t_capture: float
    image: np.ndarray
    t_arrival: float = 0.0


@dataclass(frozen=True)
class FaceObs:
    """One face in one frame.

    Attributes:
        found: False when no face was found (other fields then empty / None).
        bbox: (x0, y0, x1, y1) float pixels in the frame.
        landmarks: N×2 float32 pixel coordinates in the frame.
        crop: S×S uint8 gray face crop, similarity-aligned to the canonical pose.
        track_id: stable id of this face across frames (-1 when not found).
    """

    found: bool
    bbox: tuple[float, float, float, float] | None = None
    landmarks: np.ndarray | None = None
    crop: np.ndarray | None = None
    track_id: int = -1


@dataclass(frozen=True)
class FlowFrame:
    """Motion of the aligned face between t−Δ and t.

    Attributes:
        index: frame index of t.
        t_capture: capture time of t, seconds.
        flow: 3×S'×S' float16 — u, v (pixels of the S crop, head motion
            removed) and optical strain magnitude.
        valid: False when no face (flow is then all zeros; the model sees a mask).
        track_id: the face track this flow belongs to (-1 when not valid).
    """

    index: int
    t_capture: float
    flow: np.ndarray
    valid: bool
    track_id: int = -1
