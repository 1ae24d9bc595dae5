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

The same stage chain as ``run_live.py`` runs underneath (``stream.stages``).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from engine.config import StreamConfig, TrackerConfig
from stream.contracts import Frame
from stream.events import Event
from stream.sources import FrameSource, open_source


class Detector:
    """Expression spotting on frames you feed, synchronously.

    Args:
        engine: ``auto`` | ``torch`` | ``onnxruntime`` | ``tensorrt``.
        fps: frame rate of the frames given to :meth:`feed` (``run`` reads the source's).
        cfg: stream settings.
        tracker_cfg: interval-tracker thresholds.
        provisional: also return ``event_start`` / ``event_cancel`` records from ``feed``
            (as dicts); by default only final :class:`~stream.events.Event` objects.
        loaded_engine: an already loaded ``engine.runtime.Engine`` to share.
    """

    def __init__(self, engine: str = "auto", fps: float = 30.0,
                 cfg: StreamConfig = StreamConfig(), tracker_cfg: TrackerConfig = TrackerConfig(),
                 provisional: bool = False, loaded_engine=None) -> None:
        from stream.pipeline import missing_stages

        self.cfg, self.tracker_cfg, self.fps = cfg, tracker_cfg, fps
        self.provisional = provisional
        self.missing = missing_stages()
        self._owned_engine = None  # loaded here, so closed here
        if loaded_engine is None and not {"engine", "face", "flow"} & set(self.missing):
            from engine.runtime import Engine
            loaded_engine = self._owned_engine = Engine.load(engine, log=lambda _: None)
        if loaded_engine is None:
            raise RuntimeError(f"Detector: stages not available: {self.missing} "
                               "(install mediapipe / ship trained weights)")
        self.engine = loaded_engine
        self.records: list[dict] = []  # everything produced, status records included
        self._chain = None  # built on the first frame of each stream
        self._index = 0

    def _stream(self):
        """The stage chain of the current stream (a new one after :meth:`finish`)."""
        if self._chain is None:
            from stream.stages import StageChain
            self._chain = StageChain(self.cfg, self.fps, [], loaded_engine=self.engine,
                                     tracker_cfg=self.tracker_cfg)
            self._index = 0
        return self._chain

    def feed(self, image: np.ndarray, t_capture: float | None = None) -> list:
        """Process one H×W×3 uint8 BGR frame; returns the events it finalized."""
        chain = self._stream()
        t = self._index / self.fps if t_capture is None else float(t_capture)
        frame = Frame(self._index, t, image, t_arrival=time.monotonic())
        self._index += 1
        return self._keep(chain.process(frame))

    def finish(self) -> list:
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
        events: list = []
        with src:
            self.finish()  # a stream fed frame by frame before is ended first
            self.fps = src.fps or self.fps
            chain = self._stream()
            while (frame := src.read()) is not None:
                events += self._keep(chain.process(
                    replace(frame, t_arrival=time.monotonic())))
            events += self.finish()
        return [e for e in events if isinstance(e, Event)]

    def _keep(self, records: list[dict]) -> list:
        self.records += records
        out = []
        for r in records:
            if r["type"] == "event":
                out.append(Event.from_record(r))
            elif self.provisional and r["type"] in ("event_start", "event_cancel"):
                out.append(r)
        return out

    def close(self) -> None:
        if self._chain is not None:
            self._chain.close()
            self._chain = None
        if self._owned_engine is not None:
            self._owned_engine.close()
            self._owned_engine = None

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
