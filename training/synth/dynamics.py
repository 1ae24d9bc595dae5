"""Expression dynamics of a SynthME video (issue 15 item 4; README "Dynamics").

* Phases: rise / still hold / release from the real labels (``generator.phases``
  of stats.json; :func:`place_event`), macros up to ``SynthConfig.macro_max_s``.
* Back to back repeats of one expression (``repeat_*``), each its own label.
* Distractors placed on an expression (``*_during_p``): talking, a head turn, a
  hand passing over the face, the face leaving the frame (the label is then
  truncated at the last frame the face centre is inside the frame).
* Scene cuts (``scene_cut_per_min``): the frames where the renderer switches to
  a new scene; expressions keep clear of them.

Each extra draws from its own child stream of the video seed, so switching one
on leaves the other draws of the video unchanged.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from engine.config import MICRO_MAX_S

from .config import SynthConfig
from .episodes import (AU_COLUMN, Distractor, SynthEvent, Timeline, combo, edge_ramp,
                       poisson_times, smooth_ramp)

if TYPE_CHECKING:
    from .timeline import Sampler

#: Seconds every expression keeps clear of a scene cut.
CUT_MARGIN_S: float = 0.5
#: Seconds an overlap episode keeps clear of the neighbouring expressions (it overlaps one).
OVERLAP_MARGIN_S: float = 0.3
#: Child seed streams (``default_rng([seed, k])``) of the dynamics extras, so switching one
#: on leaves every other draw of the video unchanged.
STREAM_CUTS, STREAM_REPEATS, STREAM_OVERLAPS = 11, 12, 13


def place_event(onset: int, n: int, frac: float, release_ratio: float) -> tuple[int, int, int]:
    """(apex, hold, offset) of an ``n``-frame expression from ``onset``: rise = ``frac`` of
    it, release = ``release_ratio`` x rise (at most the rest), the rest a still hold."""
    n = max(n, 3)
    rise = int(np.clip(round(frac * (n - 1)), 1, n - 2))
    fall = n - 1 - rise
    release = int(np.clip(round(rise * release_ratio), 1, fall))
    return onset + rise, fall - release, onset + n - 1


def _n_frames(d: float, kind: str, fps: float, macro_max_s: float) -> int:
    """Frames of a ``d``-second expression, kept inside its kind's range."""
    n = max(3, int(round(d * fps)))
    if kind == "micro":
        return min(n, max(3, int(np.floor(MICRO_MAX_S * fps + 1e-9))))
    return int(np.clip(n, int(np.ceil(MICRO_MAX_S * fps)), max(3, int(macro_max_s * fps))))


def real_events(n_frames: int, cfg: SynthConfig, sampler: Sampler, rng: np.random.Generator,
                rep_rng: np.random.Generator, cuts: list[int]) -> list[SynthEvent]:
    """Events with real phases; some repeated back to back (same kind, emotion, AUs)."""
    fps, out = cfg.fps, []
    ratio = float(sampler.gen["phases"]["release_ratio"])
    min_gap = int(np.ceil(sampler.gen["min_gap_s"] * fps))
    margin = int(np.ceil(CUT_MARGIN_S * fps))
    t = sampler.lead_in_s() * cfg.gap_scale

    def blocked(onset: int, offset: int) -> int | None:
        """The first cut too close to [onset, offset], or None."""
        return next((c for c in cuts if onset - margin <= c <= offset + margin), None)

    while True:
        kind = sampler.kind()
        d, frac = sampler.phases(kind, cfg.macro_max_s)
        emotion = sampler.emotion(kind)
        aus = combo(emotion, kind, rng)
        lo, hi = cfg.micro_amp if kind == "micro" else cfg.macro_amp
        amp = float(rng.uniform(lo, hi))
        runs = 1
        if rep_rng.random() < cfg.repeat_p:
            runs += int(rep_rng.integers(cfg.repeat_count[0], cfg.repeat_count[1] + 1))
        onset = max(1, int(round(t * fps)))
        n = _n_frames(d, kind, fps, cfg.macro_max_s)
        if onset + n - 1 >= n_frames - 2:
            break
        cut = blocked(onset, onset + n - 1)
        if cut is not None:  # start again after the cut
            t = (cut + margin + 1) / fps
            continue
        for r in range(runs):
            if r:  # a repeat: same expression, phases and amplitude a little changed
                jit = 1 + cfg.repeat_jitter * rep_rng.uniform(-1, 1, 2)
                n = _n_frames(d * jit[0], kind, fps, cfg.macro_max_s)
                amp_r = float(np.clip(amp * jit[1], lo, hi))
                onset = out[-1].offset + 1 + max(min_gap, int(round(
                    rep_rng.uniform(*cfg.repeat_gap_s) * fps)))
                if onset + n - 1 >= n_frames - 2 or blocked(onset, onset + n - 1) is not None:
                    break
            else:
                amp_r = amp
            apex, hold, offset = place_event(onset, n, frac, ratio)
            out.append(SynthEvent(onset=onset, apex=apex, offset=offset, kind=kind,
                                  emotion=emotion, aus=aus, amplitude=round(amp_r, 3),
                                  hold=hold))
        gap = max(sampler.gap_s() * cfg.gap_scale, min_gap / fps)
        t = (out[-1].offset + 1) / fps + gap
    return out


def sample_cuts(n_frames: int, cfg: SynthConfig, seed: int) -> list[int]:
    """Frames of the scene cuts of a video (Poisson, ``scene_cut_per_min``; at least 2 s
    apart and 1 s from either end), from their own child stream of ``seed``."""
    if cfg.dynamics != "real" or cfg.scene_cut_per_min <= 0:
        return []
    rng = np.random.default_rng([seed, STREAM_CUTS])
    fps, out = cfg.fps, []
    for c in poisson_times(cfg.scene_cut_per_min, n_frames, fps, rng):
        if fps <= c < n_frames - fps and (not out or c - out[-1] >= 2 * fps):
            out.append(c)
    return out


#: AUs a speaking mouth moves (lips part, jaw drop, upper lip, chin) and their share of a
#: syllable's opening; AU26 + AU25 dominate, as in visual speech.
SPEECH_AUS: tuple[tuple[str, float], ...] = (("26", 1.0), ("25", 0.7), ("10", 0.15), ("17", 0.2))


def speech(tl: Timeline, on: int, n: int, cfg: SynthConfig, rng: np.random.Generator) -> None:
    """Add ``n`` frames of syllables (3-6 Hz) and a small nod from frame ``on``, in place."""
    fps = tl.fps
    t = np.arange(n) / fps
    rate = rng.uniform(3.0, 6.0)  # syllables per second
    phase = 2 * np.pi * rate * t + 0.6 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t)
    syllable = np.floor(phase / (2 * np.pi)).astype(int)
    size = rng.uniform(*cfg.talking_amp, syllable.max() + 1)[syllable]  # per-syllable
    opening = (0.5 - 0.5 * np.cos(phase)) * size
    fade = edge_ramp(n, 0.15 * fps)
    opening = (opening * fade).astype(np.float32)
    for au, share in SPEECH_AUS:
        tl.amp[on:on + n, AU_COLUMN[au]] += share * opening
    nod = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t) * fade
    tl.pose[on:on + n, 1] += nod.astype(np.float32)  # vertical nod, pixels


def overlaps(tl: Timeline, cfg: SynthConfig, seed: int, face_x: np.ndarray,
             earlier: list[Distractor]) -> list[Distractor]:
    """Distractors placed on expressions: talking, a head turn, a hand passing over the
    face, the face leaving the frame (the label is then truncated). Each episode overlaps
    one expression and keeps OVERLAP_MARGIN_S clear of its neighbours; in place on ``tl``.
    Each kind draws from its own child stream of ``seed`` (one uniform per event, then its
    sizes), so changing one probability leaves the others' draws as they were.
    """
    fps, n_frames, out = tl.fps, tl.n_frames, []
    margin = int(np.ceil(OVERLAP_MARGIN_S * fps))
    talk, turn, occ, leave = (np.random.default_rng([seed, STREAM_OVERLAPS, j])
                              for j in range(4))
    for k, e in enumerate(list(tl.events)):
        lo = tl.events[k - 1].last + margin + 1 if k else 0
        hi = tl.events[k + 1].onset - margin - 1 if k + 1 < len(tl.events) else n_frames - 1
        if talk.random() < cfg.talk_during_p:
            n = int(talk.uniform(1.5, 6.0) * fps)
            on = max(lo, int(talk.uniform(e.onset - 0.5 * n, e.apex)))
            n = min(n, hi - on + 1)
            if n >= int(0.5 * fps) and on <= e.apex and on + n - 1 >= e.onset:
                speech(tl, on, n, cfg, talk)
                out.append(Distractor("talking", on, on + n - 1, event=k))
        if turn.random() < cfg.turn_during_p:
            out += _turn(tl, e, k, hi, turn)
        if occ.random() < cfg.occlusion_during_p:
            n = int(occ.uniform(0.4, 1.2) * fps)
            on = max(lo, int(occ.uniform(e.onset - 0.5 * n, e.offset - 0.5 * n)))
            n = min(n, hi - on + 1)
            if n >= 4 and on <= e.offset and on + n - 1 >= e.onset \
                    and not tl.occluder[on:on + n].any():
                bump = np.sin(np.pi * (np.arange(n) + 1) / (n + 1))  # slides in, then out
                tl.occluder[on:on + n] = float(occ.uniform(0.3, 0.7)) * bump
                tl.occluder_side[on:on + n] = int(occ.integers(0, 3))
                out.append(Distractor("occlusion", on, on + n - 1, event=k))
        if leave.random() < cfg.out_of_frame_during_p:
            out += _leave(tl, cfg, k, hi, leave, face_x, earlier + out)
    return out


def _turn(tl: Timeline, e: SynthEvent, k: int, hi: int,
          rng: np.random.Generator) -> list[Distractor]:
    """A head turn (0.3-1 s shift + in-plane rotation + scale) starting inside ``e``; it
    turns back (p 0.6) after 0.5-3 s if that happens before frame ``hi``."""
    fps = tl.fps
    on = int(rng.integers(e.onset, e.offset))
    m = max(3, min(int(rng.uniform(0.3, 1.0) * fps), hi - on + 1))
    sign = rng.choice([-1.0, 1.0], 4)
    step = sign * np.array([rng.uniform(8, 30), rng.uniform(4, 15), rng.uniform(3, 9),
                            rng.uniform(0.02, 0.08)])
    ramp = smooth_ramp(tl.n_frames, on, m)
    ret = on + m + int(rng.uniform(0.5, 3.0) * fps)
    back = rng.random() < 0.6 and ret + m <= hi
    if back:
        ramp = ramp - smooth_ramp(tl.n_frames, ret, m)
    tl.pose += (ramp[:, None] * step).astype(np.float32)
    out = [Distractor("head_turn", on, min(on + m - 1, tl.n_frames - 1), event=k)]
    if back:
        out.append(Distractor("head_turn", ret, ret + m - 1,
                              event=k if ret <= e.offset else -1))
    return out


def _leave(tl: Timeline, cfg: SynthConfig, k: int, hi: int, rng: np.random.Generator,
           face_x: np.ndarray, others: list[Distractor]) -> list[Distractor]:
    """The face slides out of the frame after the apex of event ``k`` and comes back
    once the expression is over; the label ends at the last frame whose face centre
    (``face_x`` + head pose) is inside the frame, marked ``truncated``."""
    fps, e = tl.fps, tl.events[k]
    first = e.apex + 1 if e.kind == "micro" else max(e.apex + 1,
                                                     e.onset + int(np.ceil(MICRO_MAX_S * fps)))
    if first >= e.offset - 1:
        return []
    on = int(rng.integers(first, max(first + 1, e.offset - max(2, (e.offset - first) // 3))))
    n_move = int(rng.integers(5, 12))
    hold = max(int(rng.uniform(0.5, 2.0) * fps), e.offset + int(OVERLAP_MARGIN_S * fps)
               - (on + n_move))
    stop = on + 2 * n_move + hold
    if stop > hi or any(d.kind in ("out_of_frame", "occlusion") and d.onset <= stop
                        and d.offset >= on for d in others):
        return []
    shift = rng.choice([-1.0, 1.0]) * (cfg.width * 0.5 + 220)
    move = shift * (smooth_ramp(tl.n_frames, on, n_move)
                    - smooth_ramp(tl.n_frames, on + n_move + hold, n_move))
    tl.pose[:, 0] += move.astype(np.float32)
    x = face_x[on:e.offset + 1] + tl.pose[on:e.offset + 1, 0]
    gone = np.flatnonzero((x < 0) | (x > cfg.width - 1))
    if gone.size:
        tl.events[k] = replace(e, offset=max(on + int(gone[0]) - 1, e.apex + 1), end=e.offset,
                               truncated=True)
    return [Distractor("out_of_frame", on, stop - 1, event=k)]
