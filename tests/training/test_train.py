"""Training loop (tiny config, planted data), checkpoints, resume, offline-vs-streaming outputs."""
from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.config import ModelConfig
from engine.decode import pyramid_points
from engine.model import FEDN
from tests.engine.streaming_reference import StreamingFEDN
from tests.training.planted import planted_video
from training.infer import detect_video, encode_video, ground_truth, predict
from training.train import TrainConfig, load_config, lr_lambda, run

CFG = ModelConfig(window=64, hop=8, segment=2, attn_window=4, levels=3, channels=16, heads=2,
                  feat_dim=16, enc_channels=(4, 8), enc_grid=2, dropout=0.0,
                  gain_ref=0.0)  # no input gain: planted flow, and its cost stays out of the tests


def _tc(tmp_path, **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / "run"), encoder_steps=6, encoder_clip=16, encoder_batch=4,
                epochs=2, steps_per_epoch=5, batch=4, warmup=2, progress=False,
                thresholds=(0.05, 0.3))
    return TrainConfig(**{**base, **kw})


def test_whole_video_pass_equals_streaming_hops():
    """Offline evaluation relies on this: the bounded look-back makes both agree."""
    torch.manual_seed(0)
    model = FEDN(CFG).eval()
    item = planted_video("a_1", n=200, size=64)
    feats = encode_video(model, item.flow, item.valid)
    whole = detect_video(model.detector, feats, CFG, model.encoder.no_face.detach())
    stream = StreamingFEDN(model)
    pts_whole = {tuple(p): i for i, p in enumerate(pyramid_points(whole["act_since"].shape[0],
                                                                   CFG.levels))}
    pts_win = pyramid_points(CFG.window, CFG.levels)
    checked = 0
    for t in range(item.n_frames):
        res = stream.push(item.flow[t], bool(item.valid[t]))
        if res is None:
            continue
        out, base = res
        for j, (pos, level) in enumerate(pts_win):
            frame = base + pos
            if pos >= CFG.window - CFG.hop and frame >= 0:
                i = pts_whole[(frame, level)]
                np.testing.assert_allclose(out["cls_logits"][0, j], whole["cls_logits"][i],
                                           atol=1e-4)
                np.testing.assert_allclose(out["reg"][0, j], whole["reg"][i], atol=1e-3)
                checked += 1
        lo = max(0, base + CFG.window - CFG.hop)
        np.testing.assert_allclose(out["act_logits"][0, -CFG.hop:][lo - base - CFG.window
                                                                    + CFG.hop:],
                                   whole["act_logits"][lo:base + CFG.window], atol=1e-4)
    assert checked > 30


def test_validation_on_threads_matches_serial():
    """Validation runs videos on threads: same outputs as one by one, model mode restored
    (a thread must never flip the shared model back to training mode mid-way)."""
    from training.infer import video_outputs

    torch.manual_seed(0)
    model = FEDN(replace(CFG, dropout=0.2)).train()
    items = [planted_video(f"v{i}_1", seed=i, n=150 + 40 * i, size=32) for i in range(4)]
    serial = video_outputs(model, items, workers=1)
    assert model.training
    threaded = video_outputs(model, items, workers=2)
    assert model.training and model.encoder.training
    for a, b in zip(serial, threaded):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_lr_schedule_warms_up_then_decays():
    f = lr_lambda(10, 100)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) < 0.6 and f(99) < f(55)
    assert f(100) == pytest.approx(0.05)


def test_tiny_run_writes_everything_and_resumes(tmp_path):
    from engine.runtime import load_model

    torch.manual_seed(0)
    train = [planted_video(f"s{i}_1", seed=i, size=32) for i in range(3)]
    val = [planted_video("v_1", seed=9, size=32)]
    tc = _tc(tmp_path)
    summary = run(CFG, tc, train_items=train, val_items=val)
    out = tmp_path / "run"
    for name in ("best.pt", "last.pt", "log.csv", "curves.png", "summary.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [r["stage"] for r in rows].count("B") == 2 and rows[0]["stage"] == "A"
    model = load_model(out / "best.pt", log=lambda s: None)
    assert model.cfg.window == CFG.window and model.cfg.score_thresh in tc.thresholds
    assert summary["best"]["epoch"] in (1, 2)
    # resume: two more epochs continue the log and the schedule
    summary2 = run(CFG, replace(tc, epochs=4), resume=True, train_items=train, val_items=val)
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows if r["stage"] == "B"] == [1, 2, 3, 4]
    # stage C (end to end) after B; the encoder changes, the checkpoint still loads
    enc_before = model.encoder.convs[0].weight.detach().clone()
    run(CFG, replace(tc, epochs=4, e2e_epochs=1, e2e_steps_per_epoch=3, e2e_batch=2),
        resume=True, train_items=train, val_items=val)
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [(r["stage"], int(r["epoch"])) for r in rows if r["stage"] in "BC"][-1] == ("C", 5)
    last = torch.load(out / "last.pt", weights_only=False)
    assert last["stage"] == "C"
    assert not torch.equal(last["model"]["encoder.convs.0.weight"], enc_before)
    from training.run_log import history_from_log, plot_curves

    hist = history_from_log(out / "log.csv")
    assert [h["stage"] for h in hist][-1] == "C" and hist[-1]["epoch"] == 5.0
    plot_curves(hist, tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 1000
    secs = [float(r["seconds"]) for r in rows if r["stage"] == "B"]
    assert secs == sorted(secs) and summary2["train_seconds"] >= secs[-1]  # time accumulates


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    """Batches are made ahead on a second thread (training.prefetch); the sampler and RNG
    states saved at an epoch's end must still be those of a serial loop, so a run killed
    after an end-to-end epoch and resumed ends with exactly the weights of an unbroken run."""
    import training.train as train_mod

    train = [planted_video(f"s{i}_1", seed=i, size=32) for i in range(3)]
    val = [planted_video("v_1", seed=9, size=32)]
    kw = dict(e2e_epochs=2, e2e_steps_per_epoch=3, e2e_batch=2, flow_noise=0.1)
    torch.manual_seed(0)
    run(CFG, _tc(tmp_path / "a", **kw), train_items=train, val_items=val)
    whole = torch.load(tmp_path / "a" / "run" / "last.pt", weights_only=False)["model"]

    real = train_mod.evaluate_val
    calls = []

    def killed_at_fourth(*a, **k):  # validations: B1, B2, C1, then the kill in C2
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(train_mod, "evaluate_val", killed_at_fourth)
    torch.manual_seed(0)
    tc = _tc(tmp_path / "b", **kw)
    with pytest.raises(KeyboardInterrupt):
        run(CFG, tc, train_items=train, val_items=val)
    monkeypatch.setattr(train_mod, "evaluate_val", real)
    run(CFG, tc, resume=True, train_items=train, val_items=val)
    resumed = torch.load(tmp_path / "b" / "run" / "last.pt", weights_only=False)["model"]
    assert whole.keys() == resumed.keys()
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k


def test_learns_planted_events(tmp_path):
    """A short run on planted motion bumps finds them on a held-out planted video."""
    torch.manual_seed(0)
    train = [planted_video(f"s{i}_1", seed=i, size=32) for i in range(4)]
    val = [planted_video("v_1", seed=11, size=32)]
    tc = _tc(tmp_path, encoder_steps=60, epochs=5, steps_per_epoch=30, batch=8, lr=5e-3,
             encoder_lr=5e-3, thresholds=(0.05, 0.1, 0.2, 0.3, 0.4), micro_frac=0.5)
    summary = run(CFG, tc, train_items=train, val_items=val)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    losses = [float(r["loss"]) for r in rows if r["stage"] == "B"]
    assert losses[-1] < 0.6 * losses[0]
    assert summary["best"]["f1"] >= 0.3  # an untrained model finds nothing (F1 ~0)
    from engine.runtime import load_model

    model = load_model(tmp_path / "run" / "best.pt", log=lambda s: None)
    pred = predict(model, val)
    assert pred and all(p.score >= model.cfg.score_thresh for p in pred)
    assert len(ground_truth(val)) == 3


def test_appearance_fusion_finds_held_expressions_flow_cannot_see(tmp_path):
    """Ablation in miniature: the events have no motion at all, only a held change in the
    appearance input. Flow only finds nothing; with appearance fusion (same data, same seed)
    the model finds them, offline and through the streaming spotter."""
    from engine.runtime import Engine, load_model
    from training.infer import streaming_spots

    events = ((60, 120, "macro", "positive"), (250, 330, "macro", "negative"),
              (400, 450, "macro", "surprise"))  # held 1.7-2.7 s

    def data(seed: int):
        return planted_video(f"s{seed}_1", seed=seed, size=64, amp=0.0, events=events,
                             appearance=0.4)

    train, val = [data(i) for i in range(4)], [data(11)]
    tc = dict(encoder_steps=60, epochs=5, steps_per_epoch=30, batch=8, lr=5e-3,
              encoder_lr=5e-3, thresholds=(0.05, 0.1, 0.2, 0.3, 0.4), e2e_epochs=1,
              e2e_steps_per_epoch=5, e2e_batch=4)
    f1 = {}
    for name, dim in (("flow", 0), ("fused", 14)):
        torch.manual_seed(0)
        summary = run(replace(CFG, appearance_dim=dim), _tc(tmp_path / name, **tc),
                      train_items=train, val_items=val)
        f1[name] = summary["best"]["f1"]
    assert f1["flow"] < 0.1 and f1["fused"] >= 0.4, f1  # seen: 0.0 and 0.55
    model = load_model(tmp_path / "fused" / "run" / "best.pt", log=lambda s: None)
    assert model.cfg.appearance_dim == 14
    with Engine.load("torch", model=model, log=lambda s: None) as eng:
        counts: dict[str, int] = {}
        spots = streaming_spots(eng, val, provisional=counts)
    assert sum(1 for s in spots if s.kind == "macro") >= 2
    assert counts["starts"] >= 1 and 0 <= counts["withdrawn"] <= counts["starts"]


def test_config_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {nope: 1}\n")
    with pytest.raises(ValueError, match="nope"):
        load_config(bad)
    bad.write_text("model: {window: 60}\n")
    with pytest.raises(ValueError, match="window"):
        load_config(bad)
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_load():
    cfg, tc = load_config("training/configs/default.yaml")
    assert cfg.window % cfg.max_stride == 0 and tc.epochs > 0
    need = max(lb + (1 if lvl else 0) for lvl, lb in enumerate(cfg.lookback))
    assert need <= cfg.window - cfg.hop
