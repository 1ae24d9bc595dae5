"""One source of truth for every constant the pipeline and the model share.

Each field has a default and a one-line comment; YAML files (training configs)
only override. Derived values are computed here, in one place, and nowhere
else.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Sequence

#: Expression kinds the model predicts, in head-output order.
KINDS: tuple[str, ...] = ("micro", "macro")
#: The 4 MEGC analysis classes, in head-output order.
EMOTIONS: tuple[str, ...] = ("negative", "positive", "surprise", "others")
#: Micro-expressions last at most this long (the usual definition, seconds).
MICRO_MAX_S: float = 0.5
#: Appearance input of the encoder (``stream/appearance.py``): the real-face expression
#: classifier's 7 class probabilities ‖ their difference from the track's resting baseline.
APPEARANCE_CLASSES: int = 7
APPEARANCE_DIM: int = 2 * APPEARANCE_CLASSES


@dataclass(frozen=True)
class StreamConfig:
    """Settings of the streaming front half: capture, ring, face crop, flow."""

    fps: float = 30.0  # nominal frame rate when a source does not report one
    ring_capacity: int = 64  # frames held between the capture and pipeline threads
    crop_size: int = 128  # S: side of the aligned gray face crop, pixels
    flow_size: int = 64  # S': side of the flow map handed to the encoder, pixels
    flow_dt_s: float = 0.2  # Δ: time between the two crops the flow compares (k ≈ Δ·fps)
    detect_every: int = 30  # re-run full face detection at least this often, frames
    max_faces: int = 8  # faces tracked at once (--max-faces); the primary drives one-face outputs
    stop_timeout_s: float = 1.0  # capture.stop() returns within this
    face_max_side: int = 640  # MediaPipe sees the frame scaled to this longer side at most, px
    # (the resolution the model was trained on; keeps the face stage flat with resolution)
    face_landmarks: int = 468  # MediaPipe face mesh points: 468, or 478 (+ iris, ~1 ms more)
    face_confidence: float = 0.5  # MediaPipe detection / tracking confidence threshold, (0, 1)
    primary_face: str = "largest"  # which face drives single-face outputs: "largest" | "central"
    track_keep_s: float = 0.5  # a face that reappears within this keeps its track_id, seconds
    smooth_min_cutoff: float = 1.0  # one-euro filter cutoff for still landmarks, Hz
    smooth_beta: float = 0.05  # one-euro speed gain, 1/px (higher: less lag while moving)
    flow_preset: str = "medium"  # OpenCV DIS preset: "ultrafast" | "fast" | "medium"
    flow_dt_tol: float = 0.5  # reference frame accepted if |gap − Δ| ≤ tol·Δ, else valid=False

    def __post_init__(self) -> None:
        _check_positive(self, ("fps", "ring_capacity", "crop_size", "flow_size", "face_max_side",
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
    """Sizes of the FEDN network, its losses, decoding and streaming schedule.

    The defaults are the shipped model (``engine/weights/fedn_default.pt``, run v8; a test
    compares them with the checkpoint's stored config key by key); training YAMLs
    (``training/configs/``) override only what differs.

    Frame positions: pyramid level ``l`` has stride ``2**l``; its position ``j``
    sits at frame ``(j + 1) * 2**l - 1`` (the last frame it has seen), so every
    output depends on frames at or before its own frame only.
    """

    # --- streaming schedule
    window: int = 128  # frames the temporal detector sees (~4.3 s at 30 fps)
    hop: int = 8  # run the detector every `hop` frames; multiple of 2**(levels-1)
    # --- temporal detector
    segment: int = 4  # segment attention & fusion span (short, local dynamics), frames
    attn_window: int = 8  # w: causal sliding-window attention span, positions of each level
    blocks_per_level: int = 1  # transformer blocks per pyramid level
    levels: int = 4  # temporal pyramid levels (stride 2 between levels)
    channels: int = 64  # feature width of the temporal detector
    heads: int = 4  # attention heads (channels % heads == 0)
    mlp_ratio: int = 2  # hidden width of each block's MLP, × channels
    dropout: float = 0.1  # dropout in attention / MLP / heads during training
    # --- per-frame flow encoder
    feat_dim: int = 64  # per-frame feature width from the flow encoder
    enc_stem: int = 4  # first conv: stem×stem kernel, stride stem (patchify; flow is smooth)
    enc_channels: tuple[int, ...] = (8, 16, 32, 64)  # conv widths: the stem, then stride-2 3×3s
    enc_grid: int = 4  # the last conv map is average-pooled to enc_grid × enc_grid, then flattened
    # appearance fusion: 0 = flow only (the shipped model); APPEARANCE_DIM = the per-frame
    # feature also sees the real-face classifier's probabilities and their baseline delta
    appearance_dim: int = 0
    appearance_hidden: int = 32  # width of the small MLP that maps them into feat_dim
    # --- input gain (engine/gain.py): flow of faces with a high motion-noise floor is scaled
    # down to this floor before encoding; 0 switches it off (checkpoints from before it)
    gain_ref: float = 0.2  # reference noise floor, px of cell-mean |(u, v)| per Δ (0: off)
    gain_grid: int = 8  # the flow map is cut into gain_grid² cells, each with its own gain
    gain_window: int = 300  # running-median span of the floor, valid frames of the track
    gain_min_frames: int = 30  # gain stays 1 until this many valid frames were seen
    # --- targets
    range_base: int = 16  # level 0 takes intervals shorter than this (frames); each level doubles
    end_margin: int = 6  # end-anchored targets cover [offset, offset + margin] frames (≥ stride-1)
    kinds: tuple[str, ...] = KINDS  # kind classes, head-output order
    emotions: tuple[str, ...] = EMOTIONS  # emotion classes, head-output order
    # --- losses
    focal_alpha: float = 0.25  # sigmoid focal loss α (weight of positives), in [0, 1]
    focal_gamma: float = 2.0  # sigmoid focal loss γ, ≥ 0
    loss_cls: float = 1.0  # weight of the kind focal loss
    loss_reg: float = 1.0  # weight of the 1D DIoU interval loss
    loss_emo: float = 1.0  # weight of the emotion cross-entropy at positive points
    loss_act: float = 1.0  # weight of the active-head losses (BCE + emotion CE + since-L1)
    # --- decoding
    # candidates below this kind probability are dropped (also after NMS); training sweeps
    # TrainConfig.thresholds on validation and stores the best one in the checkpoint
    score_thresh: float = 0.35
    nms_sigma: float = 0.5  # Gaussian soft-NMS σ (score *= exp(-IoU²/σ))
    max_candidates: int = 32  # at most this many candidates per window after soft-NMS

    def __post_init__(self) -> None:
        for name in ("enc_channels", "kinds", "emotions"):  # YAML gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _check_positive(self, ("window", "hop", "segment", "attn_window", "blocks_per_level",
                               "levels", "channels", "feat_dim", "heads", "mlp_ratio",
                               "enc_stem", "enc_grid", "appearance_hidden", "range_base",
                               "nms_sigma", "gain_grid",
                               "gain_window", "gain_min_frames", "max_candidates"))
        for name in ("end_margin", "focal_gamma", "loss_cls", "loss_reg", "loss_emo", "loss_act",
                     "gain_ref"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"ModelConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name, lo, hi in (("dropout", 0.0, 0.999), ("focal_alpha", 0.0, 1.0),
                             ("score_thresh", 0.0, 1.0)):
            if not lo <= getattr(self, name) <= hi:
                raise ValueError(f"ModelConfig.{name} must be in [{lo}, {hi}], "
                                 f"got {getattr(self, name)!r}")
        _check_choice(self, "appearance_dim", (0, APPEARANCE_DIM))
        if self.gain_min_frames > self.gain_window:
            raise ValueError(f"ModelConfig.gain_min_frames={self.gain_min_frames} must be <= "
                             f"gain_window={self.gain_window}")
        if not self.enc_channels or min(self.enc_channels) <= 0:
            raise ValueError(f"ModelConfig.enc_channels must be non-empty positive ints, "
                             f"got {self.enc_channels!r}")
        for name in ("kinds", "emotions"):
            labels = getattr(self, name)
            if not labels or len(set(labels)) != len(labels):
                raise ValueError(f"ModelConfig.{name} must be non-empty and unique, got {labels!r}")
        if self.channels % self.heads:
            raise ValueError(f"ModelConfig.channels={self.channels} must be divisible by "
                             f"heads={self.heads}")
        top = self.max_stride
        if self.window % top:
            raise ValueError(f"ModelConfig.window={self.window} must be divisible by "
                             f"2**(levels-1)={top}")
        if self.hop % top or self.hop > self.window:
            raise ValueError(f"ModelConfig.hop={self.hop} must be a multiple of 2**(levels-1)="
                             f"{top} (so every hop ends on a point of every pyramid level) "
                             f"and <= window={self.window}")
        need = max(lb + (1 if lvl else 0) for lvl, lb in enumerate(self.lookback))
        if need > self.window - self.hop:
            raise ValueError(
                f"ModelConfig: the detector looks back {need} frames but window - hop = "
                f"{self.window - self.hop}; the last hop would not see its full context. "
                f"Lower attn_window / segment / levels / blocks_per_level or raise window")

    @property
    def max_stride(self) -> int:
        """Stride of the coarsest pyramid level, frames."""
        return 2 ** (self.levels - 1)

    @property
    def lookback(self) -> tuple[int, ...]:
        """Per level, how many frames before its own frame an output can depend on.

        An output of level ``l`` at frame ``f`` depends on frames ``f - lookback[l] .. f``.
        Segment fusion adds 2·(segment-1) (attention then causal mean); each block
        adds (attn_window-1)·stride; each causal stride-2 downsample adds the
        finer level's stride.
        """
        out, lb = [], 2 * (self.segment - 1)
        for level in range(self.levels):
            stride = 2 ** level
            if level:
                lb += stride // 2
            lb += self.blocks_per_level * (self.attn_window - 1) * stride
            out.append(lb)
        return tuple(out)

    @property
    def level_ranges(self) -> tuple[tuple[float, float], ...]:
        """Per level, the [lo, hi) interval durations (frames) it is assigned."""
        bounds = [0.0] + [float(self.range_base * 2 ** i) for i in range(self.levels - 1)]
        return tuple(zip(bounds, bounds[1:] + [float("inf")]))

    def level_margin(self, level: int) -> int:
        """End-anchor margin at ``level``: at least one point of that level falls in it."""
        return max(self.end_margin, 2 ** level - 1)


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


#: Values of ``TrackerConfig.onset``.
TRACKER_ONSETS: tuple[str, ...] = ("earliest", "active")


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds of the online interval tracker (``stream.interval_tracker``)."""

    merge_iou: float = 0.3  # same-kind candidates of successive hops with tIoU ≥ this are one event
    cross_kind_iou: float = 0.5  # different-kind candidates with tIoU ≥ this are duplicates
    on_thresh: float = 0.6  # active-head probability that starts a provisional event
    on_frames: int = 3  # ... when held this many consecutive frames (hysteresis)
    off_thresh: float = 0.4  # probability below which a provisional event may end
    off_frames: int = 4  # ... when it stays below for this many consecutive frames
    # the active head firing again with an onset at most this many frames after the last
    # provisional event ended continues that event (a held expression dips, then its release
    # fires): no second event_start, no withdrawal of the first
    rejoin_frames: int = 4
    # a provisional event the active head held at >= on_thresh for at least this many frames
    # is emitted from the active head when no end-anchored candidate confirms it, instead of
    # withdrawn (a real expression held longer than the interval heads learned to see whole);
    # 0: off, every unconfirmed provisional that fits the window is withdrawn. 48 was picked
    # on validation (python -m training.tracker_sweep, val ∪ val_r, streaming overall F1):
    # shipped weights 0.816 → 0.827, run v11 0.889 → 0.911; the real clips are unchanged
    hold_frames: int = 48
    # onset of a final event that confirms a provisional one of the same kind: "earliest" of
    # the candidate's and the provisional's; "active": the provisional's (the active head saw
    # the start as it happened; a regressed onset can reach back over a pause into the
    # expression before)
    onset: str = "earliest"
    # a final event's onset that lies inside an earlier final event it outlasts moves to where
    # the active head saw this one start, if that is after the earlier one, else to the frame
    # after the earlier one's offset (stream.interval_tracker's _after_previous)
    onset_after_previous: bool = True
    # a final event longer than MICRO_MAX_S is "macro" whatever the kind head said (MEGC's
    # micro-expressions last at most 0.5 s); False: the kind head decides alone
    kind_from_duration: bool = False
    # appearance hold (stream/appearance_hold.py): a final macro event whose frames the
    # appearance stage read as its emotion (mean baseline delta of the emotion's classes over
    # the event >= appearance_on above the median of the appearance_rest_frames before it)
    # stays open while the face still shows it after the event's offset (at least
    # appearance_release of the way from that rest level to the event's mean), and ends after
    # appearance_gap_frames frames in a row below that (a laugh held for 8 s is one event, not
    # its first second); False: events end where the detector ends them. Needs the chain's
    # appearance stage (run whenever this is on). Picked on validation (training.tracker_sweep,
    # val ∪ val_r rendered 2026-12-01 fifth session, shipped weights): streaming F1 0.731 off
    # → 0.769 on, the same for on 0.2–0.3 and release 0.3–0.5; a 12-frame gap keeps one more
    # provisional event than 6 (conversion 0.745 → 0.759)
    appearance_hold: bool = True
    appearance_on: float = 0.3
    appearance_release: float = 0.4
    appearance_gap_frames: int = 12
    appearance_rest_frames: int = 60
    # the chain's appearance stage reads every n-th frame when only the hold needs it (a
    # flow-only model; its 12-frame gap spans three reads); a model that fuses it reads every
    # frame. Demo clip through the pipeline, median of 4 alternated runs: hold off 143 fps,
    # every frame 126, every 2nd 130, every 4th 140; val F1 and the real clips the same for 1–4
    appearance_every: int = 4
    # appearance check (stream/appearance_hold.py): a final macro event of an emotion in
    # stream.appearance_hold.CHECKED_EMOTIONS (positive: fer's happy is its surest class) is
    # withdrawn when the face had room to show it (the emotion's fer probability at rest, the
    # median over the appearance_rest_frames before the onset, <= appearance_room) and its
    # mean baseline delta over the event rose less than appearance_check above the rest
    # level: the detector saw motion that the face does not read as that emotion (talking).
    # Part of the hold's stage: off with appearance_hold; 0: off. Measured at 0.05 (shipped
    # weights, 2026-12-01 sixth session): real clips 2 → 1 false events (carphone's talking
    # man, a macro "positive" fer reads −0.02 happy), none of the 14 matched lost; val ∪ val_r
    # streaming F1 0.769 → 0.765 (one false and one short true smile withdrawn; 0.03–0.1 the
    # same, 0.15: 0.752); the test sets, test_long and neg_talk unchanged
    appearance_check: float = 0.05
    appearance_room: float = 0.8
    # continuations (stream/continuations.py): a final event of the kind and emotion of one
    # already emitted that begins inside it (micro: or within rejoin_frames of its offset) is
    # that expression found again; it is not emitted (its event_start, if sent, is withdrawn).
    # Measured (shipped weights, 2026-12-02 seventh session): val ∪ val_r streaming F1
    # 0.765 → 0.788, test union 0.698 → 0.702, test_long and neg_talk unchanged; real clips
    # 1 → 0 false events (carphone's wide-eyed open mouth: onset and release, one expression)
    join_continuations: bool = True

    def __post_init__(self) -> None:
        _check_positive(self, ("on_frames", "off_frames", "appearance_gap_frames",
                               "appearance_rest_frames", "appearance_every"))
        _check_choice(self, "onset", TRACKER_ONSETS)
        for name in ("rejoin_frames", "hold_frames", "appearance_check"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrackerConfig.{name} must be >= 0, got "
                                 f"{getattr(self, name)!r}")
        for name in ("merge_iou", "cross_kind_iou", "on_thresh", "off_thresh", "appearance_on",
                     "appearance_release", "appearance_room"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"TrackerConfig.{name} must be in (0, 1], got "
                                 f"{getattr(self, name)!r}")
        if self.off_thresh > self.on_thresh:
            raise ValueError(f"TrackerConfig.off_thresh={self.off_thresh} must be <= "
                             f"on_thresh={self.on_thresh} (hysteresis)")


def parse_grid(items: Sequence[str], option: str = "--grid") -> dict[str, list]:
    """``["hold_frames=0,24", "on_thresh=0.5"]`` → {"hold_frames": [0, 24], "on_thresh": [0.5]}:
    :class:`TrackerConfig` field values (a sweep's grid, or one value each for
    :func:`tracker_settings`), each converted to the field's type; a one-line ValueError
    (naming ``option``) on an unknown field or a value of the wrong type."""
    defaults = TrackerConfig()
    types = {f.name: type(getattr(defaults, f.name)) for f in fields(defaults)}
    grid: dict[str, list] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or name not in types or not values:
            raise ValueError(f"{option} {item!r}: expected FIELD=VALUE[,VALUE...] with FIELD "
                             f"one of {sorted(types)}")
        try:
            grid[name] = [_value(types[name], v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"{option} {item!r}: {name} takes {types[name].__name__} "
                             "values") from None
    return grid


def _value(kind: type, text: str):
    """``text`` as a value of type ``kind`` (bool: true/false, 1/0)."""
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    return kind(text)


def tracker_settings(items: Sequence[str], option: str = "--tracker") -> TrackerConfig:
    """``["onset=active", "appearance_hold=false"]`` → that TrackerConfig (one value per
    field, the others default); a one-line ValueError naming ``option`` otherwise."""
    grid = parse_grid(items, option=option)
    several = [name for name, values in grid.items() if len(values) != 1]
    if several:
        raise ValueError(f"{option} takes one value per field, got several for {several}")
    return TrackerConfig(**{name: values[0] for name, values in grid.items()})
