"""Data contracts passed between stages (design §3): the bottom of the dependency graph.

Everything here is a frozen dataclass with shapes in its docstring, used alike
by ``engine/`` (the streaming schedule, decoding) and ``stream/`` (stages,
interval tracker, sinks). It imports nothing of the project but the label sets
of :mod:`engine.config`.

The records a run emits (:data:`Record`) are :class:`Event`, :class:`EventStart`,
:class:`EventCancel`, :class:`Status` and :class:`Summary`; their JSON form is
written and read in exactly one place, :mod:`stream.events`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from engine.config import EMOTIONS, KINDS


# --- frames and faces ------------------------------------------------------------------------
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


# --- detector readouts -----------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One decoded interval. Frames are stream indices, inclusive.

    Attributes:
        onset_frame, offset_frame: the interval (onset ≤ offset, onset ≥ 0).
        kind: one of ``cfg.kinds``; emotion: argmax of ``emotion_scores``.
        emotion_scores: softmax over ``cfg.emotions``.
        score: kind probability after soft-NMS decay.
        anchor_frame: the point's frame (the interval was seen from there).
        level: pyramid level of the point.
    """

    onset_frame: int
    offset_frame: int
    kind: str
    emotion: str
    emotion_scores: dict[str, float]
    score: float
    anchor_frame: int
    level: int


@dataclass(frozen=True)
class ActiveFrames:
    """Per-frame active-head readout, n frames.

    Attributes:
        frames: (n,) int stream frame indices.
        kind_probs: (n, K) probability that an expression of each kind is under way.
        emotion_probs: (n, E) softmax over emotions.
        since: (n,) float frames since the onset of the expression under way.
    """

    frames: np.ndarray
    kind_probs: np.ndarray
    emotion_probs: np.ndarray
    since: np.ndarray


# --- records a run emits ---------------------------------------------------------------------
@dataclass(frozen=True)
class _Interval:
    """Fields an interval record (final or provisional) carries (design §3).

    Frames are stream indices (from 0), intervals inclusive. ``latency_ms`` is
    emit time − arrival time of ``offset_frame`` (0 for a provisional event).
    """

    onset_frame: int
    apex_frame: int
    offset_frame: int
    onset_s: float
    offset_s: float
    kind: str  # "micro" | "macro"
    emotion: str  # "negative" | "positive" | "surprise" | "others"
    score: float
    emotion_scores: dict[str, float] = field(default_factory=dict)
    emitted_frame: int = -1
    latency_ms: float = 0.0
    track_id: int = 0
    truncated: bool = False  # the face left or the stream ended while it was under way
    id: int = -1  # per track: an event_start and the event (or event_cancel) it becomes share it

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key in ("onset_frame", "apex_frame", "offset_frame"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise ValueError(f"{name}.{key} {value!r} is not a finite whole frame number")
        score = self.score
        if not isinstance(score, (int, float, np.floating)) or isinstance(score, bool) \
                or not np.isfinite(score):
            raise ValueError(f"{name}.score {score!r} is not a finite number")
        if self.kind not in KINDS:
            raise ValueError(f"{name}.kind must be one of {KINDS}, got {self.kind!r}")
        if self.emotion not in EMOTIONS:
            raise ValueError(f"{name}.emotion must be one of {EMOTIONS}, got {self.emotion!r}")
        if not self.onset_frame <= self.offset_frame:
            raise ValueError(f"{name}: onset_frame {self.onset_frame} > offset_frame "
                             f"{self.offset_frame}")


@dataclass(frozen=True)
class Event(_Interval):
    """A final expression interval: emitted once, never withdrawn."""


@dataclass(frozen=True)
class EventStart(_Interval):
    """A provisional expression, under way: ``offset_frame`` is the frame it was seen at.

    It later becomes the :class:`Event` with the same ``id`` (and ``track_id``)
    or is withdrawn by an :class:`EventCancel`.
    """


@dataclass(frozen=True)
class EventCancel:
    """A provisional event (``id`` of ``track_id``) withdrawn at ``frame``."""

    id: int
    track_id: int
    frame: int


#: Status names (design §3). ``detail`` carries what each one adds (``t_s``, ``count``, ...).
STATUSES: tuple[str, ...] = ("face_found", "face_lost", "no_face", "dropped", "source_ended",
                             "source_short", "source_fps", "source_lost", "source_resumed",
                             "interrupted")


@dataclass(frozen=True)
class Status:
    """Something a run says about its input or itself at ``frame``.

    Attributes:
        status: one of :data:`STATUSES`.
        frame: stream index it refers to.
        detail: extra JSON-ready fields (flattened into the record), e.g.
            ``{"t_s": 1.2}``, ``{"count": 3}``, ``{"track_id": 0}``.
    """

    status: str
    frame: int
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"Status.status must be one of {STATUSES}, got {self.status!r}")


@dataclass(frozen=True)
class Summary:
    """What a run did: the last record of every run.

    Attributes:
        source: what was read (path, ``webcam:N``, ``demo``).
        engine: the backend that ran (``onnxruntime``, ...).
        policy: ring back-pressure policy (``block`` | ``drop_oldest``).
        frames_promised: frames the container (or a folder's numbering) promised;
            ``None`` when unknown (a camera, a stream) — see ``source_short`` statuses.
        frames_read / frames_processed / frames_dropped / frames_with_face: counts.
        fps: frames processed per wall-clock second.
        wall_s: wall-clock time of the run, seconds.
        missing_stages: stages that could not run (then no event can be produced).
        latency_ms: per stage, {"p50", "p95", "p99", "n"} in ms.
        events: what the events came to, keys :data:`EVENT_COUNTS` (empty: no engine ran):
            ``event_start`` / ``event`` / ``event_cancel`` records, final events
            ``truncated``, events ``held`` open by the appearance hold, tracker records it
            ``absorbed``, final events its appearance check withdrew
            (``appearance_withdrawn``) and starts it held back that never went out
            (``appearance_withheld``), and final events not emitted because they continued
            one already emitted (``joined``, ``stream/continuations.py``).
    """

    source: str
    engine: str
    policy: str
    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_with_face: int = 0
    fps: float = 0.0
    wall_s: float = 0.0
    missing_stages: tuple[str, ...] = ()
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    frames_promised: int | None = None
    events: dict[str, int] = field(default_factory=dict)


#: Keys of :attr:`Summary.events`.
EVENT_COUNTS: tuple[str, ...] = ("event_start", "event", "event_cancel", "truncated", "held",
                                 "absorbed", "appearance_withdrawn", "appearance_withheld",
                                 "joined")


#: Everything a stage chain or a pipeline hands to its sinks.
Record = Union[Event, EventStart, EventCancel, Status, Summary]
