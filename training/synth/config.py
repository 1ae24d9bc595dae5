"""SynthConfig: every knob of the SynthME generator, one source of truth.

Rates are per minute of video; amplitudes are multiples of the calibrated AU
unit (1.0 = typical macro apex, see :mod:`training.synth.aus`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

#: Distractor switches (field names of SynthConfig), for ``--no-distractors`` and tests.
DISTRACTORS: tuple[str, ...] = ("blinks", "head_drift", "sudden_moves", "light_drift",
                                "flicker", "noise", "compression", "occlusion", "out_of_frame",
                                "talking")
#: Distractors placed on an expression and scene cuts (probabilities / rate, SynthConfig
#: fields); ``without_distractors`` sets them to 0.
OVERLAPS: tuple[str, ...] = ("talk_during_p", "turn_during_p", "occlusion_during_p",
                             "out_of_frame_during_p", "scene_cut_per_min")
#: Values of ``SynthConfig.dynamics``.
DYNAMICS: tuple[str, ...] = ("real", "v1")
#: Longest label in the phase pool of stats.json (s); ``macro_max_s`` may not exceed it.
PHASE_MAX_S: float = 30.0


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one SynthME generation run."""

    fps: float = 30.0  # frames per second of the generated videos
    width: int = 640  # frame width, pixels
    height: int = 360  # frame height, pixels
    video_s: float = 60.0  # mean video length, seconds (each video ±30 %)
    gap_scale: float = 1.0  # multiplies the real gaps between events (<1: denser events)
    micro_amp: tuple[float, float] = (0.15, 0.45)  # micro apex amplitude range (AU units)
    macro_amp: tuple[float, float] = (0.6, 1.3)  # macro apex amplitude range (AU units)
    face_width: tuple[float, float] = (100.0, 190.0)  # face width in the frame, pixels
    identity_morph: float = 0.25  # static random AU offsets per video (resting-face variety)
    identity_mix: float = 0.5  # probability a video's face is morphed with another of its split
    mix_t: tuple[float, float] = (0.25, 0.6)  # morph weight range of the second face
    # distractors: a switch each, and a rate where it is an event
    blinks: bool = True  # eye blinks with the real (CAS(ME)^3) durations and gaps
    head_drift: bool = True  # slow translation / rotation / scale drift
    drift_px: float = 6.0  # drift amplitude, pixels (rotation: drift_deg, scale: drift_scale)
    drift_deg: float = 2.0  # drift rotation amplitude, degrees
    drift_scale: float = 0.03  # drift scale amplitude (fraction)
    sudden_moves: bool = True  # quick head shifts / turns
    sudden_per_min: float = 2.0  # rate of sudden moves
    light_drift: bool = True  # slow global brightness / contrast drift
    flicker: bool = True  # brief brightness flicker bursts
    flicker_per_min: float = 1.0  # rate of flicker bursts
    noise: bool = True  # sensor noise, per video sigma drawn from noise_sigma
    noise_sigma: tuple[float, float] = (1.0, 4.0)  # sensor noise sigma range, grey levels
    blur_sigma: tuple[float, float] = (0.3, 1.2)  # photo blur sigma range (p 0.5), pixels
    compression: bool = True  # JPEG quality per video + short low-quality bursts
    compression_per_min: float = 1.0  # rate of low-quality bursts
    occlusion: bool = True  # brief partial occlusion of the face (hand-like blob)
    occlusion_per_min: float = 0.5  # rate of occlusions
    out_of_frame: bool = True  # face briefly leaves the frame
    out_of_frame_per_min: float = 0.2  # rate of out-of-frame episodes
    # off by default so the published sets' commands still give the same videos
    talking: bool = False  # speech-like mouth motion (AU25/26 at 3-6 Hz) with small nods
    talking_per_min: float = 1.5  # rate of talking episodes (1.5-6 s each)
    talking_amp: tuple[float, float] = (0.2, 0.7)  # per-syllable mouth opening (AU units)
    # head turned away from the camera (yaw), one per video: |yaw| uniform in this range,
    # degrees, random side; (0, 0) = frontal photos as they are (the default, as above)
    yaw_deg: tuple[float, float] = (0.0, 0.0)
    # expression dynamics (issue 15 item 4; README "Dynamics"). "real": rise / still hold /
    # release phases from the real labels (stats.json generator.phases) with macros up to
    # macro_max_s, plus the repeats, overlaps and cuts below; "v1": the generator before
    # that (macro 0.5-4 s, hold 0-30 % of apex->offset, none of the below), which
    # reproduces sets made with earlier versions draw for draw
    dynamics: str = "real"
    macro_max_s: float = 10.0  # longest macro-expression, s (CAS(ME)^3 macro q90 is 9.3 s)
    repeat_p: float = 0.1  # probability an expression is repeated back to back (same AUs)
    repeat_count: tuple[int, int] = (1, 4)  # further repeats of a repeated expression
    repeat_gap_s: tuple[float, float] = (0.4, 1.5)  # offset -> next onset between repeats, s
    repeat_jitter: float = 0.1  # relative change of each repeat's phases and amplitude
    talk_during_p: float = 0.1  # probability talking overlaps an expression
    turn_during_p: float = 0.1  # probability a head turn (0.3-1 s) starts during an expression
    occlusion_during_p: float = 0.05  # probability a hand passes over the face during one
    out_of_frame_during_p: float = 0.03  # probability the face leaves mid-expression (the
    # label then ends at the last frame with the face centre inside the frame, truncated=1)
    scene_cut_per_min: float = 0.2  # hard cuts to another background / position per minute
    cut_new_identity: float = 0.5  # probability a cut also switches to another identity

    def __post_init__(self) -> None:
        for name in ("fps", "width", "height", "video_s", "gap_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"SynthConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("micro_amp", "macro_amp", "face_width", "mix_t", "noise_sigma",
                     "blur_sigma", "talking_amp"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi or (name == "mix_t" and hi > 1):
                raise ValueError(f"SynthConfig.{name} must be (lo, hi) with 0 < lo <= hi, "
                                 f"got {getattr(self, name)!r}")
        lo, hi = self.yaw_deg
        if not 0 <= lo <= hi <= 60:
            raise ValueError(f"SynthConfig.yaw_deg must be (lo, hi) with 0 <= lo <= hi <= 60 "
                             f"degrees, got {self.yaw_deg!r}")
        for name in ("sudden_per_min", "flicker_per_min", "compression_per_min",
                     "occlusion_per_min", "out_of_frame_per_min", "talking_per_min",
                     "identity_morph", "identity_mix", "scene_cut_per_min", "repeat_jitter"):
            if getattr(self, name) < 0:
                raise ValueError(f"SynthConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        self._check_dynamics()

    def _check_dynamics(self) -> None:
        """The expression-dynamics fields (one-line errors naming the field)."""
        if self.dynamics not in DYNAMICS:
            raise ValueError(f"SynthConfig.dynamics must be one of {DYNAMICS}, "
                             f"got {self.dynamics!r}")
        if not 0.5 < self.macro_max_s <= PHASE_MAX_S:
            raise ValueError(f"SynthConfig.macro_max_s must be in (0.5, {PHASE_MAX_S:g}] s (the "
                             f"phase pool of stats.json ends there), got {self.macro_max_s!r}")
        for name in ("repeat_p", "talk_during_p", "turn_during_p", "occlusion_during_p",
                     "out_of_frame_during_p", "cut_new_identity"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"SynthConfig.{name} is a probability in [0, 1], "
                                 f"got {getattr(self, name)!r}")
        for name in ("repeat_count", "repeat_gap_s"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"SynthConfig.{name} must be (lo, hi) with 0 < lo <= hi, "
                                 f"got {getattr(self, name)!r}")

    def without_distractors(self) -> "SynthConfig":
        """The same config with every distractor switched off (no resting-face morph,
        identity mixing, overlaps on expressions or scene cuts either)."""
        from dataclasses import replace

        return replace(self, identity_morph=0.0, identity_mix=0.0,
                       **{k: False for k in DISTRACTORS}, **{k: 0.0 for k in OVERLAPS})


def config_fields() -> list[str]:
    """Names of the SynthConfig fields (for CLI overrides)."""
    return [f.name for f in fields(SynthConfig)]
