"""The shipped demo clip: short, small, a test identity, labelled micro and macro events."""
from __future__ import annotations

import pytest

from training.datasets.readers import read_synthme
from training.synth import faces
from training.synth.demo import DEMO_DIR, DEMO_FACE, SCRIPT


def test_demo_clip_and_labels():
    import cv2

    mp4, labels = DEMO_DIR / "demo.mp4", DEMO_DIR / "demo_labels.csv"
    assert mp4.stat().st_size <= 3 * 2 ** 20
    cap = cv2.VideoCapture(str(mp4))
    n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS)
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (360, 640, 3) and n / fps <= 30
    anns = read_synthme(labels)
    assert len(anns) == len(SCRIPT)
    assert {a.kind for a in anns} == {"micro", "macro"}
    assert {a.emotion for a in anns} == {"negative", "positive", "surprise", "others"}
    assert all(0 <= a.onset < a.apex < a.offset < n for a in anns)
    assert all(a.video == "demo" for a in anns)
    assert all((a.seconds <= 0.5) == (a.kind == "micro") for a in anns)
    assert faces.load(DEMO_FACE).split == "test"
    assert DEMO_FACE not in faces.photos("train")


@pytest.mark.slow
def test_demo_is_reproducible(tmp_path):
    from training.synth.demo import write_demo

    _, labels = write_demo(tmp_path)
    assert labels.read_text() == (DEMO_DIR / "demo_labels.csv").read_text()


@pytest.mark.slow
def test_demo_events_stand_out_in_the_pipeline_flow():
    """The project's face tracker + flow stage see every labelled demo event."""
    import csv

    import numpy as np

    from stream.face import FaceTracker
    from stream.flow import FlowStage
    from stream.sources import open_source

    tracker, flow = FaceTracker(), FlowStage()
    p99, found = [], 0
    with open_source("demo") as src:
        while (frame := src.read()) is not None:
            update = tracker.update(frame)
            found += update.found
            ff = flow.update(update.primary, frame.index, frame.t_capture)
            f = ff.flow.astype(np.float32)
            p99.append(np.percentile(np.hypot(f[0], f[1]), 99) if ff.valid else np.nan)
    p99 = np.array(p99)
    assert found >= 0.95 * len(p99)
    with open(DEMO_DIR / "demo_labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    inside = np.zeros(len(p99), bool)
    for r in rows:
        inside[int(r["onset"]):int(r["offset"]) + 7] = True
    background = np.nanpercentile(p99[~inside], 95)
    for r in rows:
        peak = np.nanmax(p99[int(r["onset"]):int(r["offset"]) + 7])
        assert peak > 1.5 * background, (r, peak, background)
