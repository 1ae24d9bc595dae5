"""Live streams of the Gradio page: browser frames → one stage chain per session → overlay.

    sessions = LiveSessions(engine, fps=30)
    out = sessions.step(session_key, rgb)        # (annotated RGB, events HTML, status HTML)
    sessions.close(session_key)                  # the tab went

No Gradio import here: :mod:`ui.gradio_app` wires these to the page.
"""
from __future__ import annotations

import html
import threading
import time
from collections import OrderedDict
from typing import Callable

import cv2
import numpy as np

from engine.config import TrackerConfig
from engine.contracts import Event, EventCancel, EventStart, Frame
from ui.overlay import EMOTION_COLOURS, TAB_HEX, OverlayState, annotate

_GONE_KEPT = 4096  # session keys of closed tabs remembered (a bounded set)


class LiveSession:
    """One browser stream: its stage chain, overlay state and event rows.

    The model was trained at ``fps`` frames per second, and a browser delivers
    fewer and irregularly, so each browser frame stands for the model-rate
    ticks that passed since the previous one: it is fed to the chain once per
    tick (at most ``max_repeat`` times; the ticks beyond are skipped and counted
    as skipped), with tick times as capture times and its real arrival time.

    Args:
        engine: the loaded engine (shared across sessions).
        fps: the model's frame rate (ticks per second).
        max_repeat: most chain frames one browser frame is fed as.
        clock: monotonic seconds (tests pass a fake one).
        tracker_cfg: interval-tracker settings of the session's chain.
    """

    def __init__(self, engine, fps: float, max_repeat: int = 6,
                 clock: Callable[[], float] = time.monotonic,
                 tracker_cfg: TrackerConfig = TrackerConfig()) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        if not max_repeat >= 1:
            raise ValueError(f"max_repeat must be >= 1, got {max_repeat!r}")
        from stream.chain import StageChain  # loads MediaPipe: only when a stream starts

        self.chain = StageChain(engine, fps, tracker_cfg=tracker_cfg)
        self.overlay = OverlayState()
        self.fps, self.max_repeat, self.clock = fps, max_repeat, clock
        self.frames = self.dropped = 0  # browser frames processed / dropped while busy
        self.ticks = self.skipped = 0  # model-rate ticks fed to the chain / not fed
        self.rows: dict[tuple[int, int], tuple[str, object]] = {}  # key -> (status, record)
        self.last_t = clock()
        self._t0: float | None = None
        self._tick = -1
        self._busy = threading.Lock()
        self._closed = False

    def step(self, rgb: np.ndarray) -> tuple[np.ndarray, str, str] | None:
        """One browser frame (H×W×3 RGB) → (annotated RGB, events HTML, status HTML).

        None when the previous frame of this session is still being processed
        (this frame is dropped and counted) or the session is closed.
        """
        if self._closed or not self._busy.acquire(blocking=False):
            self.dropped += 1
            return None
        try:
            t = self.last_t = self.clock()
            if self._t0 is None:
                self._t0 = t
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # the chain and the overlay are BGR
            tick = max(self._tick + 1, int(round((t - self._t0) * self.fps)))
            first = max(self._tick + 1, tick - self.max_repeat + 1)
            self.skipped += first - self._tick - 1
            records = []
            for k in range(first, tick + 1):
                records += self.chain.update(Frame(k, self._t0 + k / self.fps, bgr, t_arrival=t))
            self._tick, self.ticks = tick, self.ticks + tick - first + 1
            self.frames += 1
            for r in records:
                key = (getattr(r, "track_id", -1), getattr(r, "id", -1))
                if isinstance(r, EventStart):
                    self.rows[key] = ("under way", r)
                elif isinstance(r, Event):
                    self.rows[key] = ("final", r)
                elif isinstance(r, EventCancel) and key in self.rows:
                    self.rows[key] = ("withdrawn", self.rows[key][1])
            self.overlay.update(records, self.chain, t=t, frame_index=tick)
            out = cv2.cvtColor(annotate(bgr, self.overlay), cv2.COLOR_BGR2RGB)
            return out, events_html(self.rows), self.status_html()
        finally:
            self._busy.release()

    def status_html(self) -> str:
        face = "face" if self.chain.primary.found else "no face"
        return (f'<div class="fedn-status" id="live-status" data-fps="{self.overlay.fps:.2f}" '
                f'data-frames="{self.frames}" data-dropped="{self.dropped}">'
                f"<b>{self.overlay.fps:.1f} fps</b> from the browser · {face} · "
                f"{self.frames} frames fed as {self.ticks} at the model's {self.fps:g} fps "
                f"({self.skipped} skipped) · {self.dropped} dropped while busy · "
                f"engine {html.escape(self.chain.engine_name)}</div>")

    def close(self) -> None:
        """Frees the chain (idempotent)."""
        with self._busy:
            if not self._closed:
                self._closed = True
                self.chain.close()


class LiveSessions:
    """The live streams of one page, one per browser session, and their lifetimes.

    A session's stream is closed when its tab goes (Gradio's unload event), when
    it restarts after a pause of ``restart_s`` (a new recording is a new
    stream), or when it has sent nothing for ``idle_s`` (recording stopped or
    ``time_limit`` reached; checked on every frame of any session).

    Args:
        engine: the loaded engine.
        fps: the model's frame rate.
        restart_s: a pause this long starts a new stream.
        idle_s: a stream idle this long is closed.
        clock: monotonic seconds (tests pass a fake one).
        tracker_cfg: interval-tracker settings of every session's chain.
    """

    def __init__(self, engine, fps: float, restart_s: float = 3.0, idle_s: float = 20.0,
                 clock: Callable[[], float] = time.monotonic,
                 tracker_cfg: TrackerConfig = TrackerConfig()) -> None:
        if not 0 < restart_s <= idle_s:
            raise ValueError(f"need 0 < restart_s <= idle_s, got {restart_s!r}, {idle_s!r}")
        self.engine, self.fps, self.restart_s, self.idle_s = engine, fps, restart_s, idle_s
        self.clock, self.tracker_cfg = clock, tracker_cfg
        self._lock = threading.Lock()
        self._live: dict[str, LiveSession] = {}
        # Tabs that went: a frame still in Gradio's queue for one must not reopen it.
        self._gone: OrderedDict[str, None] = OrderedDict()
        self.opened = self.closed = 0

    @property
    def open(self) -> int:
        """Streams holding a stage chain now (a closing one counts until its chain is freed)."""
        with self._lock:
            return self.opened - self.closed

    def step(self, key: str, rgb: np.ndarray):
        """Feed session ``key``'s frame (see :meth:`LiveSession.step`); None once its tab went."""
        now = self.clock()
        with self._lock:
            if key in self._gone:
                return None
            stale = [k for k, s in self._live.items()
                     if now - s.last_t > (self.restart_s if k == key else self.idle_s)]
            gone = [self._live.pop(k) for k in stale]
            session = self._live.get(key)
            if session is None:
                session = self._live[key] = LiveSession(self.engine, self.fps, clock=self.clock,
                                                        tracker_cfg=self.tracker_cfg)
                self.opened += 1
        self._close(gone)
        return session.step(rgb)

    def close(self, key: str) -> None:
        """Close session ``key``'s stream (its tab went); its later frames are ignored."""
        with self._lock:
            self._gone[key] = None
            while len(self._gone) > _GONE_KEPT:
                self._gone.popitem(last=False)
            gone = [self._live.pop(key)] if key in self._live else []
        self._close(gone)

    def close_all(self) -> None:
        with self._lock:
            gone, self._live = list(self._live.values()), {}
        self._close(gone)

    def _close(self, sessions: list[LiveSession]) -> None:
        for s in sessions:
            s.close()
        with self._lock:
            self.closed += len(sessions)


def events_html(rows: dict, limit: int = 40) -> str:
    """The live events table, newest first: final, under way and withdrawn rows."""
    if not rows:
        return '<div class="fedn-empty" id="live-events">No expression yet.</div>'
    body = []
    for status, r in list(rows.values())[::-1][:limit]:
        colour = TAB_HEX[EMOTION_COLOURS[r.emotion]]
        cls = status.replace(" ", "-")
        when = f"{r.onset_s:.2f}–{r.offset_s:.2f} s" if status != "under way" else \
            f"{r.onset_s:.2f} s –"
        late = f"{r.latency_ms:.0f} ms" if status == "final" else ""
        body.append(f'<tr class="{cls}"><td><span class="badge">{status}</span></td>'
                    f"<td>{r.kind}</td><td><span class=\"sw\" style=\"background:{colour}\">"
                    f"</span>{r.emotion}</td><td>{when}</td><td>{r.score:.2f}</td>"
                    f"<td>{late}</td></tr>")
    return ('<table class="fedn-events" id="live-events"><thead><tr><th></th><th>kind</th>'
            "<th>emotion</th><th>when</th><th>score</th><th>latency</th></tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")
