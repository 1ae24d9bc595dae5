"""Offline inference over cached features: whole videos → candidates → MEGC ``Spot`` records.

The detector is causal with a bounded look-back (``ModelConfig.lookback`` <
window - hop), so one pass over a whole video gives, at every point, the same
output as the streaming schedule's hop that owns that point (tested in
``tests/engine/test_model_streaming.py``). Offline decoding runs soft-NMS over
the whole video at once; the streaming path (``engine.streaming`` +
``stream.interval_tracker``) decodes per hop and merges in the tracker —
:func:`streaming_spots` runs exactly that, for the agreement check.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from engine.config import ModelConfig, TrackerConfig
from engine.contracts import Event, EventCancel, EventStart, FlowFrame, Record
from engine.decode import decode_window
from engine.gain import apply_gain, video_gains
from engine.runtime import Engine
from stream.spotter import Spotter
from training.features import VideoFeatures
from stream.megc_csv import Spot


@torch.no_grad()
def encode_video(model, flow: np.ndarray, valid: np.ndarray, chunk: int = 1024,
                 gains: np.ndarray | None = None,
                 appearance: np.ndarray | None = None) -> torch.Tensor:
    """(N, 3, S, S) float16 + (N,) bool [+ (N, A) appearance] → (N, F) features with the
    model's encoder (eval); ``appearance`` is required by (and only by) a model with
    appearance fusion.

    The flow is scaled by the model's causal input gain first (``engine.gain``), as live;
    ``gains`` (N, G, G) are ``video_gains(flow, valid, model.cfg)``, computed when None and
    the model has a gain (they depend on the flow only: callers that encode a video again
    pass them).
    """
    if gains is None and model.cfg.gain_ref > 0:
        gains = video_gains(flow, valid, model.cfg)
    enc = model.encoder
    was = enc.training
    enc.eval()
    n = len(valid)
    feats = enc.no_face.detach().reshape(1, -1).repeat(n, 1)  # (F,) -> (N, F)
    app_all = (torch.from_numpy(np.asarray(_need_appearance(appearance, model.cfg, n),
                                           np.float32))
               if model.cfg.appearance_dim else None)  # (N, A)
    idx = np.flatnonzero(valid)
    for s in range(0, len(idx), chunk):
        sel = idx[s:s + chunk]
        x = np.asarray(flow[sel], np.float32) if gains is None else \
            apply_gain(flow[sel], gains[sel])  # (n, 3, S, S)
        x = torch.from_numpy(x)
        rows = torch.from_numpy(sel)
        feats[rows] = enc.embed(x, None if app_all is None else app_all[rows])
    enc.train(was)
    return feats


def _need_appearance(appearance: np.ndarray | None, cfg: ModelConfig, n: int) -> np.ndarray:
    if appearance is None or appearance.shape != (n, cfg.appearance_dim):
        got = None if appearance is None else appearance.shape
        raise ValueError(f"the model fuses appearance and needs ({n}, {cfg.appearance_dim}) "
                         f"appearance inputs, got {got}; re-extract the features "
                         "(training.features) with this code")
    return appearance


@torch.no_grad()
def detect_video(detector, feats: torch.Tensor, cfg: ModelConfig,
                 no_face: torch.Tensor) -> dict[str, np.ndarray]:
    """Detector outputs over a whole video: (N, F) features → outputs of (N' ≥ N) positions.

    ``cfg.window`` "no face" frames go in front (a fresh stream's ring) and are
    cut from the outputs again; the end is padded to a multiple of the coarsest
    stride (causality keeps the first N positions unaffected). Points keep the
    ``pyramid_points(N', levels)`` order.
    """
    was = detector.training
    detector.eval()
    n, front, top = feats.shape[0], cfg.window, cfg.max_stride
    n_pad = (-n) % top
    x = torch.cat([no_face.reshape(1, -1).expand(front, -1), feats,
                   no_face.reshape(1, -1).expand(n_pad, -1)], 0)  # -> (front + N', F)
    out = {k: v[0] for k, v in detector(x.unsqueeze(0)).items()}  # (1, ...) -> (...)
    detector.train(was)
    total = x.shape[0]
    keep = []  # per level, drop the points that sit in the front padding
    start = 0
    for level in range(cfg.levels):
        count, skip = total // 2 ** level, front // 2 ** level
        keep.append(torch.arange(start + skip, start + count))
        start += count
    idx = torch.cat(keep)
    res = {}
    for k, v in out.items():
        res[k] = (v[idx] if k in ("cls_logits", "emo_logits", "reg") else v[front:]).numpy()
    return res


def spots_from_outputs(outputs: dict[str, np.ndarray], cfg: ModelConfig, subject: str,
                       video: str, n_frames: int, score_thresh: float | None = None) -> list[Spot]:
    """Decode a whole video's outputs (one global soft-NMS) into scored Spots."""
    cands = decode_window(outputs, cfg, score_thresh=score_thresh, max_candidates=10_000)
    out = []
    for c in cands:
        if c.onset_frame >= n_frames:
            continue
        out.append(Spot(subject=subject, video=video, onset=c.onset_frame,
                        offset=min(c.offset_frame, n_frames - 1), emotion=c.emotion,
                        kind=c.kind, score=float(c.score)))
    return out


def video_outputs(model, items: Sequence[VideoFeatures],
                  feats: Sequence[torch.Tensor] | None = None,
                  gains: Sequence[np.ndarray | None] | None = None,
                  workers: int = 1) -> list[dict[str, np.ndarray]]:
    """Detector outputs of every video (features computed unless given).

    ``gains`` are the videos' ``video_gains`` when already computed. ``workers`` > 1 runs
    videos on that many threads (torch releases the GIL inside its kernels); each video's
    computation is the same as serial, so the outputs are too.
    """
    def one(i: int) -> dict[str, np.ndarray]:
        v = items[i]
        f = feats[i] if feats is not None else encode_video(
            model, v.flow, v.valid, gains=None if gains is None else gains[i],
            appearance=v.appearance)
        return detect_video(model.detector, f, model.cfg, model.encoder.no_face.detach())

    was = model.training
    model.eval()  # once for all threads: the helpers' own eval()/train(was) then change nothing
    try:
        if workers <= 1 or len(items) <= 1:
            return [one(i) for i in range(len(items))]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, range(len(items))))
    finally:
        model.train(was)


def predict(model, items: Sequence[VideoFeatures], score_thresh: float | None = None,
            outputs: Sequence[dict[str, np.ndarray]] | None = None) -> list[Spot]:
    """Offline predictions of every video as scored Spots."""
    outputs = outputs if outputs is not None else video_outputs(model, items)
    spots: list[Spot] = []
    for v, out in zip(items, outputs):
        spots += spots_from_outputs(out, model.cfg, v.subject, v.video, v.n_frames, score_thresh)
    return spots


def ground_truth(items: Sequence[VideoFeatures]) -> list[Spot]:
    """The labels of ``items`` as Spots (stream indices)."""
    return [Spot(subject=v.subject, video=v.video, onset=on, offset=off, emotion=emo, kind=kind)
            for v in items for on, off, kind, emo in v.intervals]


def conversion(provisional: dict[str, int]) -> float | None:
    """Share of ``event_start`` records that became final events, from the counts
    :func:`streaming_spots` fills (``"starts"``, ``"withdrawn"``); None without starts."""
    starts = provisional.get("starts", 0)
    return round((starts - provisional.get("withdrawn", 0)) / starts, 3) if starts else None


def streaming_spots(engine: Engine, items: Sequence[VideoFeatures],
                    tracker_cfg: TrackerConfig = TrackerConfig(),
                    provisional: dict[str, int] | None = None) -> list[Spot]:
    """Run the live schedule over cached flow frames: ``stream.spotter.Spotter`` (per-hop
    ``StreamingDetector`` + ``IntervalTracker`` + ``AppearanceHold``, last partial hop
    flushed), one face track. The cached appearance input goes in when the model fuses it
    (then it is required) or the tracker holds events on it.

    Frames with ``valid=False`` are pushed as "no face", as the spotter does for
    a known track that is out of sight. ``provisional``, when given, counts the
    ``event_start`` records (``"starts"``) and the ones withdrawn (``"withdrawn"``).
    """
    spots: list[Spot] = []
    for v in items:
        spotter = Spotter(engine, v.fps, v.flow.shape[-1], tracker_cfg)
        app = (_need_appearance(v.appearance, engine.cfg, v.n_frames)
               if spotter.appearance_dim else v.appearance if tracker_cfg.appearance_hold
               else None)
        # as the live chain: only the hold reads it, on every n-th frame (the cached reads'
        # baseline ran at every frame: its time constants are the same in seconds)
        every = 1 if spotter.appearance_dim else tracker_cfg.appearance_every
        records: list[Record] = []
        for i in range(v.n_frames):
            t = i / v.fps
            flow = FlowFrame(i, t, np.asarray(v.flow[i]), bool(v.valid[i]), 0)
            read = app is not None and i % every == 0
            records += spotter.update(i, t, t, {0: flow}, {0: app[i]} if read else None)
        records += spotter.finish()
        if provisional is not None:
            provisional["starts"] = provisional.get("starts", 0) + sum(
                isinstance(r, EventStart) for r in records)
            provisional["withdrawn"] = provisional.get("withdrawn", 0) + sum(
                isinstance(r, EventCancel) for r in records)
        spots += [Spot(subject=v.subject, video=v.video, onset=r.onset_frame,
                       offset=r.offset_frame, emotion=r.emotion, kind=r.kind, score=float(r.score))
                  for r in records if isinstance(r, Event)]
    return spots
