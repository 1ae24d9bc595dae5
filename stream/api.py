"""Python API for notebooks and scripts: open a detector once, feed frames or a path.

    from stream.api import Detector, events_to_dataframe, plot_timeline

    with Detector() as det:                      # loads the engine once
        events = det.run("clip.mp4")             # a whole file, every frame
        df = events_to_dataframe(events)         # one row per event
        plot_timeline(events).savefig("timeline.png")

    with Detector() as det:                      # or frame by frame (e.g. from your own camera)
        for image in frames:                     # H×W×3 uint8 BGR
            for event in det.feed(image):
                print(event)
        tail = det.finish()                      # what was still under way at the end

The same stage chain and run loop as ``run_live.py`` run underneath (``stream.chain``).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from engine.config import StreamConfig, TrackerConfig
from engine.contracts import Event, EventCancel, EventStart, Frame, Record
from engine.runtime import Engine
from stream.chain import StageChain, run_frames, source_hooks, stamped
from stream.events import RecordList
from stream.ring import Policy
from stream.sources import FrameSource, open_source


class Detector:
    """Expression spotting on frames you feed, synchronously.

    Args:
        engine: an already loaded :class:`~engine.runtime.Engine` to share (not closed
            here); None loads one for ``backend`` (closed by :meth:`close`).
        backend: ``auto`` | ``torch`` | ``onnxruntime`` | ``tensorrt``, when ``engine`` is None.
        fps: frame rate of the frames given to :meth:`feed` (``run`` reads the source's).
        cfg: stream settings.
        tracker_cfg: interval-tracker thresholds.
        provisional: also return :class:`EventStart` / :class:`EventCancel` records from
            ``feed``; by default only final :class:`Event` objects.
    """

    def __init__(self, engine: Engine | None = None, *, backend: str = "auto", fps: float = 30.0,
                 cfg: StreamConfig = StreamConfig(), tracker_cfg: TrackerConfig = TrackerConfig(),
                 provisional: bool = False) -> None:
        self.cfg, self.tracker_cfg, self.fps = cfg, tracker_cfg, fps
        self.provisional = provisional
        self._owned = engine is None  # loaded here, so closed here
        self.engine: Engine = Engine.load(backend, log=lambda _: None) if self._owned else engine
        self.records = RecordList()  # everything produced, status records included
        self._chain: StageChain | None = None  # built on the first frame of each stream
        self._index = 0

    def _stream(self) -> StageChain:
        """The stage chain of the current stream (a new one after :meth:`finish`)."""
        if self._chain is None:
            self._chain = StageChain(self.engine, self.fps, self.cfg, self.tracker_cfg)
            self._index = 0
        return self._chain

    def feed(self, image: np.ndarray, t_capture: float | None = None) -> list[Record]:
        """Process one H×W×3 uint8 BGR frame; returns the events it finalized."""
        chain = self._stream()
        t = self._index / self.fps if t_capture is None else float(t_capture)
        frame = Frame(self._index, t, image, t_arrival=time.monotonic())
        self._index += 1
        return self._keep(chain.update(frame))

    def finish(self) -> list[Record]:
        """End of the stream: flush what is still open; the next frame starts a new stream."""
        if self._chain is None:
            return []
        out = self._keep(self._chain.finish())
        self._chain.close()
        self._chain = None
        return out

    def run(self, source: str | Path | FrameSource, fps: float | None = None) -> list[Event]:
        """Every frame of a file, folder or source; returns its final events in order."""
        src = open_source(str(source), fps=fps) if isinstance(source, (str, Path)) else source
        with src:
            self.finish()  # a stream fed frame by frame before is ended first
            with StageChain(self.engine, src.fps or self.fps, self.cfg, self.tracker_cfg) as chain:
                start = len(self.records)
                run_frames(stamped(src), chain, self.records,
                           source=str(getattr(src, "name", src)), policy=Policy.BLOCK.value,
                           **source_hooks(src))
        return [r for r in self.records[start:] if isinstance(r, Event)]

    def _keep(self, records: list[Record]) -> list[Record]:
        self.records += records
        wanted = (Event, EventStart, EventCancel) if self.provisional else (Event,)
        return [r for r in records if isinstance(r, wanted)]

    def close(self) -> None:
        if self._chain is not None:
            self._chain.close()
            self._chain = None
        if self._owned:
            self.engine.close()
            self._owned = False

    def __enter__(self) -> "Detector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


#: Columns of :func:`events_to_dataframe`, in order (the JSONL fields of an event).
EVENT_COLUMNS = ("onset_frame", "apex_frame", "offset_frame", "onset_s", "offset_s", "kind",
                 "emotion", "score", "emitted_frame", "latency_ms", "track_id", "truncated", "id")


def events_to_dataframe(events: Iterable[Event]):
    """A pandas DataFrame, one row per event; emotion scores as ``p_<emotion>`` columns."""
    import pandas as pd

    rows = []
    for e in events:
        row = {c: getattr(e, c) for c in EVENT_COLUMNS}
        row.update({f"p_{k}": v for k, v in e.emotion_scores.items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(EVENT_COLUMNS) if not rows else None)


#: Colour per emotion in the timeline plot.
EMOTION_COLOURS = {"negative": "tab:red", "positive": "tab:green", "surprise": "tab:orange",
                   "others": "tab:blue"}


def plot_timeline(events: Sequence[Event], truth: Sequence[tuple[int, int, str]] = (),
                  fps: float = 30.0, ax=None):
    """Draw events as bars (micro on one row, macro on another), coloured by emotion.

    Args:
        events: detected events.
        truth: optional ground truth as ``(onset_frame, offset_frame, kind)`` drawn in grey.
        fps: to label the x axis in seconds.
        ax: a matplotlib Axes to draw on (a new figure otherwise).

    Returns:
        The matplotlib Figure.
    """
    import matplotlib
    if ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(10, 2.4))
    else:
        fig = ax.figure
    rows = {"micro": 1.0, "macro": 0.0}
    for onset, offset, kind in truth:
        ax.broken_barh([(onset / fps, (offset - onset + 1) / fps)], (rows[kind] - 0.45, 0.2),
                       color="0.6")
    for e in events:
        ax.broken_barh([(e.onset_frame / fps, (e.offset_frame - e.onset_frame + 1) / fps)],
                       (rows[e.kind] - 0.2, 0.6), color=EMOTION_COLOURS[e.emotion],
                       alpha=0.35 + 0.65 * float(e.score))
    ax.set_yticks(list(rows.values()), list(rows))
    ax.set_xlabel("time (s)")
    ax.set_ylim(-0.6, 1.6)
    handles = [matplotlib.patches.Patch(color=c, label=k) for k, c in EMOTION_COLOURS.items()]
    if truth:
        handles.append(matplotlib.patches.Patch(color="0.6", label="ground truth"))
    ax.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=len(handles),
              fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
