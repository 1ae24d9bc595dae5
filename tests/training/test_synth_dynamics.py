"""SynthME expression dynamics (issue 15 item 4): real rise / hold / release phases, long
macros, back-to-back repeats, distractors on expressions, truncated labels, scene cuts."""
from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest

from engine.config import MICRO_MAX_S
from training.datasets.readers import annotations_dir, load_real
from training.synth import faces
from training.synth import stats as synth_stats
from training.synth.config import OVERLAPS, SynthConfig
from training.synth.dynamics import CUT_MARGIN_S
from training.synth.generate import (VideoSpec, generate, iter_frames, make_video_scenes)
from training.synth.render import render_frame
from training.synth.timeline import AU_COLUMN, Sampler, build_timeline

FPS = 30
#: every extra off: what the dynamics options are compared against
NO_EXTRAS = replace(SynthConfig(), repeat_p=0.0, **{k: 0.0 for k in OVERLAPS})


@pytest.fixture(scope="module")
def gen() -> dict:
    return synth_stats.load()["generator"]


def _events(cfg: SynthConfig, gen: dict, seeds=range(40), n=FPS * 120):
    return [e for s in seeds for e in build_timeline(n, cfg, gen, s).events]


@pytest.mark.skipif(not annotations_dir().is_dir(), reason="real label files not available")
def test_phase_statistics_follow_the_labels_and_the_hold_assumption():
    """rise = apex - onset; release = min(apex -> offset, rise); hold = the rest."""
    stored = synth_stats.load()
    for name in ("casme2", "sammlv", "casme3"):
        for kind in ("micro", "macro"):
            rows = [a for a in load_real(name) if a.kind == kind and a.offset_marked
                    and a.apex is not None and a.offset > a.onset]
            ph = np.array(synth_stats.phases_s(rows))
            assert len(ph) == len(rows) > 0
            total = np.array([(a.offset - a.onset) / a.fps for a in rows])
            assert np.allclose(ph.sum(1), total)  # the three phases tile onset..offset
            assert (ph[:, 2] <= ph[:, 0] + 1e-9).all() and (ph >= 0).all()
            q = stored["datasets"][name]["kinds"][kind]["phases"]
            assert q["hold_s"]["q"][50] == pytest.approx(np.median(ph[:, 1]), abs=1e-3)
    macro = stored["generator"]["phases"]["macro"]
    c3 = stored["datasets"]["casme3"]["kinds"]["macro"]["duration_s"]["q"]
    assert macro["n"] > 3000 and macro["duration_q"][90] > 4.0  # CAS(ME)^3 long macros in
    assert macro["duration_q"][90] < c3[90]  # ... weighted equally with the two others


def test_sampled_phases_match_the_pool_and_macros_last_up_to_the_cap(gen):
    sampler = Sampler(gen, np.random.default_rng(0))
    d = np.array([sampler.phases("macro", 30.0)[0] for _ in range(4000)])
    q = np.asarray(gen["phases"]["macro"]["duration_q"])
    for p in (10, 50, 90):
        assert np.quantile(d, p / 100) == pytest.approx(q[p], rel=0.1)
    capped = np.array([sampler.phases("macro", 6.0)[0] for _ in range(2000)])
    assert capped.max() <= 6.0 and capped.min() >= MICRO_MAX_S
    micro = np.array([sampler.phases("micro", 6.0)[0] for _ in range(500)])
    assert micro.max() <= MICRO_MAX_S
    real = [e for e in _events(NO_EXTRAS, gen) if e.kind == "macro"]
    old = [e for e in _events(replace(NO_EXTRAS, dynamics="v1"), gen) if e.kind == "macro"]
    seconds = lambda es: np.array([(e.offset - e.onset + 1) / FPS for e in es])  # noqa: E731
    assert seconds(real).max() > 6.0 and seconds(real).max() <= NO_EXTRAS.macro_max_s
    assert seconds(old).max() <= 4.0  # v1: the truncated 0.5-4 s pool
    holds = np.array([e.hold / FPS for e in real])
    assert holds.max() > 2.0 and np.quantile(holds, 0.9) > 0.8


@pytest.mark.skipif(not annotations_dir().is_dir(), reason="real label files not available")
@pytest.mark.parametrize("kind", ["micro", "macro"])
def test_sampled_rise_hold_release_match_the_real_pool(gen, kind):
    """The figure's comparison as a test: q50 / q90 of each phase, real pool (<= the cap)
    vs what the generator draws; the v1 generator's hold is far too short."""
    from training.synth.dynamics_figure import real_phases, sampled_phases

    real, w = real_phases(kind)
    keep = real[:, 0] <= SynthConfig().macro_max_s
    real, w = real[keep], w[keep]
    new = sampled_phases(kind, SynthConfig(), gen, n=3000)
    old = sampled_phases(kind, replace(SynthConfig(), dynamics="v1"), gen, n=3000)
    for col in range(4):  # duration, rise, hold, release
        for q in (50, 90):
            ref = synth_stats.weighted_quantiles(real[:, col], w)[q]
            got = np.percentile(new[:, col], q)
            assert abs(got - ref) <= max(0.05, 0.1 * ref), (kind, col, q, got, ref)
    ref_hold = synth_stats.weighted_quantiles(real[:, 2], w)[90]
    assert np.percentile(old[:, 2], 90) < 0.5 * ref_hold


def test_the_apex_is_held_still(gen):
    """Amplitude is exactly constant over the hold, and so are the rendered frames."""
    cfg = replace(NO_EXTRAS.without_distractors(), gap_scale=0.3)
    for seed in range(60):
        spec = VideoSpec(video="hopper_001", subject="hopper", photo="hopper",
                         n_frames=FPS * 40, seed=seed)
        tl, scenes, _ = make_video_scenes(spec, cfg, gen)
        long = [e for e in tl.events if e.hold >= FPS]
        if long:
            break
    e = long[0]
    col = AU_COLUMN[e.aus[0]]
    held = tl.amp[e.apex:e.apex + e.hold + 1, col]
    assert np.all(held == held[0]) and held[0] == pytest.approx(e.amplitude, rel=1e-4)
    assert tl.amp[e.apex - 1, col] < held[0] and tl.amp[e.apex + e.hold + 1, col] < held[0]
    assert 0 < e.offset - (e.apex + e.hold) <= e.apex - e.onset + 1  # release ~ rise
    a, b = (render_frame(scenes[0], tl, i) for i in (e.apex, e.apex + e.hold))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, render_frame(scenes[0], tl, e.onset))


def test_back_to_back_repeats_are_the_same_expression_each_labelled(gen):
    cfg = replace(NO_EXTRAS, repeat_p=1.0, repeat_count=(2, 2), gap_scale=0.5)
    runs = 0
    for seed in range(10):
        ev = build_timeline(FPS * 90, cfg, gen, seed).events
        # runs of 3 (2 repeats); only a run near the end can be cut short (no room)
        ev = [e for e in ev if e.offset < FPS * (90 - 14)]
        for a, b, c in zip(ev[::3], ev[1::3], ev[2::3]):
            runs += 1
            assert a.aus == b.aus == c.aus and a.emotion == b.emotion == c.emotion
            for x, y in ((a, b), (b, c)):
                gap = (y.onset - x.offset - 1) / FPS
                assert cfg.repeat_gap_s[0] - 0.05 <= gap <= cfg.repeat_gap_s[1] + 0.05
                assert abs((y.offset - y.onset) / (x.offset - x.onset) - 1) < 0.25
    assert runs >= 10
    # without the option, consecutive events are spaced by the real gaps, not repeated
    ev = _events(replace(cfg, repeat_p=0.0), gen, range(10), FPS * 60)
    same = sum(x.aus == y.aus and y.onset - x.offset < 1.6 * FPS for x, y in zip(ev, ev[1:]))
    assert same < 0.2 * len(ev)


@pytest.mark.parametrize("field,kind", [("talk_during_p", "talking"),
                                        ("turn_during_p", "head_turn"),
                                        ("occlusion_during_p", "occlusion")])
def test_distractors_placed_on_expressions_keep_the_label_and_name_it(gen, field, kind):
    cfg = replace(NO_EXTRAS, **{field: 1.0}, gap_scale=0.5)
    placed = 0
    for seed in range(4):
        on, off = (build_timeline(FPS * 60, c, gen, seed)
                   for c in (cfg, replace(cfg, **{field: 0.0})))
        assert on.events == off.events  # the labels stay
        assert [d for d in on.distractors if d.event < 0 and d.kind != kind] == \
            [d for d in off.distractors if d.kind != kind]
        for d in (d for d in on.distractors if d.event >= 0):
            assert d.kind == kind
            e = on.events[d.event]
            placed += d.onset <= e.offset and d.offset >= e.onset
            span = slice(max(d.onset, e.onset), min(d.offset, e.offset) + 1)
            if kind == "talking":
                assert (on.amp[span, AU_COLUMN["26"]] > off.amp[span, AU_COLUMN["26"]]).any()
            elif kind == "head_turn":
                assert np.abs(on.pose[span] - off.pose[span]).max() > 0.5
            else:
                assert on.occluder[span].max() > 0.2
        # the other kinds on as well: this kind's episodes are drawn the same (own streams)
        both = build_timeline(FPS * 60, replace(cfg, talk_during_p=1.0, turn_during_p=1.0,
                                                occlusion_during_p=1.0), gen, seed)
        assert [d for d in both.distractors if d.kind == kind and d.event >= 0] == \
            [d for d in on.distractors if d.event >= 0]
    assert placed >= 6


def test_face_leaving_mid_expression_truncates_the_label_at_the_last_visible_frame(gen):
    cfg = replace(NO_EXTRAS, out_of_frame_during_p=1.0, gap_scale=1.5)
    face_x, cut = 300.0, 0
    for seed in range(30):
        on = build_timeline(FPS * 60, cfg, gen, seed, face_x=face_x)
        off = build_timeline(FPS * 60, replace(cfg, out_of_frame_during_p=0.0), gen, seed,
                             face_x=face_x)
        for k, e in enumerate(on.events):
            if not e.truncated:
                continue
            cut += 1
            full = off.events[k]
            assert (e.onset, e.apex, e.end) == (full.onset, full.apex, full.offset)
            assert e.apex < e.offset < e.end
            x = face_x + on.pose[:, 0]
            assert 0 <= x[e.offset] <= cfg.width - 1  # visible at the label's last frame
            gone = x[e.offset + 1:e.end + 1]
            assert ((gone < 0) | (gone > cfg.width - 1)).all()  # never back before the end
            row = [d for d in on.distractors if d.event == k]
            assert [d.kind for d in row] == ["out_of_frame"] and row[0].onset <= e.offset
    assert cut >= 5


def test_mp4_set_writes_truncated_labels_cuts_and_distractor_labels(tmp_path, gen):
    """labels.csv (truncated column), distractors.csv (label, detail), videos.csv (cuts)."""
    cfg = replace(NO_EXTRAS, out_of_frame_during_p=1.0, scene_cut_per_min=4.0,
                  cut_new_identity=1.0, video_s=12.0, gap_scale=0.6)
    out = tmp_path / "set"
    generate(out, minutes=0.5, split="val", seed=4, fmt="mp4", cfg=cfg, progress=False)
    with open(out / "labels.csv", newline="") as f:
        labels = list(csv.DictReader(f))
    with open(out / "distractors.csv", newline="") as f:
        dis = list(csv.DictReader(f))
    with open(out / "videos.csv", newline="") as f:
        videos = {r["video"]: r for r in csv.DictReader(f)}
    truncated = [r for r in labels if r["truncated"] == "1"]
    assert truncated
    names = {f"{r['video']}_{i + 1}": r for v in videos
             for i, r in enumerate(r for r in labels if r["video"] == v)}
    for d in (d for d in dis if d["label"]):
        r = names[d["label"]]
        assert int(d["onset"]) <= int(r["offset"]) and int(d["offset"]) >= int(r["onset"])
    assert {names[d["label"]]["offset"] for d in dis if d["kind"] == "out_of_frame"
            and d["label"]} >= {r["offset"] for r in truncated}
    cuts = [d for d in dis if d["kind"] == "scene_cut"]
    assert cuts
    val = set(faces.photos("val"))
    for d in cuts:
        v = videos[d["video"]]
        assert d["detail"] in val and faces.load(d["detail"]).identity != v["subject"]
        assert f"{d['onset']}:{d['detail']}" in v["cuts"].split(";")


def test_scene_cut_is_a_hard_cut_clear_of_expressions(gen):
    cfg = replace(NO_EXTRAS.without_distractors(), scene_cut_per_min=6.0, cut_new_identity=0.0,
                  gap_scale=0.3)
    spec = VideoSpec(video="einstein_001", subject="einstein", photo="einstein",
                     n_frames=FPS * 15, seed=3)
    tl, frames = iter_frames(spec, cfg, gen)
    step, prev = [], None  # step[i]: mean |frame i+1 - frame i|
    for f in frames:
        small = f[::4, ::4].astype(np.int16)
        if prev is not None:
            step.append(np.abs(small - prev).mean())
        prev = small
    step = np.array(step)
    assert tl.cuts and [d.onset for d in tl.distractors if d.kind == "scene_cut"] == tl.cuts
    margin = int(np.ceil(CUT_MARGIN_S * FPS))
    for c in tl.cuts:
        assert all(c < e.onset - margin or c > e.offset + margin for e in tl.events)
    at_cut = step[[c - 1 for c in tl.cuts]]
    others = np.delete(step, [c - 1 for c in tl.cuts])
    assert at_cut.min() > 5 * max(others.max(), 0.1)
    # no cuts: a single scene, as before
    tl0, _ = iter_frames(spec, replace(cfg, scene_cut_per_min=0.0), gen)
    assert tl0.cuts == []


def test_same_seed_same_dynamics_and_v1_ignores_them(gen):
    every = replace(SynthConfig(), repeat_p=0.5, scene_cut_per_min=3.0,
                    **{k: 1.0 for k in OVERLAPS if k != "scene_cut_per_min"})
    a, b = (build_timeline(FPS * 60, every, gen, 9) for _ in range(2))
    assert a.events == b.events and a.distractors == b.distractors and a.cuts == b.cuts
    for name in ("amp", "pose", "occluder", "light"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
    v1_every = build_timeline(FPS * 60, replace(every, dynamics="v1"), gen, 9)
    v1_none = build_timeline(FPS * 60, replace(NO_EXTRAS, dynamics="v1"), gen, 9)
    assert v1_every.events == v1_none.events and v1_every.distractors == v1_none.distractors
    assert np.array_equal(v1_every.pose, v1_none.pose) and v1_every.cuts == []


@pytest.mark.parametrize("field,value", [("dynamics", "fast"), ("macro_max_s", 0.4),
                                         ("macro_max_s", 60.0), ("repeat_p", 1.5),
                                         ("occlusion_during_p", -0.1),
                                         ("repeat_gap_s", (1.0, 0.5)),
                                         ("scene_cut_per_min", -1.0)])
def test_dynamics_config_checks(field, value):
    with pytest.raises(ValueError, match=field):
        SynthConfig(**{field: value})
