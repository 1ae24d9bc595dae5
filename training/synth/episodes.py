"""The records of a SynthME timeline (expressions, distractor episodes, per-frame arrays)
and the small schedule helpers (ramps, Poisson times) the samplers share.

Frame numbers are stream indices (0-based), inclusive.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .aus import AU_COMBOS, AUS

#: Column of each AU in :attr:`Timeline.amp`.
AU_COLUMN: dict[str, int] = {au: i for i, au in enumerate(AUS)}


@dataclass(frozen=True)
class SynthEvent:
    """One labelled expression (stream indices, inclusive)."""

    onset: int
    apex: int
    offset: int
    kind: str  # micro | macro
    emotion: str  # one of EMOTIONS
    aus: tuple[str, ...]  # FACS AUs animated
    amplitude: float  # apex amplitude, AU units
    hold: int = 0  # frames after the apex still at full amplitude (apex..apex+hold)
    end: int = -1  # last frame of the motion when the label was truncated (-1: = offset)
    truncated: bool = False  # the face left the frame: the label ends at its last visible frame

    @property
    def last(self) -> int:
        """Last frame the expression moves (``end`` when truncated, else ``offset``)."""
        return self.end if self.end >= 0 else self.offset

    @property
    def au_text(self) -> str:
        """AUs as the label sheets write them (``6+12``)."""
        return "+".join(self.aus)


@dataclass(frozen=True)
class Distractor:
    """One distractor episode (stream indices, inclusive)."""

    kind: str  # blink | sudden_move | head_turn | flicker | compression | occlusion |
    # out_of_frame | talking | scene_cut
    onset: int
    offset: int
    event: int = -1  # index in Timeline.events of the expression it is placed on (-1: none)


@dataclass
class Timeline:
    """Per-frame schedule of one video.

    Attributes:
        n_frames: frames in the video.
        fps: frame rate.
        events: the labelled expressions, by onset.
        distractors: distractor episodes, by onset.
        amp: (n_frames, len(AUS)) float32 AU amplitudes.
        pose: (n_frames, 4) float32 head pose: dx, dy (px), rotation (deg), scale.
        light: (n_frames, 2) float32 gain, bias.
        jpeg_q: (n_frames,) int16 JPEG quality of a degradation burst (0: none).
        occluder: (n_frames,) float32 occluder coverage 0..1 (0: none).
        occluder_side: (n_frames,) int8 side it comes from: 0 left, 1 right, 2 below.
        noise_sigma: sensor noise sigma, grey levels (0: off).
        jpeg_quality: quality of the written JPEG frames (casme2 format).
        cuts: frames where a scene cut starts a new scene (the renderer's scene list has
            ``len(cuts) + 1`` entries).
    """

    n_frames: int
    fps: float
    events: list[SynthEvent] = field(default_factory=list)
    distractors: list[Distractor] = field(default_factory=list)
    amp: np.ndarray | None = None
    pose: np.ndarray | None = None
    light: np.ndarray | None = None
    jpeg_q: np.ndarray | None = None
    occluder: np.ndarray | None = None
    occluder_side: np.ndarray | None = None
    noise_sigma: float = 0.0
    jpeg_quality: int = 95
    cuts: list[int] = field(default_factory=list)


def combo(emotion: str, kind: str, rng: np.random.Generator) -> tuple[str, ...]:
    combos = AU_COMBOS[kind][emotion]
    w = np.array([c[1] for c in combos])
    return combos[int(rng.choice(len(combos), p=w / w.sum()))][0]


def poisson_times(rate_per_min: float, n_frames: int, fps: float,
                   rng: np.random.Generator) -> list[int]:
    if rate_per_min <= 0:
        return []
    k = rng.poisson(rate_per_min * n_frames / fps / 60.0)
    return sorted(int(x) for x in rng.integers(0, n_frames, size=k))


def edge_ramp(n: int, width: float) -> np.ndarray:
    """(n,) weights rising linearly to 1 over ``width`` frames at both ends of an episode."""
    return np.clip(np.minimum(np.arange(n) + 1, n - np.arange(n)) / width, 0, 1)


def is_free(start: int, stop: int, events: list[SynthEvent], margin: int) -> bool:
    return all(stop + margin < e.onset or start - margin > e.offset for e in events)


def smooth_ramp(n_frames: int, start: int, n: int) -> np.ndarray:
    """(n_frames,) 0 before ``start``, smoothstep to 1 over ``n`` frames, 1 after."""
    x = np.clip((np.arange(n_frames) - start + 1) / max(n, 1), 0, 1)
    return x * x * (3 - 2 * x)
