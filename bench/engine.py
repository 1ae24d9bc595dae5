"""Engine section of ``make bench``: per-call latency of each available backend, side by side.

    python -m bench.engine [--frames 300] [--hops 60] [--threads 2]

For every backend that can run here (torch on CPU, ONNX Runtime on CPU, and on
an NVIDIA machine torch CUDA and TensorRT), the same model is timed on the
same inputs: the encoder per frame (one call, batch 1, as the stream does)
and the detector per hop (one call on a full window). Numbers are p50 / p99
in ms from the backends' own per-call timings, after warm-up.
``python -m bench`` calls :func:`run`, which adds ``report["engine"]``.
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
    valid = np.ones(1, bool)
    for _ in range(warmup):
        eng.encode(flow, valid)
        eng.detect(window)
    eng.encoder.timings.clear()
    eng.detector.timings.clear()
    for _ in range(frames):
        eng.encode(flow, valid)
    for _ in range(hops):
        eng.detect(window)
    return {"encoder_per_frame_ms": percentiles_ms(eng.encoder.timings),
            "detector_per_hop_ms": percentiles_ms(eng.detector.timings)}


def candidates() -> list[tuple[str, str, dict]]:
    """(label, engine name, Engine.load kwargs) for every backend worth timing here."""
    out = [("torch-cpu", "torch", {"device": "cpu"}), ("onnxruntime-cpu", "onnxruntime", {})]
    if torch_available("cuda")[0]:
        out.append(("torch-cuda", "torch", {"device": "cuda"}))
    if trt_available()[0]:
        out.append(("tensorrt-fp16", "tensorrt", {"precision": "fp16"}))
    return out


def run(report: dict, frames: int = 300, hops: int = 60, threads: int = 2,
        log: Callable[[str], None] = print) -> None:
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
    log(f"  {'backend':<16} {'encoder/frame':>16} {'detector/hop':>16}")
    for label, res in section["backends"].items():
        if "error" in res:
            log(f"  {label:<16} unavailable: {res['error']}")
            continue
        enc, det = res["encoder_per_frame_ms"], res["detector_per_hop_ms"]
        log(f"  {label:<16} {enc['p50']:>7.3f} / {enc['p99']:<7.3f} "
            f"{det['p50']:>7.3f} / {det['p99']:<7.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="encoder calls timed")
    parser.add_argument("--hops", type=int, default=60, help="detector calls timed")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per backend")
    parser.add_argument("--out", default=None, help="also write the section as JSON here")
    args = parser.parse_args(argv)
    report: dict = {}
    run(report, args.frames, args.hops, args.threads)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
