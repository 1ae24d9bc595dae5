"""One source of truth for every constant the pipeline and the model share.

Each field has a default and a one-line comment; YAML files (training configs)
only override. Derived values are computed here, in one place, and nowhere
else.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

#: Expression kinds the model predicts, in head-output order.
KINDS: tuple[str, ...] = ("micro", "macro")
#: The 4 MEGC analysis classes, in head-output order.
EMOTIONS: tuple[str, ...] = ("negative", "positive", "surprise", "others")
#: Micro-expressions last at most this long (the usual definition, seconds).
MICRO_MAX_S: float = 0.5


@dataclass(frozen=True)
class StreamConfig:
    """Settings of the streaming front half: capture, ring, face crop, flow."""

    fps: float = 30.0  # nominal frame rate when a source does not report one
    ring_capacity: int = 64  # frames held between the capture and pipeline threads
    crop_size: int = 128  # S: side of the aligned gray face crop, pixels
    flow_size: int = 64  # S': side of the flow map handed to the encoder, pixels
    flow_dt_s: float = 0.2  # Δ: time between the two crops the flow compares (k ≈ Δ·fps)
    detect_every: int = 30  # re-run full face detection at least this often, frames
    max_faces: int = 4  # faces tracked at once; the primary one drives single-face outputs
    stop_timeout_s: float = 1.0  # capture.stop() returns within this
    face_landmarks: int = 468  # MediaPipe face mesh points: 468, or 478 (+ iris, ~1 ms more)
    face_confidence: float = 0.5  # MediaPipe detection / tracking confidence threshold, (0, 1)
    primary_face: str = "largest"  # which face drives single-face outputs: "largest" | "central"
    track_keep_s: float = 0.5  # a face that reappears within this keeps its track_id, seconds
    smooth_min_cutoff: float = 1.0  # one-euro filter cutoff for still landmarks, Hz
    smooth_beta: float = 0.05  # one-euro speed gain, 1/px (higher: less lag while moving)
    flow_preset: str = "medium"  # OpenCV DIS preset: "ultrafast" | "fast" | "medium"
    flow_dt_tol: float = 0.5  # reference frame accepted if |gap − Δ| ≤ tol·Δ, else valid=False

    def __post_init__(self) -> None:
        _check_positive(self, ("fps", "ring_capacity", "crop_size", "flow_size",
                               "flow_dt_s", "detect_every", "max_faces", "stop_timeout_s",
                               "face_confidence", "track_keep_s", "smooth_min_cutoff",
                               "flow_dt_tol"))
        _check_choice(self, "face_landmarks", (468, 478))
        _check_choice(self, "primary_face", ("largest", "central"))
        _check_choice(self, "flow_preset", ("ultrafast", "fast", "medium"))
        if not (self.face_confidence < 1 and self.smooth_beta >= 0 and self.flow_dt_tol < 1):
            raise ValueError("StreamConfig: need face_confidence < 1, smooth_beta >= 0 and "
                             f"flow_dt_tol < 1, got {self.face_confidence!r}, "
                             f"{self.smooth_beta!r}, {self.flow_dt_tol!r}")

    def flow_k(self, fps: float | None = None) -> int:
        """Frames between the two crops of a flow pair at ``fps`` (≥ 1)."""
        return max(1, round(self.flow_dt_s * (fps or self.fps)))


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the FEDN network and its streaming schedule."""

    window: int = 256  # frames the temporal detector sees (~8.5 s at 30 fps)
    hop: int = 8  # run the detector every `hop` frames
    attn_window: int = 32  # w: causal sliding-window attention span, positions
    levels: int = 4  # temporal pyramid levels (stride 2 between levels)
    channels: int = 128  # feature width of the temporal detector
    feat_dim: int = 128  # per-frame feature width from the flow encoder
    heads: int = 4  # attention heads
    end_margin: int = 6  # end-anchored targets cover [offset, offset + margin] frames
    kinds: tuple[str, ...] = KINDS  # kind classes, head-output order
    emotions: tuple[str, ...] = EMOTIONS  # emotion classes, head-output order

    def __post_init__(self) -> None:
        _check_positive(self, ("window", "hop", "attn_window", "levels", "channels",
                               "feat_dim", "heads", "end_margin"))
        if self.window % (2 ** (self.levels - 1)):
            raise ValueError(f"window={self.window} must be divisible by 2**(levels-1)="
                             f"{2 ** (self.levels - 1)}")


def _check_positive(cfg: Any, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value > 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be > 0, got {value!r}")


def _check_choice(cfg: Any, name: str, allowed: tuple[Any, ...]) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise ValueError(f"{type(cfg).__name__}.{name} must be one of {allowed}, got {value!r}")


def override(cfg: Any, values: Mapping[str, Any]) -> Any:
    """Return ``cfg`` with ``values`` replaced; unknown keys are an error naming them."""
    known = {f.name for f in fields(cfg)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {type(cfg).__name__} keys {unknown}; known: {sorted(known)}")
    return replace(cfg, **dict(values))
