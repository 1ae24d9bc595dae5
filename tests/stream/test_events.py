import io
import json

import pytest

from stream.events import (ConsoleSink, Event, JsonlSink, fan_out, read_events, read_jsonl,
                           status_record)
from stream.latency import LatencyStats


def _event(**kw):
    base = dict(onset_frame=10, apex_frame=14, offset_frame=20, onset_s=0.333, offset_s=0.667,
                kind="micro", emotion="positive", score=0.9,
                emotion_scores={"negative": 0.05, "positive": 0.9, "surprise": 0.03,
                                "others": 0.02}, emitted_frame=26, latency_ms=12.5)
    base.update(kw)
    return Event(**base)


def test_jsonl_round_trip(tmp_path):
    path = tmp_path / "e.jsonl"
    sink = JsonlSink(path)
    events = [_event(), _event(onset_frame=40, apex_frame=50, offset_frame=90, kind="macro",
                               emotion="surprise", truncated=True)]
    sink(status_record("face_found", 0))
    for e in events:
        sink(e.to_record())
    sink(events[0].to_record("event_start"))
    sink({"type": "summary", "frames_read": 3})
    sink.close()
    assert read_events(path) == events
    types = [r["type"] for r in read_jsonl(path)]
    assert types == ["status", "event", "event", "event_start", "summary"]


@pytest.mark.parametrize("line, match", [("{not json", "not JSON"),
                                         (json.dumps({"type": "weird"}), "not a fedn-live")])
def test_bad_jsonl_names_file_and_line(tmp_path, line, match):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(status_record("x", 0)) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=f"bad.jsonl:2: {match}"):
        list(read_jsonl(path))


@pytest.mark.parametrize("kw, match", [({"kind": "mega"}, "kind"), ({"emotion": "joy"}, "emotion"),
                                       ({"onset_frame": 30}, "onset_frame")])
def test_event_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        _event(**kw)


def test_console_and_fan_out():
    buf = io.StringIO()
    got = []
    emit = fan_out([ConsoleSink(buf), got.append])
    emit(_event().to_record())
    emit(status_record("face_lost", 7))
    emit({"type": "event_cancel", "id": 3, "track_id": 0, "frame": 40})
    emit({"type": "summary"})
    lines = buf.getvalue().splitlines()
    assert len(lines) == 3 and "micro" in lines[0] and "positive" in lines[0]
    assert "face_lost" in lines[1] and "3 withdrawn" in lines[2]
    assert len(got) == 4


def test_latency_percentiles_and_bound():
    stats = LatencyStats(max_samples=100)
    for v in range(1000):
        stats.add("face", float(v))
    s = stats.summary()["face"]
    assert s["n"] == 100  # bounded memory: only the newest samples kept
    assert s["p50"] == pytest.approx(949.5) and s["p99"] >= s["p95"] >= s["p50"]
