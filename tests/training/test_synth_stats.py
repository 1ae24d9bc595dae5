"""SynthME statistics: stats.json agrees with the real label files; sampling matches them."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from engine.config import EMOTIONS, MICRO_MAX_S
from training.datasets.readers import annotations_dir, load_real
from training.synth import stats as synth_stats
from training.synth.config import SynthConfig
from training.synth.timeline import Sampler, build_timeline, sample_events

pytestmark = pytest.mark.skipif(not annotations_dir().is_dir(),
                                reason="real label files not available")


@pytest.fixture(scope="module")
def stored() -> dict:
    return synth_stats.load()


@pytest.fixture(scope="module")
def real() -> dict:
    return {n: load_real(n) for n in ("casme2", "sammlv", "casme3", "casme3_blinks")}


def test_stats_json_is_what_the_script_derives(stored):
    assert synth_stats.compute() == stored, "stale stats.json: run python -m training.synth.stats"


def test_stats_json_counts_match_the_label_files(stored, real):
    for name in ("casme2", "sammlv", "casme3"):
        d = stored["datasets"][name]
        assert d["events"] == len(real[name])
        for kind in ("micro", "macro"):
            assert d["kinds"][kind]["events"] == sum(a.kind == kind for a in real[name])
    assert stored["blinks"]["blinks"] == len(real["casme3_blinks"])
    c2 = [a.seconds for a in real["casme2"] if a.kind == "micro" and a.offset_marked]
    assert stored["datasets"]["casme2"]["kinds"]["micro"]["duration_s"]["q"][50] == \
        pytest.approx(np.median(c2), abs=1e-3)


def _real_durations(real: dict, kind: str) -> np.ndarray:
    lo, hi = (0.0, MICRO_MAX_S) if kind == "micro" else (MICRO_MAX_S, synth_stats.MACRO_MAX_S)
    vals = [a.seconds for n in ("casme2", "sammlv") for a in real[n]
            if a.kind == kind and a.offset_marked]
    return np.array([v for v in vals if lo <= v <= hi])


@pytest.mark.parametrize("kind", ["micro", "macro"])
def test_sampled_durations_match_real(stored, real, kind):
    sampler = Sampler(stored["generator"], np.random.default_rng(0))
    draws = np.array([sampler.duration_s(kind) for _ in range(3000)])
    ref = _real_durations(real, kind)
    assert sps.ks_2samp(draws, ref).pvalue > 0.01
    if kind == "micro":
        assert draws.max() <= MICRO_MAX_S
    else:
        assert draws.min() >= MICRO_MAX_S and draws.max() <= synth_stats.MACRO_MAX_S
    # a clearly different distribution is rejected: the test has power
    assert sps.ks_2samp(draws * 1.3, ref).pvalue < 0.01


def test_sampled_kinds_and_emotions_match_real(stored, real):
    sampler = Sampler(stored["generator"], np.random.default_rng(1))
    kinds = [sampler.kind() for _ in range(4000)]
    pooled = [a for n in ("casme2", "sammlv") for a in real[n]]
    p_real = sum(a.kind == "micro" for a in pooled) / len(pooled)
    p = kinds.count("micro") / len(kinds)
    assert abs(p - p_real) < 4 * np.sqrt(p_real * (1 - p_real) / len(kinds))
    emos = [sampler.emotion("macro") for _ in range(4000)]
    ref = [a.emotion for a in real["casme2"] if a.kind == "macro" and a.emotion]
    observed = np.array([emos.count(e) for e in EMOTIONS])
    expected = np.array([ref.count(e) for e in EMOTIONS]) / len(ref) * len(emos)
    assert sps.chisquare(observed, expected).pvalue > 0.001


def test_generated_events_follow_the_sampler(stored):
    cfg = SynthConfig()
    gen = stored["generator"]
    events = []
    for seed in range(40):
        video = sample_events(30 * 60 * 5, cfg, Sampler(gen, np.random.default_rng(seed)),
                              np.random.default_rng(seed + 1000))
        for a, b in zip(video, video[1:]):  # no overlap, at least min_gap apart
            assert b.onset - a.offset >= gen["min_gap_s"] * cfg.fps - 1
        events += video
    assert len(events) > 200
    for e in events:
        assert e.onset < e.apex < e.offset
        n = e.offset - e.onset + 1
        if e.kind == "micro":
            assert n <= 15 and cfg.micro_amp[0] <= e.amplitude <= cfg.micro_amp[1]
        else:
            assert n >= 15 and cfg.macro_amp[0] <= e.amplitude <= cfg.macro_amp[1]
    frac = np.mean([e.kind == "micro" for e in events])
    assert abs(frac - gen["p_micro"]) < 0.08


def test_blinks_use_real_durations(stored, real):
    cfg = SynthConfig()
    durations = []
    for seed in range(30):
        tl = build_timeline(30 * 120, cfg, stored["generator"], seed)
        durations += [(d.offset - d.onset + 1) / 30 for d in tl.distractors if d.kind == "blink"]
    ref = np.array([a.seconds for a in real["casme3_blinks"]])
    ref = np.minimum(np.maximum(ref, 0.1), 1.0)  # generator: >= 3 frames, <= 1 s
    assert len(durations) > 100
    assert abs(np.median(durations) - np.median(ref)) < 0.05
