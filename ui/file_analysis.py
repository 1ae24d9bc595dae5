"""What the Gradio page's Analyze tab does with one video, without Gradio.

    result = analyze_file("clip.mp4", engine, out_dir, labels="labels.csv")
    result.events, result.scores, result.downloads      # final events, MEGC scores, files
    fig = timeline_figure(result)                       # per-frame scores + intervals

One :class:`~stream.chain.StageChain` runs every frame of the file through
:func:`~stream.chain.run_frames` (the run loop every entry point uses); around
it this module keeps the per-frame readout of the primary face (for the plot),
draws the overlay on each frame into an H.264 MP4 (PyAV, browser-playable),
and writes the JSONL records and a MEGC CSV. A labels CSV (MEGC format) adds
the ground truth to the plot and MEGC spotting / STRS scores.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from engine.config import EMOTIONS, KINDS, TrackerConfig
from engine.contracts import Event, Frame, Record, Summary


class AnalysisError(ValueError):
    """The file cannot be analysed; the message is one line for the page."""


@dataclass(frozen=True)
class Analysis:
    """What one video gave.

    Attributes:
        name: the file's name (its stem names the video in the CSV).
        fps: the video's frame rate.
        events: final events, in emission order.
        records: every record of the run (statuses and summary included).
        frames: (n,) frame indices of the readout below.
        kind_probs: (n, K) primary face's kind probabilities (NaN: no readout).
        emotion_probs: (n, E) primary face's emotion probabilities (NaN: no readout).
        summary: the run's summary.
        truth: ground-truth spots of this video (empty without a labels CSV).
        scores: MEGC scores when ``truth`` is given: ``{"micro"|"macro"|"overall":
            {tp, fp, fn, precision, recall, f1}, "strs": {...}}``; else empty.
        downloads: ``{"jsonl"|"csv"|"mp4": path}``.
        wall_s: seconds the analysis took (the chain, the plot data and the MP4).
    """

    name: str
    fps: float
    events: list[Event]
    records: list[Record]
    frames: np.ndarray
    kind_probs: np.ndarray
    emotion_probs: np.ndarray
    summary: Summary
    truth: list = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    downloads: dict[str, Path] = field(default_factory=dict)
    wall_s: float = 0.0


class Mp4Writer:
    """H.264 (yuv420p) MP4 via PyAV: plays in browsers; odd sizes are cropped to even."""

    def __init__(self, path: Path, fps: float) -> None:
        import av

        self.path, self._fps = path, Fraction(fps).limit_denominator(1001)
        self._out = av.open(str(path), mode="w")
        self._stream = None

    def __call__(self, bgr: np.ndarray) -> None:
        import av

        h, w = (bgr.shape[0] // 2) * 2, (bgr.shape[1] // 2) * 2
        if self._stream is None:
            self._stream = self._out.add_stream("libx264", rate=self._fps)
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"
            self._stream.options = {"preset": "veryfast", "crf": "23"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr[:h, :w]), format="bgr24")
        for packet in self._stream.encode(frame):
            self._out.mux(packet)

    def close(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode(None):  # flush the encoder
                self._out.mux(packet)
        self._out.close()


def _truth_of(labels: str | Path, video: str) -> list:
    """Ground-truth spots of ``video`` in a MEGC CSV (all rows when it names one video)."""
    from stream.megc_csv import read_megc_csv

    try:
        spots = read_megc_csv(labels)
    except ValueError as exc:
        raise AnalysisError(f"labels CSV: {exc}") from None
    keys = sorted({s.key for s in spots})
    if len(keys) == 1:
        return spots
    mine = [s for s in spots if s.video == video]
    if not mine:
        raise AnalysisError(f"labels CSV has no rows for video {video!r} (its videos: "
                            f"{', '.join(v for _, v in keys[:6])}{' ...' if len(keys) > 6 else ''})"
                            "; name the upload after its video column")
    return mine


def _scores(truth: list, events: list[Event], video: str) -> dict:
    """MEGC spotting counts (tIoU ≥ 0.5) and the STRS of ``events`` against ``truth``."""
    from stream.megc_csv import Spot
    from stream.metrics import megc_spotting, strs

    subject, vid = truth[0].subject, truth[0].video
    pred = [Spot(subject, vid, e.onset_frame, e.offset_frame, e.emotion, e.kind, e.apex_frame,
                 float(e.score)) for e in events]
    out = {k: c.as_dict() for k, c in megc_spotting(truth, pred).items()}
    out["strs"] = strs(truth, pred)
    return out


def analyze_file(path: str | Path, engine, out_dir: str | Path, *,
                 labels: str | Path | None = None, video: bool = True,
                 progress: Callable[[int, int], None] | None = None,
                 tracker_cfg: TrackerConfig = TrackerConfig()) -> Analysis:
    """Analyse one video file.

    Args:
        path: the video.
        engine: a loaded ``engine.runtime.Engine`` (shared, not closed here).
        out_dir: where ``<stem>.jsonl``, ``<stem>_megc.csv`` and ``<stem>_annotated.mp4`` go.
        labels: optional MEGC CSV with this video's ground truth.
        video: also write the annotated MP4.
        progress: called as ``progress(frames_done, frames_total)`` (total 0 when unknown).
        tracker_cfg: interval-tracker settings of the chain.

    Raises:
        AnalysisError: unreadable file, no frame, no face, or a bad labels CSV (one line).
    """
    from stream.chain import StageChain, run_frames, source_hooks, stamped
    from stream.events import JsonlSink, RecordList, fan_out
    from stream.sources import SourceError, open_source
    from stream.megc_csv import Spot, write_megc_csv
    from ui.overlay import OverlayState, annotate

    path, out_dir = Path(path), Path(out_dir)
    name, stem = path.name, path.stem
    truth = _truth_of(labels, stem) if labels is not None else []
    start = time.perf_counter()
    try:
        source = open_source(str(path))
        source.open()
    except SourceError as exc:  # the message names the upload's temp path: name the file
        raise AnalysisError(f"cannot read {name}: {str(exc).replace(str(path), name)}") from None
    total = int(getattr(source, "frame_count", 0) or 0)
    fps = float(source.fps or 30.0)
    records, pending = RecordList(), RecordList()
    jsonl = JsonlSink(out_dir / f"{stem}.jsonl")
    mp4 = Mp4Writer(out_dir / f"{stem}_annotated.mp4", fps) if video else None
    overlay = OverlayState()
    frames: list[int] = []
    kind_rows: list[np.ndarray] = []
    emo_rows: list[np.ndarray] = []
    nan_k, nan_e = np.full(len(KINDS), np.nan), np.full(len(EMOTIONS), np.nan)

    def on_frame(frame: Frame) -> None:
        primary = chain.primary.track_id if chain.primary.found else None
        s = chain.scores.get(primary) if primary is not None else None
        frames.append(frame.index)
        kind_rows.append(nan_k if s is None else np.asarray(s.kind_probs, float))
        emo_rows.append(nan_e if s is None else np.asarray(s.emotion_probs, float))
        if mp4 is not None:
            overlay.update(list(pending), chain, t=frame.t_capture, frame_index=frame.index,
                           fps=fps)
            mp4(annotate(frame.image, overlay))
        pending.clear()
        if progress is not None and (frame.index % 10 == 0 or frame.index + 1 == total):
            progress(frame.index + 1, total)

    try:
        with StageChain(engine, fps, tracker_cfg=tracker_cfg) as chain:
            summary = run_frames(stamped(source), chain, fan_out([records, pending, jsonl]),
                                 source=name, policy="block", on_frame=on_frame,
                                 **source_hooks(source))
    except SourceError as exc:
        raise AnalysisError(f"cannot read {name}: {str(exc).replace(str(path), name)}") from None
    finally:
        source.close()
        jsonl.close()
        if mp4 is not None:
            mp4.close()
    if summary.frames_processed == 0:
        raise AnalysisError(f"no frame could be decoded from {name} (is it a video?)")
    if summary.frames_with_face == 0:
        raise AnalysisError(f"no face found in {name} ({summary.frames_processed} frames): "
                            "a frontal face, well lit, filling a fair part of the frame works best")
    events = [r for r in records if isinstance(r, Event)]
    subject, vid = (truth[0].subject, truth[0].video) if truth else (path.parent.name, stem)
    csv_path = out_dir / f"{stem}_megc.csv"
    write_megc_csv([Spot(subject, vid, e.onset_frame, e.offset_frame, e.emotion, e.kind,
                         e.apex_frame, float(e.score)) for e in events], csv_path)
    downloads = {"jsonl": out_dir / f"{stem}.jsonl", "csv": csv_path}
    if mp4 is not None:
        downloads["mp4"] = mp4.path
    return Analysis(name=name, fps=fps, events=events, records=list(records),
                    frames=np.asarray(frames, np.int64),
                    kind_probs=np.asarray(kind_rows).reshape(-1, len(KINDS)),
                    emotion_probs=np.asarray(emo_rows).reshape(-1, len(EMOTIONS)),
                    summary=summary, truth=truth,
                    scores=_scores(truth, events, stem) if truth else {},
                    downloads=downloads, wall_s=time.perf_counter() - start)


#: Legends sit right of the axes, never over the data.
_LEGEND = {"loc": "upper left", "bbox_to_anchor": (1.005, 1.0), "fontsize": 8, "frameon": False}


def timeline_figure(result: Analysis):
    """A matplotlib Figure: kind scores, emotion scores, and the spotted / true intervals."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    from ui.overlay import EMOTION_COLOURS, KIND_COLOURS

    fps = result.fps
    t = result.frames / fps
    fig = Figure(figsize=(11, 5.2), dpi=100, layout="constrained")
    ax_k, ax_e, ax_i = fig.subplots(3, 1, sharex=True, height_ratios=[1.1, 1.1, 1.0])
    for j, k in enumerate(KINDS):
        ax_k.plot(t, result.kind_probs[:, j], color=KIND_COLOURS[k], lw=1.3, label=k)
    ax_k.set_ylim(0, 1.02)
    ax_k.set_ylabel("kind p")
    ax_k.legend(**_LEGEND)
    probs = np.nan_to_num(result.emotion_probs.T, nan=0.0)  # (E, n)
    ax_e.stackplot(t, probs, colors=[EMOTION_COLOURS[e] for e in EMOTIONS], alpha=0.8,
                   labels=EMOTIONS)
    ax_e.set_ylim(0, 1)
    ax_e.set_ylabel("emotion p")
    ax_e.legend(**_LEGEND)
    lanes = {"micro": 1.0, "macro": 0.0}
    for s in result.truth:  # ground truth: a thin grey lane under each kind's row
        if s.kind in lanes:
            ax_i.broken_barh([(s.onset / fps, (s.offset - s.onset + 1) / fps)],
                             (lanes[s.kind] - 0.42, 0.22), facecolor="0.65",
                             edgecolor=EMOTION_COLOURS.get(s.emotion, "0.3"), lw=1.2)
    for e in result.events:  # spotted: filled by emotion, edged by kind
        ax_i.broken_barh([(e.onset_frame / fps, (e.offset_frame - e.onset_frame + 1) / fps)],
                         (lanes[e.kind] - 0.15, 0.5), facecolor=EMOTION_COLOURS[e.emotion],
                         edgecolor=KIND_COLOURS[e.kind], lw=1.5,
                         alpha=0.45 + 0.55 * float(e.score))
    ax_i.set_yticks(list(lanes.values()), list(lanes))
    ax_i.set_ylim(-0.6, 1.55)
    ax_i.set_xlabel("time (s)")
    handles = [Patch(color=EMOTION_COLOURS[e], label=e) for e in EMOTIONS]
    if result.truth:
        handles.append(Patch(facecolor="0.65", label="ground truth"))
    ax_i.legend(handles=handles, **_LEGEND)
    if len(t):
        ax_i.set_xlim(0, max(t[-1], 1.0 / fps))
    for ax in (ax_k, ax_e, ax_i):
        ax.grid(axis="x", alpha=0.25)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    title = f"{result.name}: {len(result.events)} events"
    if result.scores:
        o = result.scores["overall"]
        title += (f"  ·  MEGC spotting F1 {o['f1']:.2f} "
                  f"(P {o['precision']:.2f}, R {o['recall']:.2f})")
    fig.suptitle(title, fontsize=10, x=0.01, ha="left")
    return fig
