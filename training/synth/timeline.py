"""What happens when in one synthetic video: expression events and distractors.

A :class:`Timeline` is sampled once per video from the real statistics
(``stats.json`` ``generator`` block) and a seeded ``numpy`` Generator; the
renderer only reads its per-frame arrays. Frame numbers here are stream
indices (0-based). The records are in :mod:`training.synth.episodes`; the
expression dynamics (real phases, repeats, distractors on expressions, scene
cuts) in :mod:`training.synth.dynamics`.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from engine.config import EMOTIONS, KINDS, MICRO_MAX_S

from .aus import AUS, BLINK_AU
from .config import SynthConfig
from .dynamics import (SPEECH_AUS, STREAM_REPEATS, overlaps, real_events, sample_cuts,
                       speech)
from .episodes import (AU_COLUMN, AU_COMBOS, Distractor, SynthEvent, Timeline, combo,
                       edge_ramp, is_free, poisson_times, smooth_ramp)
from .stats import QGRID

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

    def phases(self, kind: str, macro_max_s: float) -> tuple[float, float]:
        """(duration s, apex fraction) from ``generator.phases``: the duration truncated to
        the kind's range (micro <= MICRO_MAX_S, macro <= ``macro_max_s``), the apex
        fraction drawn from the quantiles of the duration's bin."""
        ph = self.gen["phases"][kind]
        q = np.asarray(ph["duration_q"], float)
        hi = MICRO_MAX_S if kind == "micro" else macro_max_s
        u_hi = float(np.interp(hi, q, QGRID)) if hi < q[-1] else 1.0
        d = float(np.interp(self.rng.random() * u_hi, QGRID, q))
        bins = [b for b in ph["bins"] if b["apex_fraction_q"]]
        b = next((b for b in bins if d < b["hi"]), bins[-1])
        return d, float(np.interp(self.rng.random(), QGRID, b["apex_fraction_q"]))


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


def sample_events(n_frames: int, cfg: SynthConfig, sampler: Sampler,
                  rng: np.random.Generator, seed: int = 0,
                  cuts: tuple[int, ...] | list[int] = ()) -> list[SynthEvent]:
    """Non-overlapping expression events with real durations, apex fractions and gaps.

    ``cfg.dynamics == "real"``: rise / hold / release phases (:func:`_real_events`), back
    to back repeats drawn from the ``seed`` child stream, events clear of ``cuts``;
    ``"v1"``: the earlier generator (holds are drawn later, in :func:`build_timeline`).
    """
    if cfg.dynamics == "real":
        return real_events(n_frames, cfg, sampler, rng,
                           np.random.default_rng([seed, STREAM_REPEATS]), list(cuts))
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
                              aus=combo(emotion, kind, rng),
                              amplitude=round(float(rng.uniform(lo, hi)), 3)))
        gap = max(sampler.gap_s() * cfg.gap_scale, min_gap / fps)
        t = (offset + 1) / fps + gap
    return out


def build_timeline(n_frames: int, cfg: SynthConfig, gen: dict, seed: int,
                   face_x: np.ndarray | float | None = None) -> Timeline:
    """Sample the whole schedule of one video, deterministic in ``seed``.

    Args:
        face_x: x of the face centre in the frame per frame ((n_frames,) or one value,
            pixels, before head pose; default the frame centre). Only a label truncated
            by the face leaving the frame (``out_of_frame_during_p``) depends on it:
            :func:`training.synth.generate.make_video_scenes` passes the scenes' centres.
    """
    if n_frames < 10:
        raise ValueError(f"n_frames must be >= 10, got {n_frames}")
    rng = np.random.default_rng(seed)
    sampler = Sampler(gen, rng)
    fps = cfg.fps
    tl = Timeline(n_frames=n_frames, fps=fps)
    tl.cuts = sample_cuts(n_frames, cfg, seed)
    tl.events = sample_events(n_frames, cfg, sampler, rng, seed, tl.cuts)
    amp = np.zeros((n_frames, len(AUS)), np.float32)
    for k, e in enumerate(tl.events):
        n = e.offset - e.onset + 1
        if cfg.dynamics == "v1":
            e = tl.events[k] = replace(e, hold=int(rng.uniform(0.0, 0.3) * (e.offset - e.apex)))
        prof = _profile(n, e.apex - e.onset, e.hold) * e.amplitude
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
        for on in poisson_times(cfg.sudden_per_min, n_frames, fps, rng):
            n = int(rng.integers(3, 9))
            step = np.array([rng.uniform(-30, 30), rng.uniform(-15, 15), rng.uniform(-7, 7),
                             rng.uniform(-0.08, 0.08)])
            ramp = smooth_ramp(n_frames, on, n)
            back = rng.random() < 0.6
            if back:
                ret = on + n + int(rng.uniform(0.5, 4.0) * fps)
                ramp = ramp - smooth_ramp(n_frames, ret, n)
            pose += ramp[:, None] * step
            dis.append(Distractor("sudden_move", on, min(on + n - 1, n_frames - 1)))
            if back and ret < n_frames:
                dis.append(Distractor("sudden_move", ret, min(ret + n - 1, n_frames - 1)))
    if cfg.out_of_frame:
        for on in poisson_times(cfg.out_of_frame_per_min, n_frames, fps, rng):
            n_move, hold = int(rng.integers(5, 12)), int(rng.uniform(0.5, 2.0) * fps)
            stop = on + 2 * n_move + hold
            if stop >= n_frames or not is_free(on, stop, tl.events, int(fps)):
                continue
            side = rng.choice([-1.0, 1.0])
            shift = side * (cfg.width * 0.5 + 220)
            pose[:, 0] += shift * (smooth_ramp(n_frames, on, n_move)
                                   - smooth_ramp(n_frames, on + n_move + hold, n_move))
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
        for on in poisson_times(cfg.flicker_per_min, n_frames, fps, rng):
            n = min(int(rng.uniform(0.2, 1.0) * fps), n_frames - on)
            light[on:on + n, 0] *= 1 + rng.uniform(-0.15, 0.15, n)
            dis.append(Distractor("flicker", on, on + n - 1))
    tl.light = light.astype(np.float32)
    tl.jpeg_q = np.zeros(n_frames, np.int16)
    if cfg.compression:
        tl.jpeg_quality = int(rng.integers(70, 96))
        for on in poisson_times(cfg.compression_per_min, n_frames, fps, rng):
            n = min(int(rng.uniform(0.3, 2.0) * fps), n_frames - on)
            tl.jpeg_q[on:on + n] = int(rng.integers(8, 30))
            dis.append(Distractor("compression", on, on + n - 1))
    tl.occluder = np.zeros(n_frames, np.float32)
    tl.occluder_side = np.zeros(n_frames, np.int8)
    if cfg.occlusion:
        for on in poisson_times(cfg.occlusion_per_min, n_frames, fps, rng):
            n = int(rng.uniform(0.3, 1.5) * fps)
            if on + n >= n_frames or not is_free(on, on + n, tl.events, int(0.3 * fps)):
                continue
            cover = float(rng.uniform(0.25, 0.6))
            ramp = edge_ramp(n, 4.0)
            tl.occluder[on:on + n] = cover * ramp
            tl.occluder_side[on:on + n] = int(rng.integers(0, 3))
            dis.append(Distractor("occlusion", on, on + n - 1))
    tl.noise_sigma = float(rng.uniform(*cfg.noise_sigma)) if cfg.noise else 0.0
    if cfg.talking:  # drawn last: switching it on leaves every earlier draw unchanged
        dis += _talking(tl, cfg, rng)
    if cfg.dynamics == "real":  # own streams: switching one on changes nothing above
        fx = np.broadcast_to(np.asarray(cfg.width / 2 if face_x is None else face_x,
                                        np.float64), (n_frames,))
        dis += overlaps(tl, cfg, seed, fx, dis)
        dis += [Distractor("scene_cut", c, c) for c in tl.cuts]
    tl.distractors = sorted(dis, key=lambda d: d.onset)
    return tl


def _talking(tl: Timeline, cfg: SynthConfig, rng: np.random.Generator) -> list[Distractor]:
    """Speech-like mouth motion: syllables at 3-6 Hz for 1.5-6 s, with small nods.

    Adds to ``tl.amp`` and ``tl.pose`` in place; episodes keep 0.5 s clear of every
    labelled expression (speech is not an expression, and a label must stay pure).
    """
    fps, n_frames, out = tl.fps, tl.n_frames, []
    for on in poisson_times(cfg.talking_per_min, n_frames, fps, rng):
        n = int(rng.uniform(1.5, 6.0) * fps)
        if on + n >= n_frames or not is_free(on, on + n, tl.events, int(0.5 * fps)):
            continue
        speech(tl, on, n, cfg, rng)
        out.append(Distractor("talking", on, on + n - 1))
    return out


__all__ = ["AU_COLUMN", "AU_COMBOS", "Distractor", "SPEECH_AUS", "Sampler", "SynthEvent",
           "Timeline", "build_timeline", "sample_cuts", "sample_events", "KINDS"]
