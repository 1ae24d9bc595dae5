"""Engine section of ``make bench``: per-call latency of each available backend, side by side.

    python -m bench.engine [--frames 300] [--hops 60] [--threads 2]

For every backend that can run here (torch on CPU, ONNX Runtime on CPU, and on
an NVIDIA machine torch CUDA and TensorRT), the same model is timed on the
same inputs: the encoder per frame (one call, batch 1, as the stream does),
the detector per hop on a full window, and (where the backend has it) the
incremental detector per hop (``hop`` new frames + carried state: the live
path). Numbers are p50 / p99 in ms from the backends' own per-call timings,
after warm-up. :func:`bench_incremental` then puts incremental ÷ full window
per hop side by side at windows 128 and 256 (ONNX Runtime and torch, 1
thread, calls interleaved so both see the same load; median of many hops), and
:func:`bench_tracks` the detector's cost on a frame where the hops of 1, 2 and 4
face tracks fall due: one batched step call for all of them against one call
per track. ``python -m bench`` calls :func:`run`, which adds ``report["engine"]``.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

import numpy as np
import torch

from engine import runtime
from engine.backends import BackendError, percentiles_ms
from engine.backends.tensorrt import available as trt_available
from engine.backends.torch import available as torch_available

#: CPU targets from the engine issue (2 cores, ONNX Runtime), ms.
TARGETS_MS = {"encoder_per_frame": 1.5, "detector_per_hop": 5.0}


def bench_engine(eng, frames: int = 300, hops: int = 60, warmup: int = 10,
                 seed: int = 0) -> dict:
    """p50/p99 ms of ``eng.encode`` (1 frame) and ``eng.detect`` (1 window) per call."""
    rng = np.random.default_rng(seed)
    shape = tuple(eng.encoder.inputs[0].shape[1:])
    flow = rng.standard_normal((1,) + shape).astype(np.float16)
    window = rng.standard_normal((eng.window, eng.feat_dim)).astype(np.float32)
    hop = window[-eng.cfg.hop:]
    state = eng.initial_state() if eng.can_step else None
    valid = np.ones(1, bool)
    # a fused model's encoder reads the appearance input too (probs ‖ baseline delta)
    app = (rng.random((1, eng.cfg.appearance_dim)).astype(np.float32)
           if eng.cfg.appearance_dim else None)
    for _ in range(warmup):
        eng.encode(flow, valid, app)
        eng.detect(window)
        if state is not None:
            eng.detect_step(hop, state)
    for backend in (eng.encoder, eng.detector, eng.stepper):
        if backend is not None:
            backend.timings.clear()
    for _ in range(frames):
        eng.encode(flow, valid, app)
    for _ in range(hops):
        eng.detect(window)
        if state is not None:
            eng.detect_step(hop, state)
    out = {"encoder_per_frame_ms": percentiles_ms(eng.encoder.timings),
           "detector_per_hop_ms": percentiles_ms(eng.detector.timings)}
    if state is not None:
        out["detector_step_per_hop_ms"] = percentiles_ms(eng.stepper.timings)
    return out


def bench_incremental(windows: tuple[int, ...] = (128, 256), hops: int = 400,
                      threads: int = 1, log: Callable[[str], None] = print) -> dict:
    """Per-hop cost of the incremental detector ÷ the full-window one, per window size.

    The shipped weights (the detector's weights do not depend on the window, so
    the same ones run at every window here), ONNX graphs exported for each window into
    a temporary directory, and the torch modules; each pair of calls is
    interleaved over ``hops`` hops and the medians compared.
    """
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    from engine.backends.onnxruntime import OnnxRuntimeBackend
    from engine.checkpoint import load_model
    from engine.decode import OUTPUT_KEYS
    from engine.export import export_onnx, export_step
    from engine.model import FEDN
    from engine.model.incremental import IncrementalDetector

    torch.set_num_threads(threads)
    shipped = load_model(None, log=lambda m: None)
    rng = np.random.default_rng(0)
    section: dict = {"threads": threads, "hop": shipped.cfg.hop, "hops_timed": hops,
                     "target_ratio": 1 / 8, "windows": {}}
    for window in windows:
        cfg = replace(shipped.cfg, window=window)
        model = FEDN(cfg).eval()
        model.load_state_dict(shipped.state_dict())
        step = IncrementalDetector(model.detector).eval()
        feats = torch.from_numpy(rng.standard_normal((1, window, cfg.feat_dim))
                                 .astype(np.float32))
        hop = feats[:, -cfg.hop:].contiguous()
        state = step.initial_state(model.encoder.no_face)
        res: dict = {}
        with tempfile.TemporaryDirectory() as tmp:
            full_path = export_onnx(model.detector, {"features": feats},
                                    Path(tmp) / "detector.onnx", OUTPUT_KEYS)
            step_path = export_step(model.detector, cfg, Path(tmp) / "detector_step.onnx")
            with OnnxRuntimeBackend(full_path, threads=threads) as full_b, \
                    OnnxRuntimeBackend(step_path, threads=threads) as step_b:
                full_feed = {"features": feats.numpy()}
                step_feed = {"features": hop.numpy(), "state": state.numpy()}
                res["onnxruntime"] = _interleaved(lambda: full_b.infer(full_feed),
                                                  lambda: step_b.infer(step_feed), hops)
        with torch.inference_mode():
            res["torch"] = _interleaved(lambda: model.detector(feats), lambda: step(hop, state),
                                        max(hops // 4, 20))
        section["windows"][str(window)] = res
    log(f"detector per hop, incremental vs full window (ms, median; {threads} thread(s); "
        f"hop {shipped.cfg.hop}; target ratio <= 1/8):")
    for window, res in section["windows"].items():
        for name, r in res.items():
            log(f"  window {window:>4} {name:<12} full {r['full_ms']:7.3f}  incremental "
                f"{r['incremental_ms']:7.3f}  ratio {r['ratio']:.3f}   (CPU time: "
                f"{r['full_cpu_ms']:.3f} / {r['incremental_cpu_ms']:.3f} = {r['cpu_ratio']:.3f};"
                f" each in its own loop, cached: {r['warm_full_cpu_ms']:.3f} / "
                f"{r['warm_incremental_cpu_ms']:.3f} = {r['warm_cpu_ratio']:.3f})")
    return section


def bench_tracks(counts: tuple[int, ...] = (1, 2, 4), frames: int = 200,
                 log: Callable[[str], None] = print) -> dict:
    """Detector ms on a frame where ``n`` tracks' hops are due, batched and per track.

    The shipped model through ONNX Runtime (1 intra-op thread, as the live path runs
    the step): ``n`` streams of random features whose hops fall due together; per
    due frame, :func:`engine.streaming.detect_due` over all of them (one step call)
    and one call per track, interleaved; medians, decoding included (and the step
    calls alone, from the backend's timings). Per frame of the stream it is that
    / ``hop`` (one frame in ``hop`` carries the tracks' hops).
    """
    import os
    import time

    from engine.contracts import FlowFrame
    from engine.streaming import StreamingDetector, detect_due

    section: dict = {"threads": 1, "frames_timed": frames, "tracks": {}}
    with runtime.Engine.load("onnxruntime", threads=1, log=lambda m: None) as eng:
        hop, dim = eng.cfg.hop, eng.feat_dim
        rng = np.random.default_rng(0)
        flow = np.zeros((1, 1, 1), np.float16)  # not read: the features are given
        for n in counts:
            groups = [[StreamingDetector(eng, eng.cfg) for _ in range(n)] for _ in range(2)]
            times: tuple[list, list] = ([], [])  # detect_due: the step call(s) and decoding
            steps: tuple[list, list] = ([], [])  # the step call(s) alone
            calls = [0, 0]  # step calls made, batched / per track
            for f in range(frames * hop):
                feats = rng.standard_normal((n, dim)).astype(np.float32)
                for g, dets in enumerate(groups):
                    due = [d.push(FlowFrame(f, f / 30, flow, True), feats[i])
                           for i, d in enumerate(dets)]
                    if not all(due):
                        continue
                    eng.stepper.timings.clear()
                    t0 = time.perf_counter()
                    if g == 0:
                        detect_due(dets)
                    else:
                        for d in dets:
                            detect_due([d])
                    if f >= 10 * hop:  # after warm-up
                        times[g].append(time.perf_counter() - t0)
                        steps[g].append(sum(eng.stepper.timings))
                        calls[g] += len(eng.stepper.timings)
            (batched, alone), (step_b, step_1) = ([float(np.median(t)) * 1e3 for t in pair]
                                                  for pair in (times, steps))
            section["tracks"][str(n)] = {"batched_ms": round(batched, 4),
                                         "per_track_ms": round(alone, 4),
                                         "batched_per_frame_ms": round(batched / hop, 4),
                                         "step_batched_ms": round(step_b, 4),
                                         "step_per_track_ms": round(step_1, 4),
                                         "step_calls": {"batched": calls[0],
                                                        "per_track": calls[1]},
                                         "load": round(os.getloadavg()[0], 2)}
    section["hop"] = hop
    log("detector on a frame where n tracks' hops are due (ms, median; ONNX Runtime, 1 thread; "
        f"per stream frame: / hop {hop}):")
    for n, r in section["tracks"].items():
        log(f"  {n} track(s): batched {r['batched_ms']:.3f} (per frame "
            f"{r['batched_per_frame_ms']:.3f})  one call per track {r['per_track_ms']:.3f};"
            f"  step call(s) alone {r['step_batched_ms']:.3f} / {r['step_per_track_ms']:.3f}"
            f"  [load {r['load']}]")
    return section


def _interleaved(full: Callable[[], object], step: Callable[[], object], n: int,
                 warmup: int = 20) -> dict:
    """Median ms of each call over ``n`` alternating calls, and their ratio.

    Both wall-clock and this thread's CPU time (one intra-op thread runs in the
    calling thread): on a shared, loaded machine the wall clock of a 0.2 ms call
    is mostly whether the scheduler let it run, while its CPU time is the work.
    Alternating is what the ratio target is judged on: live, other stages run
    between two steps, so a step never finds its weights in the cache. The CPU
    time of each call in a loop of its own (``warm_*``: weights cached) is reported
    beside it, to tell the work from the cache misses.
    """
    import time
    for _ in range(warmup):
        full()
        step()
    wall: tuple[list, list] = ([], [])
    cpu: tuple[list, list] = ([], [])
    for _ in range(n):
        for i, call in enumerate((full, step)):
            w0, c0 = time.perf_counter(), time.thread_time()
            call()
            cpu[i].append(time.thread_time() - c0)
            wall[i].append(time.perf_counter() - w0)
    warm: tuple[list, list] = ([], [])
    for i, call in enumerate((full, step)):
        for _ in range(n):
            c0 = time.thread_time()
            call()
            warm[i].append(time.thread_time() - c0)
    med = lambda xs: float(np.median(xs)) * 1e3  # noqa: E731
    return {"full_ms": round(med(wall[0]), 4), "incremental_ms": round(med(wall[1]), 4),
            "ratio": round(med(wall[1]) / med(wall[0]), 4),
            "full_cpu_ms": round(med(cpu[0]), 4), "incremental_cpu_ms": round(med(cpu[1]), 4),
            "cpu_ratio": round(med(cpu[1]) / med(cpu[0]), 4),
            "warm_full_cpu_ms": round(med(warm[0]), 4),
            "warm_incremental_cpu_ms": round(med(warm[1]), 4),
            "warm_cpu_ratio": round(med(warm[1]) / med(warm[0]), 4)}


def candidates() -> list[tuple[str, str, dict]]:
    """(label, engine name, Engine.load kwargs) for every backend worth timing here."""
    out = [("torch-cpu", "torch", {"device": "cpu"}), ("onnxruntime-cpu", "onnxruntime", {})]
    if torch_available("cuda")[0]:
        out.append(("torch-cuda", "torch", {"device": "cuda"}))
    if trt_available()[0]:
        out.append(("tensorrt-fp16", "tensorrt", {"precision": "fp16"}))
    return out


def run(report: dict, frames: int = 300, hops: int = 60, threads: int = 2,
        log: Callable[[str], None] = print, incremental: bool = True) -> None:
    """Time every available backend and add ``report["engine"]`` (also printed as a table).

    Each backend loads the model as serving does (``Engine.load``: the shipped weights,
    and for ONNX Runtime / TensorRT the shipped ONNX graphs when they were exported
    from those weights), so the figures are those of the graphs ``run_live`` runs.
    """
    torch.set_num_threads(threads)  # same 2 cores for torch as for ONNX Runtime
    quiet = lambda msg: None  # noqa: E731
    section: dict = {"threads": threads, "window": None, "targets_cpu_ms": TARGETS_MS,
                     "backends": {}}
    for label, name, kwargs in candidates():
        try:
            with runtime.Engine.load(name, cache_dir=runtime.DEFAULT_CACHE, threads=threads,
                                     log=quiet, **kwargs) as eng:
                section["window"] = eng.cfg.window
                section["backends"][label] = bench_engine(eng, frames, hops)
        except BackendError as exc:
            section["backends"][label] = {"error": str(exc)}
    report["engine"] = section
    log(f"engine latency (ms, p50 / p99; {threads} threads; window {section['window']}):")
    log(f"  {'backend':<16} {'encoder/frame':>16} {'detector/hop':>16} {'incremental/hop':>16}")
    for label, res in section["backends"].items():
        if "error" in res:
            log(f"  {label:<16} unavailable: {res['error']}")
            continue
        enc, det = res["encoder_per_frame_ms"], res["detector_per_hop_ms"]
        inc = res.get("detector_step_per_hop_ms")
        log(f"  {label:<16} {enc['p50']:>7.3f} / {enc['p99']:<7.3f} "
            f"{det['p50']:>7.3f} / {det['p99']:<7.3f} "
            + (f"{inc['p50']:>7.3f} / {inc['p99']:<7.3f} (p50 ratio {inc['p50'] / det['p50']:.3f})"
               if inc else f"{'(none)':>16}"))
    if incremental:
        section["incremental"] = bench_incremental(log=log)
        section["tracks"] = bench_tracks(log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="encoder calls timed")
    parser.add_argument("--hops", type=int, default=60, help="detector calls timed")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per backend")
    parser.add_argument("--out", default=None, help="also write the section as JSON here")
    parser.add_argument("--no-incremental", action="store_true",
                        help="skip the incremental vs full-window comparison (exports graphs)")
    args = parser.parse_args(argv)
    report: dict = {}
    run(report, args.frames, args.hops, args.threads, incremental=not args.no_incremental)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
