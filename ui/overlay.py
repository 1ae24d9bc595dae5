"""The overlay both front ends draw on the returned video: ``annotate(frame, state) -> frame``.

    state = OverlayState()
    for frame in frames:
        records = chain.update(frame)
        state.update(records, chain, t=frame.t_capture, frame_index=frame.index)
        out = annotate(frame.image, state)      # a new H×W×3 uint8 BGR array

What is drawn (OpenCV only, well under 2 ms at 640×360 on one core):

* each face's box (corner brackets) and track id, coloured by the emotion of
  the expression under way on that face (light grey when none);
* top left, a panel of the primary face's current readout: kind probabilities
  (micro / macro) and emotion probabilities as small bars;
* top centre, the provisional event while it is under way ("UNDER WAY micro -
  surprise"), and for a moment after a cancel a struck-through "withdrawn" tag;
* top right, the frame rate and the last few final events with their labels;
* along the bottom, a strip of the last ``history_s`` seconds of kind scores,
  with the spotted intervals as coloured spans (final: filled, under way:
  outlined, withdrawn: grey).

Colours per emotion follow :data:`stream.api.EMOTION_COLOURS` (matplotlib's
tab palette), so the overlay and the timeline plots agree.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

import cv2
import numpy as np

from engine.config import EMOTIONS, KINDS
from engine.contracts import Event, EventCancel, EventStart

#: matplotlib's tab palette, hex (what ``EMOTION_COLOURS`` / ``KIND_COLOURS`` name; for HTML).
TAB_HEX = {"tab:blue": "#1f77b4", "tab:orange": "#ff7f0e", "tab:green": "#2ca02c",
            "tab:red": "#d62728", "tab:purple": "#9467bd", "tab:brown": "#8c564b",
            "tab:pink": "#e377c2", "tab:gray": "#7f7f7f", "tab:olive": "#bcbd22",
            "tab:cyan": "#17becf"}

#: Colour per kind (matplotlib names), for the overlay's score lines and the Gradio plots.
KIND_COLOURS = {"micro": "tab:pink", "macro": "tab:cyan"}


def bgr(colour: str) -> tuple[int, int, int]:
    """A matplotlib tab name (``tab:red``) or ``#rrggbb`` as an OpenCV BGR tuple."""
    h = TAB_HEX.get(colour, colour).lstrip("#")
    if len(h) != 6:
        raise ValueError(f"colour must be a tab: name or #rrggbb, got {colour!r}")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return (b, g, r)


#: Colour per emotion: the same table as ``stream.api.EMOTION_COLOURS`` (a test keeps them
#: equal; importing stream.api here would pull in torch through engine.runtime).
EMOTION_COLOURS = {"negative": "tab:red", "positive": "tab:green", "surprise": "tab:orange",
                   "others": "tab:blue"}
EMOTION_BGR = {e: bgr(EMOTION_COLOURS[e]) for e in EMOTIONS}
KIND_BGR = {k: bgr(KIND_COLOURS[k]) for k in KINDS}
_NEUTRAL = (215, 215, 215)  # face box with nothing under way
_GREY = (150, 150, 150)
_WHITE = (245, 245, 245)
_PANEL = 22.0  # grey level panels are blended towards
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_CAP = 2048  # history rows kept at most (10 s up to ~200 fps)


@dataclass(frozen=True)
class _Withdrawn:
    start: EventStart
    t: float  # state time of the cancel


class OverlayState:
    """What the overlay shows, updated once per frame from a stage chain's output.

    Args:
        history_s: seconds of scores the bottom strip spans.
        max_finals: final events listed at the top right.
        withdrawn_s: how long a "withdrawn" mark stays, seconds.
        fps_smoothing: weight of the newest frame interval in the frame-rate
            estimate (exponential moving average), in (0, 1].

    Attributes (read by :func:`annotate`; set by :meth:`update`):
        faces: the chain's faces of the last frame (``FaceObs``, found ones).
        scores: track_id → the latest readout (``.kind_probs`` (K,), ``.emotion_probs`` (E,)).
        under_way: (track_id, id) → the latest :class:`EventStart` not yet final or withdrawn.
        withdrawn: recent cancels (shown for ``withdrawn_s``).
        finals: the last ``max_finals`` final :class:`Event` s, newest last.
        fps: frame-rate estimate (0 until two updates).
        t: time of the last update, seconds (the caller's clock; monotonic by default).
    """

    def __init__(self, history_s: float = 10.0, max_finals: int = 4, withdrawn_s: float = 1.5,
                 fps_smoothing: float = 0.1) -> None:
        if not history_s > 0:
            raise ValueError(f"history_s must be > 0, got {history_s!r}")
        if not max_finals >= 1:
            raise ValueError(f"max_finals must be >= 1, got {max_finals!r}")
        if not withdrawn_s >= 0:
            raise ValueError(f"withdrawn_s must be >= 0, got {withdrawn_s!r}")
        if not 0 < fps_smoothing <= 1:
            raise ValueError(f"fps_smoothing must be in (0, 1], got {fps_smoothing!r}")
        self.history_s, self.withdrawn_s, self._alpha = history_s, withdrawn_s, fps_smoothing
        self.faces: tuple = ()
        self.scores: dict[int, Any] = {}
        self.under_way: dict[tuple[int, int], EventStart] = {}
        self.withdrawn: deque[_Withdrawn] = deque(maxlen=4)
        self.finals: deque[Event] = deque(maxlen=max_finals)
        self.fps = 0.0
        self.t = 0.0
        self.frame_index = -1
        # History of the primary face, one row per update, in a preallocated ring (NaN rows
        # when no face): rows [_h0, _h1) modulo _CAP; trimmed to history_s in update.
        self._t = np.zeros(_CAP)
        self._f = np.zeros(_CAP, np.int64)
        self._k = np.zeros((_CAP, len(KINDS)), np.float32)
        self._e = np.zeros((_CAP, len(EMOTIONS)), np.float32)
        self._h0 = self._h1 = 0
        self._spans: deque[tuple[int, int, str, str]] = deque(maxlen=64)  # finals: on, off, ...

    # --- update -----------------------------------------------------------------------------
    def update(self, records: Iterable[Any], chain: Any = None, *, t: float | None = None,
               frame_index: int | None = None, fps: float | None = None) -> None:
        """Take one frame's records and the chain's ``faces`` / ``scores``.

        Args:
            records: what ``chain.update(frame)`` returned (other record types are ignored).
            chain: anything with ``faces`` (FaceObs tuple) and ``scores`` (track_id →
                readout); None keeps the last ones.
            t: time of this frame, seconds (``time.monotonic()`` when None; pass
                ``frame.t_capture`` to render a file at its own pace).
            frame_index: stream index of this frame (previous + 1 when None).
            fps: a frame rate to show instead of the estimate from successive ``t``.
        """
        t = time.monotonic() if t is None else float(t)
        if self.frame_index >= 0 and t > self.t:
            inst = 1.0 / (t - self.t)
            self.fps = inst if self.fps == 0 else self.fps + self._alpha * (inst - self.fps)
        if fps is not None:
            self.fps = float(fps)
        self.t = t
        self.frame_index = self.frame_index + 1 if frame_index is None else int(frame_index)
        if chain is not None:
            self.faces = tuple(f for f in getattr(chain, "faces", ()) if f.found)
            self.scores = dict(getattr(chain, "scores", {}) or {})
        for r in records:
            if isinstance(r, EventStart):
                self.under_way[(r.track_id, r.id)] = r
            elif isinstance(r, Event):
                self.under_way.pop((r.track_id, r.id), None)
                self.finals.append(r)
                self._spans.append((r.onset_frame, r.offset_frame, r.kind, r.emotion))
            elif isinstance(r, EventCancel):
                start = self.under_way.pop((r.track_id, r.id), None)
                if start is not None:
                    self.withdrawn.append(_Withdrawn(start, t))
        s = self.scores.get(self.primary_track())
        i = self._h1 % _CAP
        self._t[i], self._f[i] = t, self.frame_index
        self._k[i] = np.nan if s is None else s.kind_probs
        self._e[i] = np.nan if s is None else s.emotion_probs
        self._h1 += 1
        self._h0 = max(self._h0, self._h1 - _CAP)
        while self._h0 < self._h1 - 1 and self._t[self._h0 % _CAP] < t - self.history_s:
            self._h0 += 1

    def primary_track(self) -> int | None:
        """Track id of the face the panels describe (the chain's first face), or None."""
        if self.faces:
            return self.faces[0].track_id
        return next(iter(self.scores), None)

    def history(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The strip's data: t (n,), frame (n,), kind probs (n, K), emotion probs (n, E)."""
        idx = np.arange(self._h0, self._h1) % _CAP  # (n,) ring rows, oldest first
        return self._t[idx], self._f[idx], self._k[idx], self._e[idx]


# --- drawing helpers ------------------------------------------------------------------------
def _panel(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, alpha: float = 0.74) -> None:
    """Darkens img[y0:y1, x0:x1] towards the panel colour, in place (clipped to the image)."""
    h, w = img.shape[:2]
    x0, x1, y0, y1 = max(0, x0), min(w, x1), max(0, y0), min(h, y1)
    if x1 <= x0 or y1 <= y0:
        return
    roi = img[y0:y1, x0:x1]
    # A grey panel colour lets one scalar blend do it (no background array to fill).
    cv2.convertScaleAbs(roi, dst=roi, alpha=1.0 - alpha, beta=alpha * _PANEL)


def _text(img, s: str, org, scale: float, colour=_WHITE, thick: int = 1) -> None:
    """Anti-aliased text; always drawn on a dark panel, so no shadow (half the cost)."""
    cv2.putText(img, s, (int(org[0]), int(org[1])), _FONT, scale, colour, thick, cv2.LINE_AA)


def _corners(img, x0, y0, x1, y1, colour, thick: int) -> None:
    """A thin box with heavier corner brackets (axis-aligned: no anti-aliasing needed)."""
    cv2.rectangle(img, (x0, y0), (x1, y1), colour, 1, cv2.LINE_8)
    L = max(6, min(x1 - x0, y1 - y0) // 5)
    for (cx, cy, dx, dy) in ((x0, y0, 1, 1), (x1, y0, -1, 1), (x0, y1, 1, -1), (x1, y1, -1, -1)):
        cv2.line(img, (cx, cy), (cx + dx * L, cy), colour, thick, cv2.LINE_8)
        cv2.line(img, (cx, cy), (cx, cy + dy * L), colour, thick, cv2.LINE_8)


def _bar(img, x, y, w, h, p: float, colour) -> None:
    cv2.rectangle(img, (x, y), (x + w, y + h), (70, 70, 70), -1)
    if np.isfinite(p) and p > 0:
        cv2.rectangle(img, (x, y), (x + max(1, int(round(w * min(p, 1.0)))), y + h), colour, -1)


def _light(colour) -> tuple[int, int, int]:
    """``colour`` halfway to white: legible as text on a dark panel."""
    return tuple(int(c + (255 - c) * 0.45) for c in colour)


def _label(start: EventStart | Event) -> str:
    return f"{start.kind} - {start.emotion}"  # Hershey fonts are ASCII only


# --- the drawer -----------------------------------------------------------------------------
def annotate(frame: np.ndarray, state: OverlayState) -> np.ndarray:
    """Draw ``state`` on a copy of ``frame``.

    Args:
        frame: H×W×3 uint8 BGR (not modified).
        state: the overlay state of this stream.

    Returns:
        A new H×W×3 uint8 BGR array.
    """
    if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
            and frame.shape[2] == 3):
        got = (getattr(frame, "shape", None), getattr(frame, "dtype", type(frame).__name__))
        raise ValueError(f"frame must be an H×W×3 uint8 BGR array, got shape/dtype {got}")
    img = frame.copy()
    h, w = img.shape[:2]
    s = float(np.clip(min(h / 360.0, w / 640.0), 0.6, 3.0))  # sizes are laid out for 640×360
    fs = 0.42 * s  # font scale
    lh = int(round(15 * s))  # line height
    pad = int(round(6 * s))
    thick = max(1, int(round(s)))

    _draw_faces(img, state, s, fs, thick)
    _draw_scores(img, state, s, fs, lh, pad)
    _draw_banner(img, state, s, fs, pad, thick)
    _draw_finals(img, state, s, fs, lh, pad)
    _draw_strip(img, state, s, fs, pad)
    return img


def _draw_faces(img, state: OverlayState, s, fs, thick) -> None:
    active = {tid: st for (tid, _), st in state.under_way.items()}
    for face in state.faces:
        if face.bbox is None:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in face.bbox)
        st = active.get(face.track_id)
        colour = EMOTION_BGR[st.emotion] if st is not None else _NEUTRAL
        _corners(img, x0, y0, x1, y1, colour, thick + (1 if st is not None else 0))
        tag = f"face {face.track_id}"
        tw, th = cv2.getTextSize(tag, _FONT, fs, 1)[0]
        ty = y0 - int(4 * s) if y0 - th - int(8 * s) >= 0 else y1 + th + int(6 * s)
        cv2.rectangle(img, (x0, ty - th - int(3 * s)), (x0 + tw + int(8 * s), ty + int(3 * s)),
                      colour, -1)
        cv2.putText(img, tag, (x0 + int(4 * s), ty), _FONT, fs, (20, 20, 20), 1, cv2.LINE_AA)


def _draw_scores(img, state: OverlayState, s, fs, lh, pad) -> None:
    sc = state.scores.get(state.primary_track())
    rows = [(k, KIND_BGR[k]) for k in KINDS] + [(e, EMOTION_BGR[e]) for e in EMOTIONS]
    label_w, bar_w, bar_h = int(62 * s), int(70 * s), max(3, int(7 * s))
    x0, y0 = pad, pad
    x1 = x0 + pad + label_w + bar_w + int(40 * s)
    y1 = y0 + pad + lh * (len(rows) + 1) + int(4 * s)
    _panel(img, x0, y0, x1, y1)
    _text(img, "now" if sc is not None else "now: no face", (x0 + pad, y0 + lh), fs * 0.95,
          _GREY)
    probs = ([np.nan] * len(rows) if sc is None
             else [*np.asarray(sc.kind_probs, float), *np.asarray(sc.emotion_probs, float)])
    for i, ((name, colour), p) in enumerate(zip(rows, probs)):
        y = y0 + lh * (i + 2) + (int(4 * s) if i >= len(KINDS) else 0)
        _text(img, name, (x0 + pad, y), fs, _WHITE)
        bx = x0 + pad + label_w
        _bar(img, bx, y - bar_h, bar_w, bar_h, p, colour)
        if np.isfinite(p):
            _text(img, f"{p:.2f}", (bx + bar_w + int(4 * s), y), fs * 0.85, _GREY)


def _draw_banner(img, state: OverlayState, s, fs, pad, thick) -> None:
    """Top centre: a card per expression under way, and a struck-through one per recent cancel."""
    w = img.shape[1]
    items: list[tuple[str, str, tuple, bool]] = []  # header, label, colour, withdrawn
    for st in list(state.under_way.values())[-2:]:
        dur = max(0.0, st.offset_s - st.onset_s)
        items.append((f"UNDER WAY  {dur:.1f}s  p={st.score:.2f}", _label(st),
                      EMOTION_BGR[st.emotion], False))
    for wd in state.withdrawn:
        if state.t - wd.t <= state.withdrawn_s:
            items.append(("WITHDRAWN", _label(wd.start), _GREY, True))
    y = pad
    big = fs * 1.25
    for header, label, colour, struck in items[:3]:
        (hw, hh), (lw, lh) = (cv2.getTextSize(header, _FONT, fs * 0.85, 1)[0],
                              cv2.getTextSize(label, _FONT, big, thick)[0])
        bw = max(hw, lw) + 2 * pad + int(8 * s)
        bh = hh + lh + 3 * pad
        x = (w - bw) // 2
        _panel(img, x, y, x + bw, y + bh, 0.8)
        cv2.rectangle(img, (x, y), (x + int(5 * s), y + bh), colour, -1)  # emotion swatch
        cv2.rectangle(img, (x, y), (x + bw, y + bh), colour, 1, cv2.LINE_8)
        tx = x + pad + int(6 * s)
        _text(img, header, (tx, y + pad + hh), fs * 0.85, _light(colour) if not struck else _GREY)
        ly = y + 2 * pad + hh + lh
        _text(img, label, (tx, ly), big, _WHITE if not struck else _GREY, thick)
        if struck:
            cv2.line(img, (tx, ly - lh // 2), (tx + lw, ly - lh // 2), (0, 0, 230), thick + 1,
                     cv2.LINE_AA)
        y += bh + int(4 * s)


def _draw_finals(img, state: OverlayState, s, fs, lh, pad) -> None:
    w = img.shape[1]
    fps_text = f"{state.fps:4.1f} fps" if state.fps > 0 else "-- fps"
    finals = list(state.finals)[::-1]  # newest first
    pw = int(178 * s)
    x0, y0 = w - pad - pw, pad
    y1 = y0 + pad + lh * (1 + max(1, len(finals))) + int(2 * s)
    _panel(img, x0, y0, w - pad, y1)
    _text(img, "events", (x0 + pad, y0 + lh), fs * 0.95, _GREY)
    fw = cv2.getTextSize(fps_text, _FONT, fs * 0.95, 1)[0][0]
    _text(img, fps_text, (w - 2 * pad - fw, y0 + lh), fs * 0.95, _WHITE)
    if not finals:
        _text(img, "none yet", (x0 + pad, y0 + 2 * lh), fs * 0.9, _GREY)
    for i, ev in enumerate(finals):
        y = y0 + lh * (i + 2)
        sw = max(4, int(8 * s))
        cv2.rectangle(img, (x0 + pad, y - sw), (x0 + pad + sw, y), EMOTION_BGR[ev.emotion], -1)
        when = f"{ev.onset_s:5.1f}s"
        _text(img, f"{when} {ev.kind[:5]} {ev.emotion[:8]}", (x0 + pad + sw + int(5 * s), y),
              fs * 0.9, _WHITE if i == 0 else (200, 200, 200))


def _draw_strip(img, state: OverlayState, s, fs, pad) -> None:
    h, w = img.shape[:2]
    sh = int(52 * s)
    x0, x1, y1 = pad, w - pad, h - pad
    y0 = y1 - sh
    _panel(img, x0, y0, x1, y1, 0.66)
    t, f, kp, _ = state.history()
    ix0, ix1 = x0 + int(34 * s), x1 - pad  # plot area
    iy0, iy1 = y0 + int(12 * s), y1 - int(4 * s)
    _text(img, f"last {state.history_s:.0f}s", (x0 + int(3 * s), y0 + int(12 * s)), fs * 0.8,
          _GREY)
    for j, k in enumerate(KINDS):
        _text(img, k, (x0 + int(3 * s), y0 + int(26 * s) + j * int(12 * s)), fs * 0.75,
              KIND_BGR[k])
    cv2.line(img, (ix0, iy1), (ix1, iy1), (90, 90, 90), 1)
    if len(t) == 0:
        return
    t_end = state.t
    xs = ix0 + (ix1 - ix0) * (1.0 - (t_end - t) / state.history_s)

    def x_of_frame(fr: float) -> int:  # frame index → strip x, through the history's clock
        return int(round(np.interp(fr, f, xs))) if len(f) > 1 else int(xs[-1])

    band = max(3, int(5 * s))
    f_lo, f_hi = (f[0], f[-1]) if len(f) else (0, 0)
    for on, off, kind, emo in state._spans:  # finals: filled spans at the top of the plot
        if off >= f_lo and on <= f_hi:
            cv2.rectangle(img, (x_of_frame(on), iy0 - band), (max(x_of_frame(off),
                          x_of_frame(on) + 2), iy0), EMOTION_BGR[emo], -1)
    for st in state.under_way.values():  # under way: outlined
        cv2.rectangle(img, (x_of_frame(st.onset_frame), iy0 - band),
                      (max(x_of_frame(st.offset_frame), x_of_frame(st.onset_frame) + 2), iy0),
                      EMOTION_BGR[st.emotion], 1)
    for wd in state.withdrawn:
        if state.t - wd.t <= state.withdrawn_s:
            cv2.rectangle(img, (x_of_frame(wd.start.onset_frame), iy0 - band),
                          (x_of_frame(wd.start.offset_frame) + 2, iy0), _GREY, 1)
    for j, k in enumerate(KINDS):
        ys = iy1 - (iy1 - iy0) * np.clip(kp[:, j], 0.0, 1.0)
        ok = np.isfinite(ys)
        pts = np.stack([xs, np.where(ok, ys, iy1)], axis=1).astype(np.int32)  # (n, 2) x, y
        # Split at gaps (no face) so a line never bridges them.
        cuts = np.flatnonzero(np.diff(ok.astype(np.int8)) != 0) + 1
        for seg, good in zip(np.split(pts, cuts), (ok[i] for i in np.r_[0, cuts])):
            if good and len(seg) > 1:
                cv2.polylines(img, [seg.reshape(-1, 1, 2)], False, KIND_BGR[k], 1, cv2.LINE_AA)
