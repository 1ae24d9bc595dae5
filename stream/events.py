"""Events, status and summary records, their JSON form, and the sinks that take them.

One JSON object per line (design §5):

* ``{"type": "event", ...}`` — a final expression interval (:class:`Event` fields);
* ``{"type": "event_start", ...}`` — a provisional one, offset not yet known;
* ``{"type": "event_cancel", ...}`` — a provisional one withdrawn;
* ``{"type": "status", "status": ..., ...}`` — face lost/found, source ended, drops;
* ``{"type": "summary", ...}`` — the last line of a run.

Sinks are callables taking one record (a dict with a ``type``).
"""
from __future__ import annotations

import json
import sys
import threading
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from engine.config import EMOTIONS, KINDS

#: Record types a JSONL file may hold.
RECORD_TYPES = ("event", "event_start", "event_cancel", "status", "summary")

Sink = Callable[[dict], None]


@dataclass(frozen=True)
class Event:
    """A spotted expression interval (design §3).

    Frames are stream indices (from 0), intervals inclusive. ``latency_ms`` is
    emit time − capture time of ``offset_frame``.
    """

    onset_frame: int
    apex_frame: int
    offset_frame: int
    onset_s: float
    offset_s: float
    kind: str  # "micro" | "macro"
    emotion: str  # "negative" | "positive" | "surprise" | "others"
    score: float
    emotion_scores: dict[str, float] = field(default_factory=dict)
    emitted_frame: int = -1
    latency_ms: float = 0.0
    track_id: int = 0
    truncated: bool = False  # the stream ended while the expression was under way
    id: int = -1  # per track: an event_start and the event (or event_cancel) it becomes share it

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Event.kind must be one of {KINDS}, got {self.kind!r}")
        if self.emotion not in EMOTIONS:
            raise ValueError(f"Event.emotion must be one of {EMOTIONS}, got {self.emotion!r}")
        if not self.onset_frame <= self.offset_frame:
            raise ValueError(f"Event onset_frame {self.onset_frame} > offset_frame "
                             f"{self.offset_frame}")

    def to_record(self, type_: str = "event") -> dict:
        """The JSON-ready dict of this event with its record ``type``."""
        return {"type": type_, **asdict(self)}

    @classmethod
    def from_record(cls, record: dict) -> "Event":
        """Inverse of :meth:`to_record` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in names})


def status_record(status: str, frame: int, **extra: Any) -> dict:
    """A ``status`` record (e.g. ``face_lost``, ``face_found``, ``source_ended``, ``dropped``)."""
    return {"type": "status", "status": status, "frame": frame, **extra}


class JsonlSink:
    """Appends records to a JSONL file, one line each, flushed per line (thread-safe)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            raise ValueError(f"--events-out folder does not exist: {self.path.parent}")
        self._file: IO[str] = open(self.path, "w", encoding="utf-8")
        self._lock = threading.Lock()

    def __call__(self, record: dict) -> None:
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


class ConsoleSink:
    """Prints one human line per event / status record (summary is printed by the CLI)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, record: dict) -> None:
        kind = record.get("type")
        if kind == "event_cancel":
            line = f"[cancel] provisional event {record['id']} withdrawn at frame {record['frame']}"
        elif kind in ("event", "event_start"):
            tag = "EVENT" if kind == "event" else "start"
            line = (f"[{tag:6}] {record['kind']:5} {record['emotion']:8} "
                    f"frames {record['onset_frame']}-{record['offset_frame']} "
                    f"({record['onset_s']:.2f}-{record['offset_s']:.2f} s) "
                    f"score {record['score']:.2f}")
            if kind == "event":
                line += f" latency {record['latency_ms']:.0f} ms"
        elif kind == "status":
            extra = {k: v for k, v in record.items() if k not in ("type", "status", "frame")}
            line = f"[status] frame {record['frame']}: {record['status']}" + (
                f" {extra}" if extra else "")
        else:
            return
        print(line, file=self.stream, flush=True)


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Records of a JSONL file; a malformed line is an error naming file and line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            if not isinstance(record, dict) or record.get("type") not in RECORD_TYPES:
                raise ValueError(f"{path}:{number}: not a fedn-live record "
                                 f"(type must be one of {RECORD_TYPES})")
            yield record


def read_events(path: str | Path) -> list[Event]:
    """The final events (``type == "event"``) of a JSONL file, in file order."""
    return [Event.from_record(r) for r in read_jsonl(path) if r["type"] == "event"]


def fan_out(sinks: Iterable[Sink]) -> Sink:
    """One sink that forwards each record to all of ``sinks``."""
    sinks = list(sinks)

    def emit(record: dict) -> None:
        for sink in sinks:
            sink(record)

    return emit
