"""The one JSON form of the records a run emits, and the sinks that take them.

One JSON object per line (design §5); the record types are the frozen
dataclasses of :mod:`engine.contracts`:

* ``{"type": "event", ...}`` — a final expression interval (:class:`Event` fields);
* ``{"type": "event_start", ...}`` — a provisional one (:class:`EventStart`);
* ``{"type": "event_cancel", "id", "track_id", "frame"}`` — a provisional one withdrawn;
* ``{"type": "status", "status": ..., "frame": ..., ...}`` — face found/lost, drops, end;
* ``{"type": "summary", ...}`` — the last line of a run (:class:`Summary` fields).

:func:`to_json` and :func:`from_json` are the only serializer and parser;
:func:`read_jsonl` the only JSONL reader. Sinks are callables taking one record.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from engine.contracts import Event, EventCancel, EventStart, Record, Status, Summary

#: JSON ``type`` of each record class, in schema order.
RECORD_TYPES: dict[str, type] = {"event": Event, "event_start": EventStart,
                                 "event_cancel": EventCancel, "status": Status,
                                 "summary": Summary}
_TYPE_OF = {cls: name for name, cls in RECORD_TYPES.items()}

Sink = Callable[[Record], None]


def record_type(record: Record) -> str:
    """The JSON ``type`` of a record (``"event"``, ``"event_start"``, ...)."""
    return _TYPE_OF[type(record)]


def to_json(record: Record) -> dict[str, Any]:
    """The JSON-ready dict of a record, with its ``type`` first."""
    if isinstance(record, Status):
        return {"type": "status", "status": record.status, "frame": record.frame,
                **record.detail}
    out = {"type": record_type(record), **asdict(record)}
    if isinstance(record, Summary):
        out["missing_stages"] = list(record.missing_stages)
    return out


def from_json(obj: dict[str, Any]) -> Record:
    """Inverse of :func:`to_json`; unknown keys of interval records are ignored.

    Raises:
        ValueError: not a fedn-live record, or a field is missing or invalid.
    """
    kind = obj.get("type") if isinstance(obj, dict) else None
    cls = RECORD_TYPES.get(kind)
    if cls is None:
        raise ValueError(f"not a fedn-live record (type must be one of {tuple(RECORD_TYPES)})")
    if cls is Status:
        detail = {k: v for k, v in obj.items() if k not in ("type", "status", "frame")}
        try:
            return Status(obj["status"], obj["frame"], detail)
        except KeyError as exc:
            raise ValueError(f"status record without {exc.args[0]!r}") from None
    names = {f.name for f in fields(cls)}
    missing = [f.name for f in fields(cls) if f.name not in obj
               and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ValueError(f"{kind} record lacks {', '.join(map(repr, missing))}")
    values = {k: v for k, v in obj.items() if k in names}
    if cls is Summary and "missing_stages" in values:
        values["missing_stages"] = tuple(values["missing_stages"])
    return cls(**values)


def read_jsonl(path: str | Path) -> Iterator[Record]:
    """Records of a JSONL file; a malformed line is an error naming file and line."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield from_json(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from None


def read_events(path: str | Path) -> list[Event]:
    """The final events of a JSONL file, in file order."""
    return [r for r in read_jsonl(path) if isinstance(r, Event)]


class SinkError(OSError):
    """A sink could not write (disk full, file gone); the message is one line for the user."""


class JsonlSink:
    """Writes records to a JSONL file, one line each, flushed per line (thread-safe).

    The file is created (or truncated) by the first record, not before: a run that
    fails on its source or engine leaves an existing file as it was. The folder and
    the permission to write are checked at once.

    Raises:
        ValueError: the folder does not exist, or the path is a folder or not writable.
        SinkError: (from a call) a line could not be written, e.g. the disk is full.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        parent = self.path.parent
        if not parent.is_dir():
            raise ValueError(f"--events-out folder does not exist: {parent}")
        if self.path.is_dir():
            raise ValueError(f"--events-out is a folder: {self.path} (give a file name)")
        if not os.access(self.path if self.path.exists() else parent, os.W_OK):
            raise ValueError(f"--events-out is not writable: {self.path}")
        self._file: IO[str] | None = None
        self._failed = False
        self._lock = threading.Lock()

    def __call__(self, record: Record) -> None:
        line = json.dumps(to_json(record), separators=(",", ":"))
        with self._lock:
            try:
                if self._file is None:
                    self._file = open(self.path, "w", encoding="utf-8")
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                self._failed = True
                raise SinkError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                try:
                    self._file.close()
                except OSError:  # the write that failed already said why
                    if not self._failed:
                        raise
                self._file = None


class ConsoleSink:
    """Prints one human line per event / status record (summary is printed by the CLI)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout

    def __call__(self, record: Record) -> None:
        if isinstance(record, EventCancel):
            line = f"[cancel] provisional event {record.id} withdrawn at frame {record.frame}"
        elif isinstance(record, (Event, EventStart)):
            tag = "EVENT" if isinstance(record, Event) else "start"
            line = (f"[{tag:6}] {record.kind:5} {record.emotion:8} "
                    f"frames {record.onset_frame}-{record.offset_frame} "
                    f"({record.onset_s:.2f}-{record.offset_s:.2f} s) score {record.score:.2f}")
            if isinstance(record, Event):
                line += f" latency {record.latency_ms:.0f} ms"
        elif isinstance(record, Status):
            line = f"[status] frame {record.frame}: {record.status}" + (
                f" {record.detail}" if record.detail else "")
        else:
            return
        print(line, file=self.stream, flush=True)


class RecordList(list):
    """A sink that keeps every record in order (a list you can call)."""

    def __call__(self, record: Record) -> None:
        self.append(record)


def fan_out(sinks: Iterable[Sink]) -> Sink:
    """One sink that forwards each record to all of ``sinks``."""
    sinks = list(sinks)

    def emit(record: Record) -> None:
        for sink in sinks:
            sink(record)

    return emit
