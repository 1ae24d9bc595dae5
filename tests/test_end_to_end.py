"""End to end: run_live.py on the shipped SynthME demo clip with the shipped weights."""
from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from stream.megc_csv import read_jsonl_events, read_megc_csv
from stream.metrics import megc_spotting

DEMO_LABELS = ROOT / "stream" / "demo" / "demo_labels.csv"


def test_demo_clip_spotting_f1(tmp_path):
    out = tmp_path / "demo.jsonl"
    proc = subprocess.run([sys.executable, str(ROOT / "run_live.py"), "--source", "demo",
                           "--events-out", str(out), "--quiet"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["missing_stages"] == []
    assert summary["frames_processed"] == summary["frames_read"] > 0
    gt = read_megc_csv(DEMO_LABELS)
    subject, video = gt[0].subject, gt[0].video
    pred = read_jsonl_events(out, subject, video)
    counts = megc_spotting(gt, pred)
    assert counts["overall"].f1 >= 0.8, {k: (c.tp, c.fp, c.fn) for k, c in counts.items()}
    # every provisional start was later finalized or withdrawn
    starts = {r["id"] for r in records if r["type"] == "event_start"}
    closed = {r["id"] for r in records if r["type"] in ("event", "event_cancel")}
    assert starts <= closed
