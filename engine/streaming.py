"""Backend-agnostic streaming schedule: encode each frame once, detect every ``hop`` frames.

Two ways to detect, same outputs at the positions a hop is responsible for (its
last ``hop`` frames):

* **incremental** (the live path, when the engine has it): the hop's ``hop``
  new features and the detector state carried from the previous hop
  (``Engine.detect_step``, :mod:`engine.model.incremental`) — the cost of a
  hop follows ``hop``, not ``window``. :func:`detect_due` runs the hops of
  several streams (face tracks) that fall due on the same frame as one batched
  step call; each stream gets what it gets alone;
* **full window** (engines without it, e.g. TensorRT): the last ``window``
  features every hop (``Engine.detect``). The feature cache is then a
  *mirrored* ring: each feature is written at ``i`` and ``i + window`` of a
  ``(2·window, F)`` array, so the last ``window`` features are always one
  contiguous slice — no copy, no allocation per frame or per hop.

Window positions are counted in frames *pushed* (a live source may drop frames
before they get here); a parallel ring of stream indices maps positions back to
stream frame indices, so candidates carry the indices the tracker and the user
see. A plain-torch reference loop in the tests (``tests/engine/streaming_reference.py``)
holds it to the same candidates.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import numpy as np

from engine.config import ModelConfig
from engine.contracts import ActiveFrames, Candidate, FlowFrame
from engine.decode import decode_active, decode_window
from engine.gain import FlowGain


class EngineLike(Protocol):
    """What the schedule needs from ``engine.runtime.Engine``.

    The incremental path also uses ``can_step`` (bool), ``initial_state()`` and
    ``detect_step(features_hop, state) -> (outputs, state)`` where the engine
    has them, and batches streams where ``step_batch`` is true; an engine
    without ``can_step`` gets the full-window path.
    """

    cfg: ModelConfig  # the loaded model's window, hop, labels and decode settings

    def encode(self, flow_batch: np.ndarray, valid: np.ndarray,
               appearance: np.ndarray | None = None) -> np.ndarray: ...

    def detect(self, features_window: np.ndarray) -> dict[str, np.ndarray]: ...

    def padding(self, n: int) -> np.ndarray: ...


@dataclass(frozen=True)
class HopResult:
    """What one detector call produced.

    Attributes:
        frame: stream index of the last frame of the window (the hop's "now").
        candidates: decoded intervals of the points this hop is responsible for
            (its last ``hop`` frames), stream indices.
        active: active-head readout of those same positions, stream indices.
        detect_ms: detector call + decode time (a call shared by B streams counts
            1/B of it for each).
    """

    frame: int
    candidates: list[Candidate]
    active: ActiveFrames
    detect_ms: float


class StreamingDetector:
    """Feeds an engine one flow frame at a time.

    Args:
        engine: encoder / detector calls (any backend).
        cfg: window, hop and decode settings of the loaded model.
        incremental: detect with the engine's incremental detector (carried state)
            instead of the full window; default: whenever the engine has one
            (``engine.can_step``). True on an engine without one is a ValueError.
    """

    def __init__(self, engine: EngineLike, cfg: ModelConfig,
                 incremental: bool | None = None) -> None:
        self.engine, self.cfg = engine, cfg
        w = cfg.window
        can_step = bool(getattr(engine, "can_step", False))
        if incremental and not can_step:
            raise ValueError("StreamingDetector: incremental=True but the engine has no "
                             "incremental detector (Engine.can_step is False)")
        self.incremental = can_step if incremental is None else bool(incremental)
        self._no_face = np.asarray(engine.padding(1), np.float32)[0]  # (F,): "no face"
        if self.incremental:
            self._feats = np.empty((cfg.hop, self._no_face.shape[0]), np.float32)  # this hop's
            self._state = engine.initial_state()  # (1, rows, C): a fresh stream
        else:
            self._feats = np.repeat(self._no_face[None], 2 * w, axis=0)  # (2W, F) mirrored ring
        self._frames = np.zeros(2 * w, np.int64)  # stream index of each position (mirrored)
        self.pushed = 0  # frames pushed so far
        self._due = False  # a hop is complete and not yet detected
        self.gain = FlowGain(cfg)  # this track's input gain (engine/gain.py)

    def prepare(self, flow: FlowFrame) -> np.ndarray:
        """This track's input gain applied to one frame's flow: (3, S, S) float32 for the encoder.

        Call it once per frame (the gain keeps a running floor), then pass the encoder's
        output for it to :meth:`update` — so a caller can encode the faces of a frame in
        one batch.
        """
        return self.gain.apply(flow.flow, flow.valid)

    def update(self, flow: FlowFrame, feature: np.ndarray | None = None) -> HopResult | None:
        """One frame; every ``hop``-th frame also detect and decode.

        Args:
            flow: the frame's flow map of this track.
            feature: its (F,) encoder output when the caller encoded it (from
                :meth:`prepare`, e.g. batched with other faces); None: encoded here.
        """
        if not self.push(flow, feature):
            return None
        return self._detect(self.cfg.hop)

    def push(self, flow: FlowFrame, feature: np.ndarray | None = None) -> bool:
        """One frame into the schedule without detecting; True when its hop is now due.

        A due hop is detected (:func:`detect_due`, or :meth:`update`, which does both)
        before the next push. Arguments as :meth:`update`.
        """
        if self._due:
            raise RuntimeError("StreamingDetector.push: the previous hop is still due; "
                               "detect it (detect_due) before pushing the next frame")
        if feature is None:
            if getattr(self.cfg, "appearance_dim", 0):
                raise ValueError("StreamingDetector.update: a model with appearance fusion "
                                 "needs the frame's feature (encode flow + appearance, as "
                                 "stream.spotter.Spotter does)")
            x = self.prepare(flow)[None]  # (3, S, S) -> (1, 3, S, S)
            feature = self.engine.encode(x, np.array([float(flow.valid)], np.float32))[0]
        self._write(feature, flow.index)
        self._due = self.pushed % self.cfg.hop == 0
        return self._due

    def finish(self) -> HopResult | None:
        """End of stream: complete the last partial hop with "no face" frames and detect.

        Only the real frames' positions are decoded (the padding lies in their
        future, so their outputs are exact). None when the stream ended on a hop.
        """
        if self._due:
            raise RuntimeError("StreamingDetector.finish: the last hop is still due; detect "
                               "it (detect_due) first")
        n_real = self.pushed % self.cfg.hop
        if n_real == 0 or self.pushed == 0:
            return None
        last = int(self._frames[(self.pushed - 1) % self.cfg.window])
        for k in range(1, self.cfg.hop - n_real + 1):
            self._write(self._no_face, last + k)
        return self._detect(n_real, last_frame=last)

    def _write(self, feat: np.ndarray, index: int) -> None:
        w = self.cfg.window
        slot = self.pushed % w
        if self.incremental:
            self._feats[self.pushed % self.cfg.hop] = feat
        else:
            self._feats[slot] = self._feats[slot + w] = feat
        self._frames[slot] = self._frames[slot + w] = index
        self.pushed += 1

    def _detect(self, n_real: int, last_frame: int | None = None) -> HopResult:
        t1 = time.perf_counter()
        if self.incremental:
            outputs, self._state = self.engine.detect_step(self._feats, self._state)
        else:
            start = self.pushed % self.cfg.window  # oldest position of the mirrored ring
            outputs = self.engine.detect(self._feats[start:start + self.cfg.window])
        return self._result(outputs, n_real, last_frame, t1)

    def _result(self, outputs: dict[str, np.ndarray], n_real: int, last_frame: int | None,
                t1: float, shared_ms: float = 0.0) -> HopResult:
        """Decode one hop's detector ``outputs`` (batch 1) into stream indices."""
        w, hop = self.cfg.window, self.cfg.hop
        self._due = False
        if self.incremental:  # outputs of the hop's frames only; positions from the hop start
            base, responsible = self.pushed - hop, (0, n_real)
        else:  # the (W, F) window: virtual position of slot 0 (negative at start)
            base, responsible = self.pushed - w, (w - hop, w - hop + n_real)
        candidates = decode_window(outputs, self.cfg, frame_offset=base,
                                   frame_range=responsible)
        active = decode_active(outputs, self.cfg, frame_offset=base, frame_range=responsible)
        frame = int(self._frames[(self.pushed - 1) % w]) if last_frame is None else last_frame
        return HopResult(
            frame=frame,
            candidates=[replace(c, onset_frame=self.to_frame(c.onset_frame),
                                offset_frame=min(self.to_frame(c.offset_frame), frame),
                                anchor_frame=self.to_frame(c.anchor_frame))
                        for c in candidates],
            active=replace(active, frames=np.array([self.to_frame(p) for p in active.frames],
                                                   np.int64)),
            detect_ms=(time.perf_counter() - t1) * 1e3 + shared_ms)

    def to_frame(self, position: int) -> int:
        """Stream index of virtual position ``position``.

        Positions still in the ring map exactly (drops included); positions
        before the ring (a long expression's onset) or after it are extrapolated
        at one frame per position, and never before frame 0.
        """
        if self.pushed == 0:
            raise ValueError("to_frame: nothing pushed yet")
        w = self.cfg.window
        lo, hi = max(self.pushed - w, 0), self.pushed - 1
        nearest = min(max(int(position), lo), hi)
        return max(0, int(self._frames[nearest % w]) + int(position) - nearest)


def detect_due(detectors: Sequence[StreamingDetector]) -> list[HopResult]:
    """Detect the due hop of each of ``detectors`` (each just pushed to the end of a hop).

    Streams on one engine with a batched step (``engine.step_batch``) run as one
    ``detect_step`` call over the stack of their hops and states; the others
    (full-window engines, a mix of engines) one call each. Each stream's result
    is what :meth:`StreamingDetector.update` gives it alone.

    Returns:
        one :class:`HopResult` per detector, in order.
    """
    if not all(d._due for d in detectors):
        raise ValueError("detect_due: every detector must have a hop due (push returned True)")
    if not detectors:
        return []
    engine = detectors[0].engine
    batched = len(detectors) > 1 and bool(getattr(engine, "step_batch", False)) and all(
        d.engine is engine and d.incremental for d in detectors)
    if not batched:
        return [d._detect(d.cfg.hop) for d in detectors]
    t0 = time.perf_counter()
    feats = np.stack([d._feats for d in detectors])  # B × (hop, F) -> (B, hop, F)
    states = np.concatenate([d._state for d in detectors])  # B × (1, rows, C) -> (B, rows, C)
    outputs, states = engine.detect_step(feats, states)
    shared_ms = (time.perf_counter() - t0) * 1e3 / len(detectors)
    results = []
    for b, d in enumerate(detectors):
        d._state = states[b:b + 1]  # (1, rows, C), a view of this call's output
        results.append(d._result({k: v[b:b + 1] for k, v in outputs.items()}, d.cfg.hop, None,
                                 time.perf_counter(), shared_ms))
    return results
