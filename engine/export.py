"""ONNX export of the per-frame encoder and the temporal detector, with parity checks.

    python -m engine.export [--weights engine/weights/fedn.pt] [--out DIR] [--fp16]

Three graphs, all from the dynamo exporter (``torch.onnx.export(..., dynamo=True)``,
opset 18 — 23 for the step graph, for its ``Attention`` nodes —, weights in an
external ``.onnx.data`` file, checked with ``onnx.checker``):

- ``encoder.onnx``: ``flow`` (n, 3, S', S') float32, ``valid`` (n,) float32 →
  ``features`` (n, feat_dim); ``n`` is dynamic (1 per frame when streaming).
- ``detector.onnx``: ``features`` (1, window, feat_dim) → the detector outputs
  (:data:`engine.decode.OUTPUT_KEYS`), static window shape (the full-window path).
- ``detector_step.onnx``: ``features`` (B, hop, feat_dim) and ``state``
  (B, rows, channels) → the detector outputs of those ``hop`` frames and
  ``next_state`` (:mod:`engine.model.incremental`; the live path); ``B`` is
  dynamic: the streams whose hop is due, in one call.

``--fp16`` also writes ``*.fp16.onnx`` (FP16 compute, FP32 I/O, LayerNorm and
softmax in FP32) for TensorRT's strongly typed builds; see
:mod:`engine.backends.fp16`.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from engine.backends import BackendError

OPSET = 18
#: Bump when the export recipe changes; part of the first-use cache key.
EXPORT_VERSION = 4  # 2: + detector_step.onnx; 3: its batch dim, Attention nodes; 4: residual Gemms
ENCODER_INPUTS = ("flow", "valid")  # + "appearance" for a model with appearance fusion
ENCODER_OUTPUTS = ("features",)
DETECTOR_INPUTS = ("features",)
DETECTOR_STEP_INPUTS = ("features", "state")


@dataclass(frozen=True)
class OnnxPair:
    """Paths of the two exported graphs (and their FP16 versions when written).

    Attributes:
        encoder, detector: FP32 graphs.
        encoder_fp16, detector_fp16: mixed-precision graphs, or None.
        detector_step: the incremental detector (FP32), or None (an export
            from before it: every hop then runs the full window).
    """

    encoder: Path
    detector: Path
    encoder_fp16: Path | None = None
    detector_fp16: Path | None = None
    detector_step: Path | None = None


def export_onnx(module, example: Mapping[str, "object"], path: str | Path,
                output_names: Sequence[str], dynamic_dims: Mapping[str, int] | None = None,
                opset: int = OPSET) -> Path:
    """Export ``module(*example.values())`` to ``path`` with the dynamo exporter and check it.

    Args:
        module: an ``nn.Module`` returning a tensor, a tuple or a dict of tensors.
        example: input name → example tensor, in the module's positional order
            (static shapes, except ``dynamic_dims``).
        path: the ``.onnx`` file; weights go to ``<path>.data``.
        output_names: names of the outputs, in return order (a dict's keys for a dict).
        dynamic_dims: input name → dimension index that shares one dynamic size
            ("n"); the example size there must be ≥ 2 (a 1 is specialised).
        opset: ONNX opset.

    Returns:
        ``path``, after ``onnx.checker.check_model(path, full_check=True)``.
    """
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    if data.exists():
        data.unlink()
    wrapped = _tuple_outputs(module, tuple(output_names)).eval()
    dynamic_shapes = None
    if dynamic_dims:
        n = torch.export.Dim("n", min=1, max=4096)
        for name, dim in dynamic_dims.items():
            if example[name].shape[dim] < 2:
                raise ValueError(f"dynamic_dims: example {name!r} needs size >= 2 in dim {dim}")
        # one entry per forward() parameter: the wrapper's single *inputs tuple
        dynamic_shapes = (tuple(({dynamic_dims[name]: n} if name in dynamic_dims else None)
                                for name in example),)
    with _quiet():
        torch.onnx.export(wrapped, tuple(example.values()), str(path),
                          input_names=list(example), output_names=list(output_names),
                          opset_version=opset, dynamo=True, external_data=True,
                          dynamic_shapes=dynamic_shapes, verbose=False)
    onnx.checker.check_model(str(path), full_check=True)
    return path


def _tuple_outputs(module, names: tuple[str, ...]):
    """Wrap ``module`` so it returns a tuple in ``names`` order (explicit output order)."""
    from torch import nn

    class TupleOutputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, *inputs):
            out = self.inner(*inputs)
            if isinstance(out, Mapping):
                return tuple(out[k] for k in names)
            return out

    return TupleOutputs()


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's progress prints and warnings (errors still raise)."""
    import logging
    sink = io.StringIO()
    level = logging.getLogger("torch").level
    logging.getLogger("torch").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger("torch").setLevel(level)


def export_fedn(encoder, detector, cfg, out_dir: str | Path, fp16: bool = False,
                flow_size: int | None = None, output_keys: Sequence[str] | None = None,
                step: bool | None = None) -> OnnxPair:
    """Export a FEDN encoder + detector pair (and the incremental detector) into ``out_dir``.

    Args:
        encoder: ``FlowEncoder``-like: ``encoder(flow (n,3,S,S), valid (n,)) -> (n, F)``
            (and ``appearance (n, A)`` third when ``cfg.appearance_dim`` = A > 0).
        detector: ``TemporalDetector``-like: ``detector(features (1,T,F)) -> dict``.
        cfg: ``ModelConfig`` (window, hop, feat_dim).
        out_dir: where ``encoder.onnx`` / ``detector.onnx`` / ``detector_step.onnx``
            (+ data) go.
        fp16: also write the ``*.fp16.onnx`` mixed-precision graphs (encoder and
            full-window detector: what TensorRT builds).
        flow_size: S' of the flow maps (default ``StreamConfig().flow_size``).
        output_keys: detector output names (default ``engine.decode.OUTPUT_KEYS``).
        step: also write ``detector_step.onnx``; default: when ``detector`` is a
            ``TemporalDetector`` and ``output_keys`` the default.
    """
    import torch

    if flow_size is None:
        from engine.config import StreamConfig
        flow_size = StreamConfig().flow_size
    if step is None:
        from engine.model import TemporalDetector
        step = isinstance(detector, TemporalDetector) and output_keys is None
    if output_keys is None:
        from engine.decode import OUTPUT_KEYS as output_keys
    out_dir = Path(out_dir)
    gen = torch.Generator().manual_seed(0)
    flow = torch.randn(2, 3, flow_size, flow_size, generator=gen)
    valid = torch.ones(2)
    enc_inputs = {"flow": flow, "valid": valid}
    if getattr(cfg, "appearance_dim", 0):  # appearance fusion: a third encoder input
        enc_inputs["appearance"] = torch.rand(2, cfg.appearance_dim, generator=gen)
    enc = export_onnx(encoder.eval(), enc_inputs, out_dir / "encoder.onnx",
                      ENCODER_OUTPUTS, dynamic_dims={name: 0 for name in enc_inputs})
    feats = torch.randn(1, cfg.window, cfg.feat_dim, generator=gen)
    det = export_onnx(detector.eval(), {"features": feats}, out_dir / "detector.onnx",
                      tuple(output_keys))
    step_path = out_dir / "detector_step.onnx"
    if step:
        export_step(detector, cfg, step_path, gen)
    else:
        for path in (step_path, step_path.with_name(step_path.name + ".data")):
            if path.exists():  # a step graph of other weights must not outlive them
                path.unlink()
    pair = OnnxPair(enc, det, detector_step=step_path if step else None)
    for stale in (out_dir / "encoder.fp16.onnx", out_dir / "detector.fp16.onnx"):
        for path in (stale, stale.with_name(stale.name + ".data")):
            if path.exists():  # an FP16 graph of older weights must not outlive them
                path.unlink()
    if fp16:
        from engine.backends.fp16 import convert_to_fp16
        pair = OnnxPair(enc, det, convert_to_fp16(enc, out_dir / "encoder.fp16.onnx"),
                        convert_to_fp16(det, out_dir / "detector.fp16.onnx"), pair.detector_step)
    return pair


def export_step(detector, cfg, path: str | Path, gen=None) -> Path:
    """Export ``detector``'s incremental step (:mod:`engine.model.incremental`) to ``path``.

    Opset :data:`~engine.model.incremental.STEP_OPSET`; the batch dim of
    ``features`` and ``state`` is dynamic (one dim shared by both, every output
    has it first).
    """
    import torch

    from engine.model.incremental import (STEP_OPSET, STEP_OUTPUTS, IncrementalDetector,
                                          state_shape)
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    hop = torch.randn(2, cfg.hop, cfg.feat_dim, generator=gen)  # batch 2: kept dynamic
    state = torch.randn(*state_shape(cfg, batch=2), generator=gen)
    return export_onnx(IncrementalDetector(detector.eval()).eval(),
                       {"features": hop, "state": state}, path, STEP_OUTPUTS,
                       dynamic_dims={"features": 0, "state": 0}, opset=STEP_OPSET)


def onnx_inputs(path: str | Path) -> dict[str, tuple]:
    """Input name → shape (ints, or the dim_param string for dynamic dims) of an ONNX file."""
    import onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise BackendError(f"{path} is not a readable ONNX file ({type(exc).__name__}); delete "
                           "it and re-export with `python -m engine.export`") from None
    return {i.name: tuple(d.dim_value if d.HasField("dim_value") else d.dim_param
                          for d in i.type.tensor_type.shape.dim) for i in model.graph.input}


def check_pair(pair: OnnxPair, cfg, flow_size: int) -> None:
    """Raise a one-line :class:`BackendError` unless the files exist and fit ``cfg``."""
    for path in (pair.encoder, pair.detector) + ((pair.detector_step,) if pair.detector_step
                                                 else ()):
        if not Path(path).is_file():
            raise BackendError(f"ONNX file {path} not found; export it with "
                               "`python -m engine.export --out <dir>`")
        data = Path(str(path) + ".data")
        if not data.is_file():
            raise BackendError(f"ONNX weights {data} not found next to {path}; re-export "
                               "with `python -m engine.export`")
    try:
        import onnx  # noqa: F401
    except ImportError:  # a runtime-only install: the backends check shapes at the boundary
        return
    enc, det = onnx_inputs(pair.encoder), onnx_inputs(pair.detector)
    want_det = (1, cfg.window, cfg.feat_dim)
    if det.get("features") != want_det:
        raise BackendError(f"{pair.detector} takes features {det.get('features')}, the config "
                           f"needs {want_det} (window, feat_dim); re-export with "
                           "`python -m engine.export` for this config")
    flow = enc.get("flow")
    if flow is None or tuple(flow[1:]) != (3, flow_size, flow_size):
        raise BackendError(f"{pair.encoder} takes flow {flow}, the stream makes (n, 3, "
                           f"{flow_size}, {flow_size}); re-export with `python -m engine.export`")
    want_app = getattr(cfg, "appearance_dim", 0)
    app = enc.get("appearance")
    if (app[1] if app else 0) != want_app:
        raise BackendError(f"{pair.encoder} takes appearance {app}, the model needs "
                           f"(n, {want_app}) (ModelConfig.appearance_dim); re-export with "
                           "`python -m engine.export` for these weights")
    if pair.detector_step is not None:
        from engine.model.incremental import state_shape
        step = onnx_inputs(pair.detector_step)
        want = {"features": (cfg.hop, cfg.feat_dim), "state": state_shape(cfg)[1:]}
        got = {k: v[1:] for k, v in step.items()}
        batch = {v[0] for v in step.values() if v}  # dynamic; 1 in an export before it
        if got != want or len(batch) != 1 or next(iter(batch)) in (0, ""):
            raise BackendError(f"{pair.detector_step} takes {step}, the config needs (B, *) "
                               f"with {want} (a batch B; hop, feat_dim; state rows, "
                               "channels); re-export with `python -m engine.export`")


def model_fingerprint(modules: Sequence, cfg, flow_size: int) -> str:
    """sha256 (16 hex) of the modules' weights, the config and the export recipe."""
    import torch
    h = hashlib.sha256()
    h.update(json.dumps({"cfg": repr(cfg), "flow": flow_size, "opset": OPSET,
                         "export": EXPORT_VERSION, "torch": torch.__version__}).encode())
    for module in modules:
        for name, tensor in sorted(module.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def ensure_onnx(encoder, detector, cfg, cache_dir: str | Path, flow_size: int,
                fp16: bool = False, log: Callable[[str], None] = print) -> OnnxPair:
    """The ONNX pair for these modules: from ``cache_dir``, or exported there on first use."""
    root = Path(cache_dir).expanduser() / "onnx" / model_fingerprint((encoder, detector), cfg,
                                                                      flow_size)
    pair = OnnxPair(root / "encoder.onnx", root / "detector.onnx",
                    (root / "encoder.fp16.onnx") if fp16 else None,
                    (root / "detector.fp16.onnx") if fp16 else None,
                    root / "detector_step.onnx")
    done = root / "complete.json"
    if done.is_file() and all(p is None or p.is_file() for p in (pair.encoder, pair.detector,
                                                                  pair.encoder_fp16,
                                                                  pair.detector_fp16,
                                                                  pair.detector_step)):
        return pair
    log(f"engine: exporting the encoder and detector to ONNX in {root} (first use; "
        "takes ~30 s)")
    start = time.perf_counter()
    pair = export_fedn(encoder, detector, cfg, root, fp16=fp16, flow_size=flow_size)
    done.write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}))
    return pair


def parity(module, onnx_path: str | Path, feed: Mapping[str, np.ndarray],
           threads: int = 2) -> dict[str, float]:
    """Max |torch − ONNX Runtime| per output for one feed (in the module's argument order)."""
    import torch

    from engine.backends.onnxruntime import OnnxRuntimeBackend
    with OnnxRuntimeBackend(onnx_path, threads=threads) as ort_backend:
        got = ort_backend.infer(dict(feed))
    with torch.inference_mode():
        ref = module.eval()(*(torch.from_numpy(v) for v in feed.values()))
    if isinstance(ref, torch.Tensor):
        ref = {next(iter(got)): ref}
    return {name: float(np.abs(got[name] - ref[name].numpy()).max()) for name in got}


def step_parity(model, step_path: str | Path, hops: int | None = None,
                threads: int = 2, seed: int = 0) -> dict[str, float]:
    """Max |ONNX Runtime step graph − torch full window| per output over a random stream.

    Steps ``detector_step.onnx`` from the fresh-stream state over ``hops`` hops of
    random features (default: two windows' worth) and compares each hop's
    outputs with the torch full-window detector's at the hop's positions (the
    last ``hop`` of its window). Also ``"state_fixed_point"``: how far the
    fresh-stream state is from one more "no face" hop.
    """
    import torch

    from engine.backends.onnxruntime import OnnxRuntimeBackend
    from engine.decode import OUTPUT_KEYS, pyramid_points
    from engine.model.incremental import STATE_OUTPUT, initial_state
    cfg = model.cfg
    hops = hops or 2 * cfg.window // cfg.hop
    no_face = model.encoder.no_face.detach().numpy()
    rng = np.random.default_rng(seed)
    feats = rng.standard_normal((hops * cfg.hop, cfg.feat_dim)).astype(np.float32)
    ring = np.concatenate([np.repeat(no_face[None], cfg.window, 0), feats])  # pad = window
    win_rows = pyramid_points(cfg.window, cfg.levels)[:, 0]
    worst = {k: 0.0 for k in OUTPUT_KEYS}
    with OnnxRuntimeBackend(step_path, threads=threads) as step:
        state, drift = initial_state(cfg, no_face, lambda f, s: step.infer(
            {"features": f, "state": s}))
        for h in range(hops):
            out = step.infer({"features": feats[None, h * cfg.hop:(h + 1) * cfg.hop],
                              "state": state})
            state = out[STATE_OUTPUT]
            end = cfg.window + (h + 1) * cfg.hop
            with torch.inference_mode():
                full = model.detector.eval()(torch.from_numpy(ring[None, end - cfg.window:end]))
            for key in OUTPUT_KEYS:
                per_point = key in ("cls_logits", "emo_logits", "reg")
                ref = full[key][0].numpy()
                ref = ref[win_rows >= cfg.window - cfg.hop] if per_point else ref[-cfg.hop:]
                worst[key] = max(worst[key], float(np.abs(out[key][0] - ref).max()))
    return {**worst, "state_fixed_point": drift}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the FEDN encoder and detector to ONNX")
    parser.add_argument("--weights", default=None,
                        help="checkpoint (.pt); default: the shipped weights in engine/weights/")
    parser.add_argument("--out", default="engine/weights", help="output directory")
    parser.add_argument("--fp16", action="store_true", help="also write *.fp16.onnx graphs")
    parser.add_argument("--no-parity", action="store_true", help="skip the ORT vs torch check")
    args = parser.parse_args(argv)
    from engine.config import StreamConfig
    from engine.checkpoint import load_model
    from engine.model.incremental import STEP_OPSET
    try:
        model = load_model(args.weights)
    except BackendError as exc:
        print(f"engine.export: {exc}", file=sys.stderr)
        return 2
    cfg, flow_size = model.cfg, StreamConfig().flow_size
    start = time.perf_counter()
    pair = export_fedn(model.encoder, model.detector, cfg, args.out, fp16=args.fp16,
                       flow_size=flow_size)
    Path(args.out, "manifest.json").write_text(json.dumps({
        "fingerprint": model_fingerprint((model.encoder, model.detector), cfg, flow_size),
        "weights": str(args.weights) if args.weights else "default (engine/weights/*.pt, else "
                   "untrained)", "opset": OPSET, "fp16": args.fp16}, indent=1))
    print(f"engine.export: wrote {pair.encoder}, {pair.detector} and {pair.detector_step}"
          + (" (+ .fp16.onnx)" if args.fp16 else "")
          + f" in {time.perf_counter() - start:.1f} s (opset {OPSET}, the step graph "
          f"{STEP_OPSET}; onnx.checker OK)")
    if not args.no_parity:
        rng = np.random.default_rng(0)
        flow = rng.standard_normal((4, 3, flow_size, flow_size)).astype(np.float32)
        valid = np.array([1, 1, 0, 1], np.float32)
        feats = rng.standard_normal((1, cfg.window, cfg.feat_dim)).astype(np.float32)
        enc_feed = {"flow": flow, "valid": valid}
        if cfg.appearance_dim:  # a fused model's encoder reads the appearance input too
            enc_feed["appearance"] = rng.random((4, cfg.appearance_dim)).astype(np.float32)
        enc = parity(model.encoder, pair.encoder, enc_feed)
        det = parity(model.detector, pair.detector, {"features": feats})
        step = step_parity(model, pair.detector_step)
        worst = max(list(enc.values()) + list(det.values()) + list(step.values()))
        print(f"engine.export: parity ONNX Runtime vs torch, max |diff| = {worst:.2e} "
              f"({'OK' if worst <= 1e-4 else 'FAIL'}, limit 1e-4)")
        if worst > 1e-4:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
