import io
import json
from dataclasses import replace

import pytest

from engine.contracts import Event, EventCancel, EventStart, Status, Summary
from stream.events import (ConsoleSink, JsonlSink, RecordList, fan_out, from_json, read_events,
                           read_jsonl, to_json)
from stream.latency import LatencyStats


def _event(cls=Event, **kw):
    base = dict(onset_frame=10, apex_frame=14, offset_frame=20, onset_s=0.333, offset_s=0.667,
                kind="micro", emotion="positive", score=0.9,
                emotion_scores={"negative": 0.05, "positive": 0.9, "surprise": 0.03,
                                "others": 0.02}, emitted_frame=26, latency_ms=12.5)
    base.update(kw)
    return cls(**base)


RECORDS = [Status("face_found", 0, {"t_s": 0.0, "track_id": 0}),
           _event(EventStart, id=4, latency_ms=0.0),
           _event(id=4),
           _event(onset_frame=40, apex_frame=50, offset_frame=90, kind="macro",
                  emotion="surprise", truncated=True),
           EventCancel(id=5, track_id=1, frame=60),
           Status("source_ended", 91),
           Summary("clip.mp4", "onnxruntime", "block", 91, 91, 0, 90, 75.2, 1.21, (),
                   {"face": {"p50": 7.0, "p95": 9.0, "p99": 11.0, "mean": 7.4, "n": 91}})]


def test_every_record_type_round_trips_through_json_and_jsonl(tmp_path):
    for record in RECORDS:
        assert from_json(json.loads(json.dumps(to_json(record)))) == record
    path = tmp_path / "e.jsonl"
    sink = JsonlSink(path)
    for record in RECORDS:
        sink(record)
    sink.close()
    assert list(read_jsonl(path)) == RECORDS
    assert read_events(path) == [RECORDS[2], RECORDS[3]]  # final events only, in order
    types = [json.loads(line)["type"] for line in path.read_text().splitlines()]
    assert types == ["status", "event_start", "event", "event", "event_cancel", "status",
                     "summary"]


def test_json_schema_is_flat_and_stable():
    assert to_json(RECORDS[0]) == {"type": "status", "status": "face_found", "frame": 0,
                                   "t_s": 0.0, "track_id": 0}
    assert to_json(RECORDS[4]) == {"type": "event_cancel", "id": 5, "track_id": 1, "frame": 60}
    event = to_json(RECORDS[2])
    assert list(event)[:4] == ["type", "onset_frame", "apex_frame", "offset_frame"]
    assert to_json(RECORDS[-1])["missing_stages"] == []


@pytest.mark.parametrize("line, match", [
    ("{not json", "not JSON"),
    (json.dumps({"type": "weird"}), "not a fedn-live"),
    (json.dumps({"type": "status", "frame": 3}), "status record without 'status'"),
    (json.dumps({"type": "status", "status": "exploded", "frame": 3}), "Status.status"),
    (json.dumps({"type": "summary", "frames_read": 3}),
     "summary record lacks 'source', 'engine', 'policy'"),
])
def test_bad_jsonl_names_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(to_json(Status("no_face", 0))) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl:2: {match}"):
        list(read_jsonl(path))


@pytest.mark.parametrize("cls", [Event, EventStart])
@pytest.mark.parametrize("kw, match", [({"kind": "mega"}, "kind"), ({"emotion": "joy"}, "emotion"),
                                       ({"onset_frame": 30}, "onset_frame")])
def test_interval_validation(cls, kw, match):
    with pytest.raises(ValueError, match=f"{cls.__name__}.*{match}|{match}"):
        _event(cls, **kw)


def test_event_and_event_start_are_distinct_types():
    start = _event(EventStart)
    assert not isinstance(start, Event) and to_json(start)["type"] == "event_start"
    assert replace(start, id=9).id == 9


def test_console_fan_out_and_record_list():
    buf = io.StringIO()
    got = RecordList()
    emit = fan_out([ConsoleSink(buf), got])
    for record in (RECORDS[2], Status("face_lost", 7), EventCancel(3, 0, 40), RECORDS[-1]):
        emit(record)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and "micro" in lines[0] and "positive" in lines[0]
    assert "face_lost" in lines[1] and "3 withdrawn" in lines[2]
    assert len(got) == 4 and got[-1] is RECORDS[-1]


def test_latency_percentiles_and_bound():
    stats = LatencyStats(max_samples=100)
    for v in range(1000):
        stats.add("face", float(v))
    s = stats.summary()["face"]
    assert s["n"] == 100  # bounded memory: only the newest samples kept
    assert s["p50"] == pytest.approx(949.5) and s["p99"] >= s["p95"] >= s["p50"]
