"""`make gpu-check`: the prepared check for an NVIDIA machine.

    python -m bench.gpu_check [--no-install] [--cache DIR] [--python PATH]

Run from the repository root (``bench/`` is not installed with the package); on an
offline GPU box any Python whose torch sees the GPU will do:
``python3 -m bench.gpu_check --no-install --cache .gpucheck``.

1. No NVIDIA GPU (``nvidia-smi`` absent or lists none): one "no GPU" line, exit 0.
2. Installs what it can of the ``gpu`` extra (TensorRT, pycuda; pins read from
   setup.cfg). Neither installs without NVIDIA's package index / the CUDA
   toolkit: each failure is reported as "unavailable", never fatal.
3. Finds a Python whose torch sees the GPU: this one, else ``--python``, else a
   system interpreter (the project venv's torch is the CPU wheel).
4. Here (any torch): exports encoder + detector to ONNX (FP32 and FP16), runs
   the CPU reference (torch) and ONNX Runtime CPU (parity ≤ 1e-4, latency).
5. On the GPU (a worker process under the Python of step 3): the ``cuda``
   backend (CUDA graphs, and eager on the same buffers; raw outputs, features and
   incremental steps ≤ 1e-4 from torch CPU), torch CUDA (eager, and a CUDA graph of
   the detector alone), ONNX Runtime CUDA EP if installed, TensorRT FP16 when it
   imports — engine build, cached reload time, parity (≤ 1e-2 on scores, same
   decoded candidates on fixed windows and, streamed hop by hop, on the shipped
   demo clip) and latency p50 / p99 per backend, then one table of them all.

Exit code: 0 unless a parity check that ran failed (1).
"""
from __future__ import annotations

import argparse
import configparser
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.backends import BackendUnavailable

ROOT = Path(__file__).resolve().parents[1]
#: Parity limits per backend label on the gated number: "parity_max_abs" (raw outputs,
#: FP32 backends) or "score_max_abs" (probabilities, FP16 TensorRT).
#: Candidates down to this kind probability are compared on the demo clip (an untrained
#: model rarely reaches the shipped threshold; more candidates make a stricter check).
DEMO_THRESH = 0.05
LIMITS = {"onnxruntime-cpu": ("parity_max_abs", 1e-4), "onnxruntime-cuda": ("score_max_abs", 1e-3),
          "torch-cuda": ("score_max_abs", 1e-3), "tensorrt-fp16": ("score_max_abs", 1e-2),
          "cuda-graph": ("parity_max_abs", 1e-4), "cuda-eager": ("parity_max_abs", 1e-4),
          "cuda-eager-cpu": ("parity_max_abs", 1e-4)}
#: Faces per frame of the encoder batch timing (the cuda backend pads 5 to its bucket 8).
BATCH_FACES = 5
#: Hops of the incremental detector compared with torch CPU (fixed inputs).
STEP_HOPS = 4
PROBE = ("import json, torch; ok = torch.cuda.is_available(); "
         "print(json.dumps([torch.__version__, ok, torch.cuda.get_device_name(0) if ok else '']))")


def gpu_present() -> tuple[bool, str]:
    """Whether an NVIDIA GPU is visible, and how we know."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False, "nvidia-smi not found"
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nvidia-smi failed: {exc}"
    gpus = [line for line in out.stdout.splitlines() if line.startswith("GPU")]
    return (bool(gpus), gpus[0] if gpus else "nvidia-smi lists no GPU")


def gpu_extra() -> list[str]:
    """The ``gpu`` extra's pinned requirements, from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    text = cfg.get("options.extras_require", "gpu", fallback="")
    return [line.strip() for line in text.splitlines() if line.strip()]


def install_gpu_extra() -> dict[str, str]:
    """pip-install each gpu requirement not importable yet; name → outcome (one line each)."""
    out = {}
    for req in gpu_extra():
        module = req.split("==")[0].split("[")[0].replace("-", "_")
        if _importable(sys.executable, module):
            out[req] = "already importable"
            continue
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--retries", "0", "--timeout", "15",
               req]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            ok = res.returncode == 0 and _importable(sys.executable, module)
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1][:160]
            out[req] = "installed" if ok else f"unavailable (pip: {tail})"
        except subprocess.TimeoutExpired:
            out[req] = "unavailable (pip timed out after 120 s)"
    return out


def _importable(python: str, module: str) -> bool:
    try:
        return subprocess.run([python, "-c", f"import {module}"], capture_output=True,
                              timeout=120).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_cuda_python(preferred: str | None = None) -> tuple[str | None, str]:
    """First interpreter whose torch sees a CUDA GPU, and what it reported."""
    seen, notes = set(), []
    for cand in [preferred, sys.executable, "/usr/bin/python3", "/usr/local/bin/python3",
                 "/opt/conda/bin/python", shutil.which("python3")]:
        if not cand or not Path(cand).exists():
            continue
        real = os.path.realpath(cand)
        if real in seen and cand != sys.executable:
            continue
        seen.add(real)
        try:
            res = subprocess.run([cand, "-c", PROBE], capture_output=True, text=True, timeout=120,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
            version, ok, name = json.loads(res.stdout.strip().splitlines()[-1])
        except Exception:
            notes.append(f"{cand}: no torch")
            continue
        if ok:
            return cand, f"{cand}: torch {version} on {name}"
        notes.append(f"{cand}: torch {version} without CUDA")
    return None, "; ".join(notes) or "no interpreter found"


def prepare(work: Path, rng_seed: int = 0) -> dict:
    """Save inputs and the torch CPU reference, export the graphs, check ONNX Runtime CPU.

    Each step that needs a library this interpreter lacks (onnx / onnxscript for the
    export, onnxruntime, MediaPipe for the demo clip) is reported and skipped.
    """
    import torch

    from bench.engine import bench_engine
    from engine.config import StreamConfig
    from engine.export import export_fedn
    from engine.runtime import Engine, load_model

    model = load_model(None)
    cfg, size = model.cfg, StreamConfig().flow_size
    torch.save({"model": model.state_dict(), "config": _cfg_dict(cfg)}, work / "model.pt")
    rng = np.random.default_rng(rng_seed)
    flow = (rng.standard_normal((8, 3, size, size)) * 2).astype(np.float32)
    valid = np.array([1, 1, 1, 0, 1, 1, 0, 1], np.float32)
    # (8, A): a model with appearance fusion reads it next to the flow; (8, 0) for a flow-only one
    appearance = rng.random((8, cfg.appearance_dim)).astype(np.float32)
    app = _appearance_or_none(appearance)
    windows = rng.standard_normal((4, cfg.window, cfg.feat_dim)).astype(np.float32)
    with torch.inference_mode():
        ref_feat = model.encoder(torch.from_numpy(flow), torch.from_numpy(valid),
                                 None if app is None else torch.from_numpy(app)).numpy()
        ref = [{k: v.numpy() for k, v in model.detector(torch.from_numpy(w[None])).items()}
               for w in windows]
    np.savez(work / "inputs.npz", flow=flow, valid=valid, appearance=appearance, windows=windows,
             ref_feat=ref_feat,
             **{f"ref{i}_{k}": v for i, out in enumerate(ref) for k, v in out.items()})
    results: dict = {}
    try:
        start = time.perf_counter()
        export_fedn(model.encoder, model.detector, cfg, work / "onnx", fp16=True, flow_size=size)
        print(f"gpu-check: exported encoder + detector (FP32 and FP16 ONNX) in "
              f"{time.perf_counter() - start:.1f} s")
    except ImportError as exc:  # a bare GPU image: torch, but no onnx / onnxscript
        print(f"gpu-check: ONNX export: unavailable ({exc}); ONNX Runtime and TensorRT "
              "checks skipped")
        results["onnx-export"] = {"unavailable": str(exc)}
    demo = prepare_demo(work, appearance=cfg.appearance_dim > 0)
    if demo is not None:
        with Engine.load("torch", model=model, log=lambda m: None) as ref_eng:
            ref_demo = demo_candidates(ref_eng, cfg, *demo)
        (work / "demo_reference.json").write_text(json.dumps(ref_demo))
        print(f"gpu-check: demo clip: {len(demo[1])} frames, {int(demo[1].sum())} with a face, "
              f"{len(ref_demo)} torch CPU candidates (score >= {DEMO_THRESH})")
    if "onnx-export" in results:
        return results
    try:
        with Engine.load("onnxruntime", model=model, onnx_dir=work / "onnx",
                         log=lambda m: None) as eng:
            diff = max(float(np.abs(eng.encode(flow, valid, app) - ref_feat).max()),
                       *(float(np.abs(eng.detect(w)[k] - ref[i][k]).max())
                         for i, w in enumerate(windows) for k in ref[i]))
            lat = bench_engine(eng, frames=200, hops=40)
        results["onnxruntime-cpu"] = {"parity_max_abs": diff, **lat}
        print(f"gpu-check: onnxruntime-cpu: {_fmt(results['onnxruntime-cpu'])}")
    except BackendUnavailable as exc:
        print(f"gpu-check: onnxruntime: unavailable ({exc})")
        results["onnxruntime-cpu"] = {"unavailable": str(exc)}
    return results


def prepare_demo(work: Path, appearance: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """Flow maps, valid and (``appearance``: for a model that fuses it) the appearance input
    of the shipped demo clip through the live face + flow [+ appearance] stages (or None)."""
    clip = ROOT / "stream" / "demo" / "demo.mp4"
    if not clip.is_file():
        print("gpu-check: demo clip: not shipped yet, skipped")
        return None
    cached = [work / "demo_flow.npy", work / "demo_valid.npy"]
    if appearance:
        cached.append(work / "demo_appearance.npy")
    if all(p.is_file() for p in cached):
        # A GPU image without MediaPipe: reuse flow maps made by an earlier run
        # (`--cache DIR` on a CPU machine, then carry DIR).
        print(f"gpu-check: demo clip: flow maps reused from {work}")
        return load_demo(work)
    try:
        flow, valid, app = demo_flow_maps(clip, appearance)
    except Exception as exc:  # noqa: BLE001 - face / flow stages missing here: say so, go on
        print(f"gpu-check: demo clip: face/flow stages failed ({type(exc).__name__}: "
              f"{str(exc)[:160]}), skipped")
        return None
    np.save(work / "demo_flow.npy", flow)
    np.save(work / "demo_valid.npy", valid)
    if app is not None:
        np.save(work / "demo_appearance.npy", app)
    return flow, valid, app


def load_demo(work: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The demo arrays :func:`prepare_demo` saved in ``work`` (appearance: None if not saved)."""
    app = work / "demo_appearance.npy"
    return (np.load(work / "demo_flow.npy"), np.load(work / "demo_valid.npy"),
            np.load(app) if app.is_file() else None)


def demo_flow_maps(clip: Path, appearance: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(N, 3, S', S') float16 flow maps, (N,) valid and (``appearance``) the (N, A) appearance
    input of ``clip``'s primary face: the stage chain without an engine, as training's
    features, so the check sees what training sees."""
    from stream.chain import primary_face_features

    got = primary_face_features(clip, appearance=appearance)
    return np.asarray(got.flow), got.valid, got.appearance


def demo_candidates(eng, cfg, flow: np.ndarray, valid: np.ndarray,
                    appearance: np.ndarray | None = None) -> list[list]:
    """Every hop's decoded candidates over the clip: [hop frame, onset, offset, kind, emotion]."""
    from dataclasses import replace

    from engine.contracts import FlowFrame
    from engine.streaming import StreamingDetector
    det = StreamingDetector(eng, replace(cfg, score_thresh=min(cfg.score_thresh, DEMO_THRESH)))
    out = []
    for i in range(len(valid)):
        frame = FlowFrame(i, i / 30.0, flow[i], bool(valid[i]))
        feature = None  # flow only: encoded by the detector's schedule
        if appearance is not None:  # a fused model: encoded here, with the frame's appearance
            feature = eng.encode(det.prepare(frame)[None], np.float32([valid[i]]),
                                 appearance[i:i + 1])[0]
        res = det.update(frame, feature)
        if res is not None:
            out += [[res.frame, c.onset_frame, c.offset_frame, c.kind, c.emotion]
                    for c in res.candidates]
    return out


def _cfg_dict(cfg) -> dict:
    from dataclasses import asdict
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def worker(work: Path, device: str = "cuda") -> dict:
    """GPU side: the cuda backend, torch CUDA, ORT CUDA EP, TensorRT FP16; per-backend results.

    ``device="cpu"`` runs the same steps with torch on CPU (the tests use it to
    exercise this code without a GPU); the results then say "torch-cpu" and
    "cuda-eager-cpu" (the cuda backend's buffers and padding; no graphs on a CPU).
    """
    import copy

    import torch

    from engine.backends import percentiles_ms
    from engine.backends.onnxruntime import OnnxRuntimeBackend
    from engine.backends.tensorrt import available as trt_available
    from engine.backends.torch import TorchBackend
    from bench.engine import bench_engine
    from engine.decode import OUTPUT_KEYS
    from engine.runtime import Engine, load_model

    data = np.load(work / "inputs.npz")
    refs = [{k: data[f"ref{i}_{k}"] for k in OUTPUT_KEYS} for i in range(len(data["windows"]))]
    model = load_model(work / "model.pt")
    results: dict = {}
    app = _appearance_or_none(data["appearance"]) if "appearance" in data.files else None
    demo_ref = demo = None
    if (work / "demo_reference.json").is_file():
        demo_ref = json.loads((work / "demo_reference.json").read_text())
        demo = load_demo(work)
    quiet = lambda m: None  # noqa: E731
    with Engine.load("torch", model=copy.deepcopy(model), device="cpu", log=quiet) as ref_eng:
        ref_steps = step_outputs(ref_eng, data["windows"][0])  # torch CPU, incremental

    def measure(label: str, eng) -> None:
        feat = eng.encode(data["flow"], data["valid"], app)
        outs = [eng.detect(w) for w in data["windows"]]
        res = {"feature_max_abs": float(np.abs(feat - data["ref_feat"]).max()),
               "score_max_abs": max(_score_diff(o, r) for o, r in zip(outs, refs)),
               "same_candidates": all(_same_candidates(o, r, model.cfg)
                                      for o, r in zip(outs, refs))}
        raw = [res["feature_max_abs"], max(float(np.abs(o[k] - r[k]).max())
                                           for o, r in zip(outs, refs) for k in r)]
        if eng.can_step:
            res["step_max_abs"] = max(float(np.abs(o[k] - r[k]).max()) for o, r in zip(
                step_outputs(eng, data["windows"][0]), ref_steps) for k in r)
            raw.append(res["step_max_abs"])
        res["parity_max_abs"] = max(raw)  # raw outputs, features and steps vs torch CPU
        if demo_ref is not None:
            got = demo_candidates(eng, model.cfg, *demo)
            res["demo_same_candidates"] = got == demo_ref
            res["demo_candidates"] = [len(got), len(demo_ref)]
        res.update(bench_engine(eng, frames=300, hops=100))
        res["encoder_batch_ms"] = _batch_ms(eng, data["flow"][:BATCH_FACES],
                                            data["valid"][:BATCH_FACES],
                                            None if app is None else app[:BATCH_FACES])
        results[label] = res
        print(f"gpu-check: {label}: {_fmt(res)}", flush=True)

    gpu = device.startswith("cuda")
    where = torch.cuda.get_device_name(0) if gpu and torch.cuda.is_available() else device
    print(f"gpu-check worker: torch {torch.__version__} on {where}", flush=True)

    def torch_eager_and_graph() -> None:
        with Engine.load("torch", model=model, device=device, log=quiet) as eng:
            measure(f"torch-{device.split(':')[0]}", eng)
            graph = TorchBackend(model.detector, eng.detector.inputs, OUTPUT_KEYS,
                                 device=device, cuda_graph=gpu)
        with graph:
            outs = [graph.infer({"features": w[None]}) for w in data["windows"]]
            graph.timings.clear()
            for _ in range(100):
                graph.infer({"features": data["windows"][0][None]})
        label = "torch-cuda-graph" if gpu else "torch-cpu-again"
        results[label] = {"score_max_abs": max(_score_diff(o, r) for o, r in zip(outs, refs)),
                          "detector_per_hop_ms": percentiles_ms(graph.timings)}
        print(f"gpu-check: {label}: {_fmt(results[label])}", flush=True)

    def cuda_backend() -> None:  # graphs on a GPU; eager on the same buffers, both devices
        fake = {} if gpu else {"probe": lambda name: (True, "gpu-check worker on CPU")}
        for graphs in ((True, False) if gpu else (False,)):
            label = ("cuda-graph" if graphs else "cuda-eager") + ("" if gpu else "-cpu")
            with Engine.load("cuda", model=copy.deepcopy(model), device=device, log=quiet,
                             cuda_graphs=graphs, **fake) as eng:
                measure(label, eng)
                if graphs:
                    results[label]["graphs_captured"] = sum(
                        len(b.runner.captures) for b in (eng.encoder, eng.detector, eng.stepper))
        if not gpu:
            print("gpu-check: cuda-graph: skipped (CUDA graphs need a GPU)", flush=True)

    def onnxruntime_cuda() -> None:
        import onnxruntime as ort
        if not (work / "onnx" / "detector.onnx").is_file():
            print("gpu-check: onnxruntime CUDA EP: skipped (no ONNX files)")
            return
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            print("gpu-check: onnxruntime CUDA EP: not installed (CPU onnxruntime only)")
            return
        cuda = ["CUDAExecutionProvider"]
        with Engine(OnnxRuntimeBackend(work / "onnx/encoder.onnx", providers=cuda),
                    OnnxRuntimeBackend(work / "onnx/detector.onnx", providers=cuda),
                    "onnxruntime-cuda", model.cfg) as eng:
            measure("onnxruntime-cuda", eng)

    def tensorrt_fp16() -> None:
        ok, why = trt_available()
        if ok and not (work / "onnx" / "detector.onnx").is_file():
            ok, why = False, "no ONNX files (the export step was unavailable)"
        if not ok:
            print(f"gpu-check: TensorRT: unavailable ({why})")
            results["tensorrt-fp16"] = {"unavailable": why}
            return
        timings = {}
        for attempt in ("build", "cached"):  # the second start must come from the cache
            start = time.perf_counter()
            eng = Engine.load("tensorrt", model=model, onnx_dir=work / "onnx",
                              cache_dir=work / "engines", precision="fp16", log=print)
            timings[attempt] = round(time.perf_counter() - start, 3)
            print(f"gpu-check: TensorRT FP16 {attempt}: {timings[attempt]:.2f} s "
                  f"({eng.encoder.loaded_from} / {eng.detector.loaded_from})", flush=True)
            try:
                if attempt == "cached":
                    measure("tensorrt-fp16", eng)
            finally:
                eng.close()
        results["tensorrt-fp16"].update(build_s=timings["build"], cached_load_s=timings["cached"])

    for name, step in (("cuda", cuda_backend), ("torch", torch_eager_and_graph),
                       ("onnxruntime-cuda", onnxruntime_cuda), ("tensorrt-fp16", tensorrt_fp16)):
        try:  # one failing step must not hide the others: each is reported, then the next runs
            step()
        except ImportError as exc:  # this interpreter lacks the library: not a failure
            print(f"gpu-check: {name}: unavailable ({exc})", flush=True)
        except Exception as exc:  # noqa: BLE001 - reported, and the run goes on
            text = str(exc).strip()
            msg = f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"
            print(f"gpu-check: {name}: FAILED ({msg})", flush=True)
            results.setdefault(f"{name}-error", {"error": msg})
    return results


def step_outputs(eng, window: np.ndarray, hops: int = STEP_HOPS) -> list[dict]:
    """The incremental detector from a fresh state over ``window``'s first ``hops`` hops:
    each hop's outputs with the state after it (``next_state``)."""
    hop, state, out = eng.cfg.hop, eng.initial_state(), []
    for i in range(min(hops, len(window) // hop)):
        res, state = eng.detect_step(window[i * hop:(i + 1) * hop], state)
        out.append({**res, "next_state": state})
    return out


def _appearance_or_none(appearance: np.ndarray) -> np.ndarray | None:
    """The (n, A) appearance input, or None for a flow-only model (A = 0)."""
    return appearance if appearance.shape[-1] else None


def _batch_ms(eng, flow: np.ndarray, valid: np.ndarray, appearance: np.ndarray | None = None,
              calls: int = 100) -> dict:
    """p50 / p99 ms of one encoder call on ``len(valid)`` faces (after 10 warm-up calls)."""
    from engine.backends import percentiles_ms
    for _ in range(10):
        eng.encode(flow, valid, appearance)
    eng.encoder.timings.clear()
    for _ in range(calls):
        eng.encode(flow, valid, appearance)
    return {**percentiles_ms(eng.encoder.timings), "faces": len(valid)}


def table(results: dict) -> list[str]:
    """One row per backend: parity vs torch CPU, then p50 / p99 ms per call."""
    cols = (("encoder_per_frame_ms", "encoder/frame"), ("encoder_batch_ms",
                                                         f"encoder/{BATCH_FACES} faces"),
            ("detector_per_hop_ms", "detector/hop"), ("detector_step_per_hop_ms", "step/hop"))
    head = f"  {'backend':<18} {'parity':>9} {'score':>9} " + " ".join(f"{t:>15}" for _, t in cols)
    lines = [head]
    for label, res in results.items():
        if "unavailable" in res or "error" in res:
            lines.append(f"  {label:<18} {res.get('unavailable') or res['error']}"[:160])
            continue
        nums = [f"{res[k]:9.1e}" if k in res else f"{'-':>9}"
                for k in ("parity_max_abs", "score_max_abs")]
        nums += [f"{res[k]['p50']:7.3f}/{res[k]['p99']:7.3f}" if k in res else f"{'-':>15}"
                 for k, _ in cols]
        lines.append(f"  {label:<18} " + " ".join(nums))
    return lines


def _score_diff(out: dict, ref: dict) -> float:
    """Max |diff| of the probabilities: kind and active (sigmoid), emotions (softmax)."""
    from engine.decode import sigmoid, softmax
    diffs = [np.abs(sigmoid(out[k]) - sigmoid(ref[k])).max() for k in ("cls_logits", "act_logits")]
    diffs += [np.abs(softmax(out[k]) - softmax(ref[k])).max()
              for k in ("emo_logits", "act_emo_logits")]
    return float(max(diffs))


def _same_candidates(out: dict, ref: dict, cfg) -> bool:
    from engine.decode import decode_window
    a = decode_window(out, cfg, score_thresh=0.02)
    b = decode_window(ref, cfg, score_thresh=0.02)
    key = lambda c: (c.onset_frame, c.offset_frame, c.kind, c.emotion)  # noqa: E731
    return sorted(map(key, a)) == sorted(map(key, b))


def _fmt(res: dict) -> str:
    parts = []
    for key in ("parity_max_abs", "feature_max_abs", "score_max_abs", "step_max_abs"):
        if key in res:
            parts.append(f"{key.rsplit('_', 2)[0]} max|diff| {res[key]:.2e}")
    if "same_candidates" in res:
        parts.append(f"same candidates: {res['same_candidates']}")
    if "demo_same_candidates" in res:
        parts.append(f"demo clip same candidates: {res['demo_same_candidates']} "
                     f"({res['demo_candidates'][0]} vs {res['demo_candidates'][1]})")
    for key in ("encoder_per_frame_ms", "detector_per_hop_ms"):
        if key in res:
            parts.append(f"{key.split('_')[0]} p50 {res[key]['p50']:.3f} / p99 "
                         f"{res[key]['p99']:.3f} ms")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="prepared GPU check (TensorRT, torch CUDA, ORT)")
    parser.add_argument("--no-install", action="store_true", help="do not pip-install the extra")
    parser.add_argument("--python", default=None, help="interpreter with CUDA torch for step 5")
    parser.add_argument("--cache", default=None, help="work dir (default: a temporary one)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        results = worker(Path(args.worker))
        (Path(args.worker) / "gpu_results.json").write_text(json.dumps(results, indent=2))
        return 0
    present, why = gpu_present()
    if not present:
        print(f"gpu-check: no GPU ({why}); nothing to check on this machine. OK.")
        return 0
    print(f"gpu-check: found {why}")
    if not args.no_install:
        for req, outcome in install_gpu_extra().items():
            print(f"gpu-check: {req}: {outcome}")
    work = Path(args.cache or tempfile.mkdtemp(prefix="fedn-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    results = prepare(work)
    python, note = find_cuda_python(args.python)
    print(f"gpu-check: CUDA python: {note}")
    if python is None:
        print("gpu-check: no interpreter here has a CUDA torch: torch CUDA and TensorRT "
              "unavailable (install a CUDA torch wheel, then pass --python).")
    else:
        pythonpath = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
        env = {**os.environ, "PYTHONPATH": pythonpath}
        res = subprocess.run([python, "-m", "bench.gpu_check", "--worker", str(work)],
                             cwd=ROOT, env=env, timeout=1200)
        if res.returncode != 0:
            print(f"gpu-check: GPU worker exited {res.returncode} (see above)")
            results["gpu-worker-error"] = {"error": f"exit code {res.returncode}"}
        path = work / "gpu_results.json"
        if path.is_file():
            results.update(json.loads(path.read_text()))
    failed = [k for k, r in results.items() if k in LIMITS and LIMITS[k][0] in r
              and r[LIMITS[k][0]] > LIMITS[k][1]]
    failed += [k for k, r in results.items() if r.get("same_candidates") is False
               or r.get("demo_same_candidates") is False]
    failed += [k for k in results if k.endswith("-error")]
    print("gpu-check summary (parity: max |diff| of raw outputs vs torch CPU; score: of the "
          "probabilities; ms p50 / p99 per call):")
    print("\n".join(table(results)))
    (work / "gpu_check.json").write_text(json.dumps(results, indent=2))
    print(f"gpu-check: results in {work / 'gpu_check.json'}; "
          + ("FAILED: " + ", ".join(failed) if failed else "all checks that ran passed"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
