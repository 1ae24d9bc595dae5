"""The one stage chain (design §1) and the one run loop every entry point uses.

:class:`StageChain` runs, per frame of one stream: face tracker → flow stage →
(per face track) input gain · ``Engine.encode`` → ``Engine.detect`` every hop →
decode → interval tracker. It is synchronous and thread-free; what differs
between entry points is only what feeds it and where its records go:

* ``run_live.py`` / :class:`stream.pipeline.Pipeline`: a capture thread, a ring and
  a face thread (:meth:`StageChain.track` one frame ahead) around :func:`run_frames`;
* :class:`stream.api.Detector`, ``stream.analyze``, ``stream.batch``: :func:`run_frames`
  over :func:`stamped` frames of a source, in the calling thread;
* the front ends: one chain per browser session / WebRTC peer, fed frame by frame;
* training's feature extraction and the GPU check: :func:`primary_face_features` /
  :func:`primary_face_flows`, a chain without an engine (face → flow [→ appearance])
  reading :attr:`StageChain.flows` and :attr:`StageChain.appearances`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
from tqdm import tqdm

from engine.config import StreamConfig, TrackerConfig
from engine.contracts import FaceObs, FlowFrame, Frame, Record, Status, Summary
from engine.runtime import Engine
from stream.appearance import AppearanceConfig, AppearanceFrame, AppearanceStage
from stream.events import Sink
from stream.face import FaceTracker, FaceUpdate, min_face_px
from stream.flow import FlowStage
from stream.latency import LatencyStats
from stream.sources import FrameSource, VideoFileSource
from stream.spotter import FrameScores, Spotter


@dataclass(frozen=True)
class Tracked:
    """A frame after the face stage: what the rest of the chain needs.

    Attributes:
        frame: the frame (its image is no longer needed).
        faces: what the face tracker saw (faces primary first, track starts / ends).
        records: the face stage's status records (face_found / face_lost / no_face).
    """

    frame: Frame
    faces: FaceUpdate
    records: tuple[Record, ...] = ()
    crops: np.ndarray | None = None  # (n, S, S) uint8 appearance crops of faces.faces, or None


class StageChain:
    """Face tracking, flow and spotting for one stream.

    Args:
        engine: a loaded engine (shared, not closed here); None runs face → flow only
            (training features): then no event is produced and the summary says so.
        fps: the source's frame rate.
        cfg: stream settings.
        tracker_cfg: interval-tracker thresholds.
        latency: per-stage timings go here (``face``, ``flow``, ``encoder``, ...).
        appearance: run the appearance stage (``stream/appearance.py``) on every face;
            None (default): when the engine's model fuses appearance
            (``ModelConfig.appearance_dim``), which then reads it next to the flow, or
            the tracker holds events on it (``TrackerConfig.appearance_hold``,
            ``stream/appearance_hold.py``).

    Attributes:
        faces: the faces of the last frame (primary first), for overlays.
        flows: flow frame of each visible track in the last frame.
        appearances: appearance reading of each visible track in the last frame (empty
            when the stage is off).
        primary: the primary face of the last frame (``found=False`` when none).
        scores: track id → latest active-head readout (:class:`FrameScores`).
        frames_with_face: frames in which any face was visible.
    """

    def __init__(self, engine: Engine | None, fps: float, cfg: StreamConfig = StreamConfig(),
                 tracker_cfg: TrackerConfig = TrackerConfig(),
                 latency: LatencyStats | None = None, appearance: bool | None = None) -> None:
        if not fps > 0:
            raise ValueError(f"StageChain: fps must be > 0, got {fps!r}")
        self.cfg, self.engine = cfg, engine
        self.latency = latency or LatencyStats()
        self.face = FaceTracker(cfg)
        self.flow = FlowStage(cfg)
        fuses = engine is not None and getattr(engine.cfg, "appearance_dim", 0) > 0
        if appearance is False and fuses:
            raise ValueError("StageChain: appearance=False, but the engine's model fuses "
                             "appearance (ModelConfig.appearance_dim > 0); leave it on")
        self.appearance: AppearanceStage | None = None
        holds = engine is not None and tracker_cfg.appearance_hold and appearance is not False
        # only the hold reads it: every n-th frame is enough (its gap spans several reads);
        # the baseline's time constants are per read, so the stage runs at fps / n
        self._appearance_every = (tracker_cfg.appearance_every
                                  if holds and not fuses and not appearance else 1)
        if appearance or fuses or holds:
            self.appearance = AppearanceStage(
                AppearanceConfig(fps=fps / self._appearance_every))
        self.appearances: dict[int, AppearanceFrame] = {}
        # a face out of sight longer than the face tracker keeps its id has left
        leave_after = int(math.ceil(cfg.track_keep_s * fps)) + 1
        self.spotter = (Spotter(engine, fps, cfg.flow_size, tracker_cfg, latency=self.latency,
                                leave_after=leave_after)
                        if engine is not None else None)
        self.faces: tuple[FaceObs, ...] = ()
        self.primary: FaceObs = FaceObs(False)
        self.flows: dict[int, FlowFrame] = {}
        self.frames_with_face = 0
        self._first = True

    @property
    def engine_name(self) -> str:
        return self.engine.name if self.engine is not None else "none"

    @property
    def missing_stages(self) -> tuple[str, ...]:
        """Stages this chain does not run (no engine: no events)."""
        return ("engine",) if self.engine is None else ()

    @property
    def event_counts(self) -> dict[str, int]:
        """What the events came to so far (:attr:`stream.spotter.Spotter.event_counts`;
        empty without an engine)."""
        return self.spotter.event_counts if self.spotter is not None else {}

    @property
    def scores(self) -> dict[int, FrameScores]:
        return self.spotter.scores if self.spotter is not None else {}

    def update(self, item: Frame | Tracked) -> list[Record]:
        """Run every stage on one frame; returns the records it produced.

        ``item`` is a frame, or a frame whose face stage already ran (:meth:`track`,
        e.g. on the face thread of :class:`stream.ahead.FaceAhead`).
        """
        tracked = item if isinstance(item, Tracked) else self.track(item)
        frame, seen = tracked.frame, tracked.faces
        records = list(tracked.records)
        self.faces, self.primary = seen.faces, seen.primary
        if seen.found:
            self.frames_with_face += 1
            with self.latency.time("flow"):
                self.flows = {face.track_id: self.flow.update(face, frame.index, frame.t_capture)
                              for face in seen.faces}
        else:  # no flow call for a frame without faces (it would only build a zero map)
            self.flows = {}
        self.appearances = {}
        if self._reads_appearance(frame, seen):
            crops = tracked.crops if tracked.crops is not None else self._crops(frame, seen)
            with self.latency.time("appearance"):
                read = self.appearance.update_crops([f.track_id for f in seen.faces], crops,
                                                    frame.index)
            self.appearances = {a.track_id: a for a in read}
        if self.spotter is not None:
            app = ({i: a.model_input() for i, a in self.appearances.items()}
                   if self.appearance is not None else None)
            records += self.spotter.update(frame.index, frame.t_capture, frame.t_arrival,
                                           self.flows, app)
        return records

    def _reads_appearance(self, frame: Frame, seen: FaceUpdate) -> bool:
        """Whether the appearance stage reads this frame's faces."""
        return (self.appearance is not None and seen.found
                and frame.index % self._appearance_every == 0)

    def _crops(self, frame: Frame, seen: FaceUpdate) -> np.ndarray:
        """(n, S, S) uint8 appearance crops of the frame's faces (while its image exists)."""
        return self.appearance.crops(seen.faces, frame.image)

    def track(self, frame: Frame) -> Tracked:
        """The face stage alone (and its status records); the rest runs in :meth:`update`.

        Called from one thread at a time, in frame order. The frame's image is not used
        after it (the flow stage reads the aligned crops), so a ring may reuse its slot.
        """
        records: list[Record] = []
        with self.latency.time("face"):
            seen = self.face.update(frame)
        t_s = round(frame.t_capture, 3)
        # One face_found / face_lost per track: a second face entering or leaving says so.
        records += [Status("face_lost", frame.index, {"t_s": t_s, "track_id": i})
                    for i in seen.ended]
        records += [Status("face_found", frame.index, {"t_s": t_s, "track_id": i})
                    for i in seen.started]
        if self._first and not seen.found:  # a stream that starts without a face says so
            h, w = frame.image.shape[:2]
            records.append(Status("no_face", frame.index,
                                  {"t_s": t_s, "min_face_px": min_face_px(w, h)}))
        self._first = False
        # the appearance crops are cut here: the frame image may be reused after this call
        crops = self._crops(frame, seen) if self._reads_appearance(frame, seen) else None
        return Tracked(frame, seen, tuple(records), crops)

    def finish(self) -> list[Record]:
        """End of stream: what the trackers still hold (truncated expressions included)."""
        return self.spotter.finish() if self.spotter is not None else []

    def close(self) -> None:
        self.face.close()

    def __enter__(self) -> "StageChain":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stamped(source: FrameSource) -> Iterator[Frame]:
    """Frames of an open source, each stamped with its arrival time (no capture thread)."""
    while (frame := source.read()) is not None:
        yield Frame(frame.index, frame.t_capture, frame.image, time.monotonic())


def source_hooks(source: FrameSource) -> dict[str, Callable]:
    """The ``source_statuses`` / ``frames_promised`` arguments of :func:`run_frames` for a
    source (sources without them, e.g. a WebRTC track, give neither)."""
    hooks: dict[str, Callable] = {}
    if callable(getattr(source, "take_statuses", None)):
        hooks["source_statuses"] = source.take_statuses
    if hasattr(source, "frames_promised"):
        hooks["frames_promised"] = lambda: source.frames_promised
    return hooks


def run_frames(frames: Iterable[Frame | Tracked], chain: StageChain, sink: Sink, *, source: str,
               policy: str, on_frame: Callable[[Frame], None] | None = None,
               on_end: Callable[[], None] | None = None,
               frames_read: Callable[[], int] | None = None,
               frames_dropped: Callable[[], int] = lambda: 0,
               source_statuses: Callable[[], list[Status]] | None = None,
               frames_promised: Callable[[], int | None] | None = None) -> Summary:
    """The run loop: every frame through the chain, then finish, ``source_ended``, summary.

    Gaps in frame indices are reported as ``dropped`` statuses, except the frames
    the source itself said it lost (``source_short``). The source's statuses
    (``source_statuses``, e.g. :meth:`FrameSource.take_statuses`) are written when
    the stream reaches the frame they refer to, the rest before ``source_ended``.
    Ctrl-C stops the loop cleanly: ``interrupted``, then the chain is finished
    and the summary written as usual. A source that fails mid-stream (``frames``
    raises) is said as ``source_short`` (``reason: error``); the chain is finished
    and the summary written, then its error is raised again.

    Args:
        frames: the stream's frames, in order (or frames whose face stage ran already,
            :class:`Tracked`).
        chain: the stage chain of this stream.
        sink: receives every record, the summary last.
        source: what was read (for the summary).
        policy: back-pressure policy that fed ``frames`` (for the summary).
        on_frame: called after each frame (progress bars, status lines).
        on_end: called once the loop is over, before the summary counts are read
            (e.g. to stop a capture thread).
        frames_read: frames the source produced (default: frames processed).
        frames_dropped: frames dropped before the chain.
        source_statuses: takes the statuses the source said since the last call.
        frames_promised: frames the source promised (``None``: unknown).

    Returns:
        The summary (also sent to ``sink``).
    """
    start = time.perf_counter()
    processed, last = 0, -1
    pending: list[Status] = []  # source statuses about frames not reached yet

    def said_up_to(index: float) -> int:
        """Write the source's statuses up to frame ``index``; frames they say were lost."""
        if source_statuses is not None:
            pending.extend(source_statuses())
        due = [s for s in pending if s.frame <= index]
        pending[:] = [s for s in pending if s.frame > index]
        for status in due:
            sink(status)
        return sum(int(s.detail.get("count", 0)) for s in due
                   if s.status == "source_short" and s.frame > last)

    failure: Exception | None = None  # the source's, raised again once the summary is out
    items = iter(frames)
    try:
        while True:
            try:
                item = next(items)
            except StopIteration:
                break
            except Exception as exc:  # noqa: BLE001 - the source broke mid-stream
                failure = exc
                sink(Status("source_short", last + 1,
                            {"reason": "error", "error": f"{type(exc).__name__}: {exc}"}))
                break
            frame = item.frame if isinstance(item, Tracked) else item
            lost = said_up_to(frame.index)
            if frame.index - last - 1 > lost:  # sources count from 0
                sink(Status("dropped", frame.index, {"count": frame.index - last - 1 - lost}))
            last = frame.index
            for record in chain.update(item):
                sink(record)
            processed += 1
            if on_frame is not None:
                on_frame(frame)
    except KeyboardInterrupt:  # Ctrl-C on a live run: stop, flush, summarize
        sink(Status("interrupted", last + 1))
    for record in chain.finish():
        sink(record)
    wall = time.perf_counter() - start
    if on_end is not None:
        on_end()
    said_up_to(float("inf"))
    sink(Status("source_ended", last + 1))
    summary = Summary(source, chain.engine_name, policy,
                      frames_promised=frames_promised() if frames_promised is not None else None,
                      frames_read=frames_read() if frames_read is not None else processed,
                      frames_processed=processed, frames_dropped=frames_dropped(),
                      frames_with_face=chain.frames_with_face,
                      fps=round(processed / wall, 2) if wall > 0 else 0.0, wall_s=round(wall, 3),
                      missing_stages=chain.missing_stages, latency_ms=chain.latency.summary(),
                      events=chain.event_counts)
    sink(summary)
    if failure is not None:
        raise failure
    return summary


@dataclass(frozen=True)
class PrimaryFace:
    """What the chain saw of a video file's primary face, per frame (training's inputs).

    Attributes:
        flow: (N, 3, S', S') float16 flow maps (zeros where ``valid`` is False).
        valid: (N,) bool, False where no face / no reference crop yet / undecodable.
        fps: the file's frame rate.
        appearance: (N, APPEARANCE_DIM) float32 appearance input of the primary face
            (``AppearanceFrame.model_input``; zeros where no face), or None when not asked.
    """

    flow: np.ndarray
    valid: np.ndarray
    fps: float
    appearance: np.ndarray | None = None


def primary_face_features(path: str | Path, cfg: StreamConfig | None = None,
                          progress: bool = False, appearance: bool = True) -> PrimaryFace:
    """The chain without an engine (face → flow [→ appearance]) over a video file, read at
    its **primary face**: what training learns from (``training.features``).

    The track of each frame is its primary face (``cfg.primary_face``, the largest by
    default, the face the chain lists first): a SynthME or dataset video shows one
    subject, and a frame without a face gives ``valid=False`` (the model sees "no face",
    as live for a track out of sight). Frames the file promised but that do not decode
    (``source_short``) are rows with ``valid=False`` too, so row ``i`` stays frame ``i``
    of the labels. The appearance baseline is per face track, as live.
    """
    from engine.config import APPEARANCE_DIM

    cfg = cfg or StreamConfig()
    n = cfg.flow_size
    no_flow = np.zeros((3, n, n), np.float16)
    no_app = np.zeros(APPEARANCE_DIM, np.float32)
    flows: list[np.ndarray] = []
    valid: list[bool] = []
    apps: list[np.ndarray] = []
    with VideoFileSource(path) as src, \
            StageChain(None, src.fps, cfg, appearance=appearance) as chain, \
            tqdm(total=src.frame_count, desc=Path(path).name, unit="f", leave=False,
                 disable=not progress) as bar:
        for frame in stamped(src):
            while len(flows) < frame.index:  # an undecodable frame: no face seen there
                flows.append(no_flow)
                valid.append(False)
                apps.append(no_app)
            chain.update(frame)
            primary = chain.primary.track_id if chain.primary.found else None
            ff = chain.flows.get(primary)
            flows.append(no_flow if ff is None else np.asarray(ff.flow, np.float16))
            valid.append(ff is not None and bool(ff.valid))
            read = chain.appearances.get(primary)
            apps.append(no_app if read is None else read.model_input())
            bar.update(1)
        fps = src.fps
    flow = np.stack(flows) if flows else np.zeros((0, 3, n, n), np.float16)
    app = (np.stack(apps) if apps else np.zeros((0, APPEARANCE_DIM), np.float32)) \
        if appearance else None
    return PrimaryFace(flow, np.asarray(valid, bool), float(fps), app)


def primary_face_flows(path: str | Path, cfg: StreamConfig | None = None,
                       progress: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`primary_face_features` without the appearance stage (what the GPU check
    replays).

    Returns:
        flow (N, 3, S', S') float16, valid (N,) bool, fps.
    """
    got = primary_face_features(path, cfg, progress, appearance=False)
    return got.flow, got.valid, got.fps
