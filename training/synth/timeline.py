"""What happens when in one synthetic video: expression events and distractors.

A :class:`Timeline` is sampled once per video from the real statistics
(``stats.json`` ``generator`` block) and a seeded ``numpy`` Generator; the
renderer only reads its per-frame arrays. Frame numbers here are stream
indices (0-based).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.config import EMOTIONS, KINDS

from .aus import AUS, BLINK_AU
from .config import SynthConfig
from .stats import QGRID

#: AU combinations per emotion (FACS prototypes) and their weights, per kind.
AU_COMBOS: dict[str, dict[str, list[tuple[tuple[str, ...], float]]]] = {
    "macro": {
        "positive": [(("6", "12"), 0.5), (("6", "12", "25"), 0.35), (("12",), 0.15)],
        "negative": [(("4", "7"), 0.25), (("9", "10"), 0.2), (("15", "17"), 0.2), (("4",), 0.15),
                     (("10",), 0.1), (("4", "15"), 0.1)],
        "surprise": [(("1", "2"), 0.35), (("1", "2", "5"), 0.3), (("1", "2", "5", "26"), 0.25),
                     (("25", "26"), 0.1)],
        "others": [(("14",), 0.3), (("4",), 0.2), (("7",), 0.2), (("17",), 0.15),
                   (("14", "17"), 0.15)],
    },
}
AU_COMBOS["micro"] = {**AU_COMBOS["macro"],
                      "positive": [(("12",), 0.5), (("6", "12"), 0.5)]}
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

    @property
    def au_text(self) -> str:
        """AUs as the label sheets write them (``6+12``)."""
        return "+".join(self.aus)


@dataclass(frozen=True)
class Distractor:
    """One distractor episode (stream indices, inclusive)."""

    kind: str  # blink | sudden_move | flicker | compression | occlusion | out_of_frame | talking
    onset: int
    offset: int


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


class Sampler:
    """Draws timing from the ``generator`` block of stats.json (inverse-CDF on quantiles)."""

    def __init__(self, gen: dict, rng: np.random.Generator):
        self.gen, self.rng = gen, rng

    def _q(self, dist: dict) -> float:
        return float(np.interp(self.rng.random(), QGRID, dist["q"]))

    def kind(self) -> str:
        return "micro" if self.rng.random() < self.gen["p_micro"] else "macro"

    def duration_s(self, kind: str) -> float:
        return self._q(self.gen["duration_s"][kind])

    def apex_fraction(self, kind: str) -> float:
        return self._q(self.gen["apex_fraction"][kind])

    def emotion(self, kind: str) -> str:
        mix = self.gen["emotions"][kind]
        p = np.array([mix[e] for e in EMOTIONS], float)
        return EMOTIONS[int(self.rng.choice(len(EMOTIONS), p=p / p.sum()))]

    def gap_s(self) -> float:
        return self._q(self.gen["gaps_s"])

    def lead_in_s(self) -> float:
        return self._q(self.gen["lead_in_s"])

    def blink_duration_s(self) -> float:
        return self._q(self.gen["blink_duration_s"])

    def blink_gap_s(self) -> float:
        return self._q(self.gen["blink_gaps_s"])


def _profile(n: int, peak: int, hold: int, close_frac: float | None = None) -> np.ndarray:
    """(n,) amplitude 0 -> 1 at ``peak`` (smoothstep), held ``hold`` frames, -> 0 at n-1."""
    t = np.arange(n, dtype=np.float64)
    if close_frac is not None:
        peak = int(round(close_frac * (n - 1)))
    rise = np.clip(t / max(peak, 1), 0, 1) if peak > 0 else np.ones(n)
    fall_start = min(peak + hold, n - 1)
    fall = np.clip((n - 1 - t) / max(n - 1 - fall_start, 1), 0, 1)
    x = np.where(t <= peak, rise, np.where(t <= fall_start, 1.0, fall))
    y = x * x * (3 - 2 * x)
    y[0] = 0.0
    y[-1] = 0.0
    return y.astype(np.float32)


def _combo(emotion: str, kind: str, rng: np.random.Generator) -> tuple[str, ...]:
    combos = AU_COMBOS[kind][emotion]
    w = np.array([c[1] for c in combos])
    return combos[int(rng.choice(len(combos), p=w / w.sum()))][0]


def sample_events(n_frames: int, cfg: SynthConfig, sampler: Sampler,
                  rng: np.random.Generator) -> list[SynthEvent]:
    """Non-overlapping expression events with real durations, apex fractions and gaps."""
    fps, out = cfg.fps, []
    t = sampler.lead_in_s() * cfg.gap_scale
    min_gap = int(np.ceil(sampler.gen["min_gap_s"] * fps))
    while True:
        kind = sampler.kind()
        n = max(3, int(round(sampler.duration_s(kind) * fps)))
        if kind == "micro":
            n = min(n, max(3, int(np.floor(0.5 * fps + 1e-9))))
        onset = int(round(t * fps))
        if onset < 1:
            onset = 1
        offset = onset + n - 1
        if offset >= n_frames - 2:
            break
        apex = onset + int(round(sampler.apex_fraction(kind) * (n - 1)))
        apex = int(np.clip(apex, onset + 1, offset - 1))
        emotion = sampler.emotion(kind)
        lo, hi = cfg.micro_amp if kind == "micro" else cfg.macro_amp
        out.append(SynthEvent(onset=onset, apex=apex, offset=offset, kind=kind, emotion=emotion,
                              aus=_combo(emotion, kind, rng),
                              amplitude=round(float(rng.uniform(lo, hi)), 3)))
        gap = max(sampler.gap_s() * cfg.gap_scale, min_gap / fps)
        t = (offset + 1) / fps + gap
    return out


def _poisson_times(rate_per_min: float, n_frames: int, fps: float,
                   rng: np.random.Generator) -> list[int]:
    if rate_per_min <= 0:
        return []
    k = rng.poisson(rate_per_min * n_frames / fps / 60.0)
    return sorted(int(x) for x in rng.integers(0, n_frames, size=k))


def _edge_ramp(n: int, width: float) -> np.ndarray:
    """(n,) weights rising linearly to 1 over ``width`` frames at both ends of an episode."""
    return np.clip(np.minimum(np.arange(n) + 1, n - np.arange(n)) / width, 0, 1)


def _free(start: int, stop: int, events: list[SynthEvent], margin: int) -> bool:
    return all(stop + margin < e.onset or start - margin > e.offset for e in events)


def build_timeline(n_frames: int, cfg: SynthConfig, gen: dict, seed: int) -> Timeline:
    """Sample the whole schedule of one video, deterministic in ``seed``."""
    if n_frames < 10:
        raise ValueError(f"n_frames must be >= 10, got {n_frames}")
    rng = np.random.default_rng(seed)
    sampler = Sampler(gen, rng)
    fps = cfg.fps
    tl = Timeline(n_frames=n_frames, fps=fps)
    tl.events = sample_events(n_frames, cfg, sampler, rng)
    amp = np.zeros((n_frames, len(AUS)), np.float32)
    for e in tl.events:
        n = e.offset - e.onset + 1
        hold = int(rng.uniform(0.0, 0.3) * (e.offset - e.apex))
        prof = _profile(n, e.apex - e.onset, hold) * e.amplitude
        for au in e.aus:
            amp[e.onset:e.offset + 1, AU_COLUMN[au]] += prof
    dis: list[Distractor] = []
    if cfg.blinks:
        t = sampler.blink_gap_s() * rng.random()
        while True:
            n = max(3, int(round(sampler.blink_duration_s() * fps)))
            n = min(n, int(fps))  # labelled "blinks" of several seconds are eye closures
            on = int(round(t * fps))
            if on + n >= n_frames:
                break
            depth = float(rng.uniform(0.7, 1.0))
            amp[on:on + n, AU_COLUMN[BLINK_AU]] = np.maximum(
                amp[on:on + n, AU_COLUMN[BLINK_AU]], _profile(n, 0, 0, close_frac=0.35) * depth)
            dis.append(Distractor("blink", on, on + n - 1))
            t = (on + n) / fps + max(sampler.blink_gap_s(), 0.3)
    tl.amp = amp
    # head pose: drift (sum of sinusoids) + sudden moves + out-of-frame episodes
    tt = np.arange(n_frames) / fps
    pose = np.zeros((n_frames, 4), np.float64)
    pose[:, 3] = 1.0
    if cfg.head_drift:
        for ch, scale in enumerate((cfg.drift_px, cfg.drift_px, cfg.drift_deg, cfg.drift_scale)):
            for _ in range(3):
                period = rng.uniform(4.0, 25.0)
                pose[:, ch] += scale / 2 * rng.uniform(0.3, 1.0) * np.sin(
                    2 * np.pi * tt / period + rng.uniform(0, 2 * np.pi))
    if cfg.sudden_moves:
        for on in _poisson_times(cfg.sudden_per_min, n_frames, fps, rng):
            n = int(rng.integers(3, 9))
            step = np.array([rng.uniform(-30, 30), rng.uniform(-15, 15), rng.uniform(-7, 7),
                             rng.uniform(-0.08, 0.08)])
            ramp = _ramp(n_frames, on, n)
            back = rng.random() < 0.6
            if back:
                ret = on + n + int(rng.uniform(0.5, 4.0) * fps)
                ramp = ramp - _ramp(n_frames, ret, n)
            pose += ramp[:, None] * step
            dis.append(Distractor("sudden_move", on, min(on + n - 1, n_frames - 1)))
            if back and ret < n_frames:
                dis.append(Distractor("sudden_move", ret, min(ret + n - 1, n_frames - 1)))
    if cfg.out_of_frame:
        for on in _poisson_times(cfg.out_of_frame_per_min, n_frames, fps, rng):
            n_move, hold = int(rng.integers(5, 12)), int(rng.uniform(0.5, 2.0) * fps)
            stop = on + 2 * n_move + hold
            if stop >= n_frames or not _free(on, stop, tl.events, int(fps)):
                continue
            side = rng.choice([-1.0, 1.0])
            shift = side * (cfg.width * 0.5 + 220)
            pose[:, 0] += shift * (_ramp(n_frames, on, n_move) - _ramp(n_frames, on + n_move + hold,
                                                                       n_move))
            dis.append(Distractor("out_of_frame", on, stop - 1))
    tl.pose = pose.astype(np.float32)
    # lighting
    light = np.zeros((n_frames, 2), np.float64)
    light[:, 0] = 1.0
    if cfg.light_drift:
        for ch, scale in ((0, 0.12), (1, 10.0)):
            period = rng.uniform(10.0, 60.0)
            light[:, ch] += scale * rng.uniform(0.3, 1.0) * np.sin(
                2 * np.pi * tt / period + rng.uniform(0, 2 * np.pi))
    if cfg.flicker:
        for on in _poisson_times(cfg.flicker_per_min, n_frames, fps, rng):
            n = min(int(rng.uniform(0.2, 1.0) * fps), n_frames - on)
            light[on:on + n, 0] *= 1 + rng.uniform(-0.15, 0.15, n)
            dis.append(Distractor("flicker", on, on + n - 1))
    tl.light = light.astype(np.float32)
    tl.jpeg_q = np.zeros(n_frames, np.int16)
    if cfg.compression:
        tl.jpeg_quality = int(rng.integers(70, 96))
        for on in _poisson_times(cfg.compression_per_min, n_frames, fps, rng):
            n = min(int(rng.uniform(0.3, 2.0) * fps), n_frames - on)
            tl.jpeg_q[on:on + n] = int(rng.integers(8, 30))
            dis.append(Distractor("compression", on, on + n - 1))
    tl.occluder = np.zeros(n_frames, np.float32)
    tl.occluder_side = np.zeros(n_frames, np.int8)
    if cfg.occlusion:
        for on in _poisson_times(cfg.occlusion_per_min, n_frames, fps, rng):
            n = int(rng.uniform(0.3, 1.5) * fps)
            if on + n >= n_frames or not _free(on, on + n, tl.events, int(0.3 * fps)):
                continue
            cover = float(rng.uniform(0.25, 0.6))
            ramp = _edge_ramp(n, 4.0)
            tl.occluder[on:on + n] = cover * ramp
            tl.occluder_side[on:on + n] = int(rng.integers(0, 3))
            dis.append(Distractor("occlusion", on, on + n - 1))
    tl.noise_sigma = float(rng.uniform(*cfg.noise_sigma)) if cfg.noise else 0.0
    if cfg.talking:  # drawn last: switching it on leaves every earlier draw unchanged
        dis += _talking(tl, cfg, rng)
    tl.distractors = sorted(dis, key=lambda d: d.onset)
    return tl


#: AUs a speaking mouth moves (lips part, jaw drop, upper lip, chin) and their share of a
#: syllable's opening; AU26 + AU25 dominate, as in visual speech.
SPEECH_AUS: tuple[tuple[str, float], ...] = (("26", 1.0), ("25", 0.7), ("10", 0.15), ("17", 0.2))


def _talking(tl: Timeline, cfg: SynthConfig, rng: np.random.Generator) -> list[Distractor]:
    """Speech-like mouth motion: syllables at 3-6 Hz for 1.5-6 s, with small nods.

    Adds to ``tl.amp`` and ``tl.pose`` in place; episodes keep 0.5 s clear of every
    labelled expression (speech is not an expression, and a label must stay pure).
    """
    fps, n_frames, out = tl.fps, tl.n_frames, []
    for on in _poisson_times(cfg.talking_per_min, n_frames, fps, rng):
        n = int(rng.uniform(1.5, 6.0) * fps)
        if on + n >= n_frames or not _free(on, on + n, tl.events, int(0.5 * fps)):
            continue
        t = np.arange(n) / fps
        rate = rng.uniform(3.0, 6.0)  # syllables per second
        phase = 2 * np.pi * rate * t + 0.6 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t)
        syllable = np.floor(phase / (2 * np.pi)).astype(int)
        size = rng.uniform(*cfg.talking_amp, syllable.max() + 1)[syllable]  # per-syllable
        opening = (0.5 - 0.5 * np.cos(phase)) * size
        fade = _edge_ramp(n, 0.15 * fps)
        opening = (opening * fade).astype(np.float32)
        for au, share in SPEECH_AUS:
            tl.amp[on:on + n, AU_COLUMN[au]] += share * opening
        nod = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t) * fade
        tl.pose[on:on + n, 1] += nod.astype(np.float32)  # vertical nod, pixels
        out.append(Distractor("talking", on, on + n - 1))
    return out


def _ramp(n_frames: int, start: int, n: int) -> np.ndarray:
    """(n_frames,) 0 before ``start``, smoothstep to 1 over ``n`` frames, 1 after."""
    x = np.clip((np.arange(n_frames) - start + 1) / max(n, 1), 0, 1)
    return x * x * (3 - 2 * x)


__all__ = ["AU_COMBOS", "Distractor", "Sampler", "SynthEvent", "Timeline", "build_timeline",
           "sample_events", "KINDS"]
