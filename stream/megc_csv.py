"""MEGC submission CSV and fedn-live JSONL events <-> :class:`Spot` records.

MEGC CSV (as in the official STRS code's ``data/gt.csv`` / ``pred.csv``):
header ``subject,video,onset,offset,emotion``, plus our optional columns
``type`` (micro/macro), ``apex`` and ``score``. Frames inclusive, in the
dataset's label numbering. Reading keeps text exactly (``006`` stays
``006``); writing emits the 5 base columns and each optional column that any
record fills, so CSV -> records -> CSV reproduces a file written here.

JSONL: one JSON object per line; only ``"type": "event"`` lines are spots
(``onset_frame``/``apex_frame``/``offset_frame`` are stream indices from 0);
status, summary, event_start and event_cancel lines are skipped.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from engine.config import KINDS
from stream.events import read_events

BASE_COLUMNS: tuple[str, ...] = ("subject", "video", "onset", "offset", "emotion")
OPTIONAL_COLUMNS: tuple[str, ...] = ("type", "apex", "score")


@dataclass(frozen=True)
class Spot:
    """One interval of a MEGC CSV: a prediction or a ground-truth row.

    Attributes:
        subject, video: the video it belongs to.
        onset, offset: first and last frame, inclusive.
        emotion: emotion label as written (any text; MEGC uses the 4 classes).
        kind: ``micro`` | ``macro`` | ``""`` (no type column).
        apex: apex frame or None.
        score: confidence or None (needed for mAP).
    """

    subject: str
    video: str
    onset: int
    offset: int
    emotion: str = ""
    kind: str = ""
    apex: int | None = None
    score: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS + ("",):
            raise ValueError(f"Spot.kind must be one of {KINDS} or '', got {self.kind!r}")

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.video)


def _parse_int(text: object, where: str, name: str) -> int:
    """A whole frame number; anything else names the file, line and column."""
    if text is None or (isinstance(text, str) and not text.strip()):
        raise ValueError(f"{where}: {name} is empty")
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} {text!r} is not a number") from None
    if not math.isfinite(value):  # inf / nan would overflow int() or pass every comparison
        raise ValueError(f"{where}: {name} {text!r} is not a finite frame number")
    if value != int(value):
        raise ValueError(f"{where}: {name} {text!r} is not a whole frame number")
    return int(value)


def _parse_score(text: object, where: str) -> float | None:
    """A finite confidence, or None when the cell is empty."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{where}: score {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: score {text!r} is not a finite number")
    return value


def _check_interval(onset: int, offset: int, where: str) -> None:
    """Onset ≤ offset (frames inclusive); a reversed interval is an error, not a spot."""
    if onset > offset:
        raise ValueError(f"{where}: onset {onset} > offset {offset} (swap them, or fix the row)")


def read_megc_csv(path: str | Path) -> list[Spot]:
    """Rows of a MEGC CSV; a missing column or a bad number is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"CSV file not found: {path} (check the path)")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip().lower() for c in (reader.fieldnames or [])]
        missing = [c for c in BASE_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"{path}: MEGC CSV needs columns {list(BASE_COLUMNS)}; "
                             f"missing {missing}")
        reader.fieldnames = columns
        out = []
        for number, row in enumerate(reader, 2):
            where = f"{path.name} line {number}"
            kind = (row.get("type") or "").strip().lower()
            kind = {"micro-expression": "micro", "macro-expression": "macro"}.get(kind, kind)
            if kind not in KINDS + ("",):
                raise ValueError(f"{where}: type {row.get('type')!r} must be micro or macro")
            apex = (row.get("apex") or "").strip()
            score_value = _parse_score(row.get("score"), where)
            onset = _parse_int(row["onset"], where, "onset")
            offset = _parse_int(row["offset"], where, "offset")
            apex_value = _parse_int(apex, where, "apex") if apex else None
            _check_interval(onset, offset, where)
            out.append(Spot(subject=(row["subject"] or "").strip(),
                            video=(row["video"] or "").strip(), onset=onset, offset=offset,
                            emotion=(row["emotion"] or "").strip(), kind=kind,
                            apex=apex_value, score=score_value))
    return out


def megc_csv_text(spots: Iterable[Spot]) -> str:
    """The MEGC CSV text of ``spots`` (see module doc for the columns)."""
    spots = list(spots)
    columns = list(BASE_COLUMNS)
    if any(s.kind for s in spots):
        columns.append("type")
    if any(s.apex is not None for s in spots):
        columns.append("apex")
    if any(s.score is not None for s in spots):
        columns.append("score")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for s in spots:
        values = {"subject": s.subject, "video": s.video, "onset": s.onset, "offset": s.offset,
                  "emotion": s.emotion, "type": s.kind,
                  "apex": "" if s.apex is None else s.apex,
                  "score": "" if s.score is None else repr(float(s.score))}
        writer.writerow([values[c] for c in columns])
    return buf.getvalue()


def write_megc_csv(spots: Iterable[Spot], path: str | Path) -> None:
    """Write ``spots`` as a MEGC CSV file."""
    Path(path).write_text(megc_csv_text(spots), encoding="utf-8")


def read_jsonl_events(path: str | Path, subject: str = "", video: str = "",
                      first_frame: int = 0) -> list[Spot]:
    """The final events of a fedn-live JSONL file (``stream.events.read_jsonl``) as spots.

    Args:
        path: JSONL file.
        subject, video: the video the stream was.
        first_frame: label number of stream index 0 (1 for CAS(ME)^2/SAMM-LV
            frame folders), added to the event frames.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"JSONL file not found: {path} (check the path)")
    return [Spot(subject=subject, video=video, onset=e.onset_frame + first_frame,
                 offset=e.offset_frame + first_frame, emotion=e.emotion, kind=e.kind,
                 apex=e.apex_frame + first_frame, score=float(e.score))
            for e in read_events(path)]
