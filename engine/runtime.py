"""Backend selection (``--engine auto|tensorrt|cuda|onnxruntime|torch``) and the ``Engine`` facade.

The pipeline only sees :class:`Engine`::

    with Engine.load(engine="auto") as eng:          # prints one status line
        feats = eng.encode(flow_batch, valid)         # (n, 3, S', S'), (n,) -> (n, feat_dim)
        out = eng.detect(feature_window)              # (window, feat_dim) -> outputs dict
        out, state = eng.detect_step(hop_feats, state)  # (hop, feat_dim): the live path

``auto`` picks TensorRT when TensorRT and a CUDA GPU are present, else the
``cuda`` backend (torch CUDA graphs) when torch sees a CUDA GPU, else ONNX
Runtime, else torch. A backend asked for by name that cannot run here is a
one-line :class:`BackendUnavailable` saying what to do.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engine.backends import BACKEND_NAMES, Backend, BackendError, BackendUnavailable, TensorSpec
from engine.checkpoint import WEIGHTS_DIR, load_model

ENGINE_CHOICES = ("auto",) + BACKEND_NAMES
#: First-use exports and TensorRT engines go here (override with FEDN_LIVE_CACHE).
DEFAULT_CACHE = Path(os.environ.get("FEDN_LIVE_CACHE", "~/.cache/fedn-live")).expanduser()
#: Largest encoder batch one call sends (TensorRT profile max; bigger batches are chunked).
MAX_ENCODE_BATCH = 32

_HINTS = {"tensorrt": "install the `gpu` extra on an NVIDIA machine (`pip install -e .[gpu]`) "
                      "or use --engine cuda / onnxruntime",
          "cuda": "needs an NVIDIA GPU and a CUDA build of torch (the CPU wheel has none); "
                  "use --engine onnxruntime",
          "onnxruntime": "`pip install onnxruntime==1.32.0` or use --engine torch",
          "torch": "`pip install torch==2.13.0`"}


def _probe(name: str) -> tuple[bool, str]:
    if name == "tensorrt":
        from engine.backends.tensorrt import available
        return available()
    if name == "cuda":
        from engine.backends.cuda import available
        return available()
    if name == "onnxruntime":
        from engine.backends.onnxruntime import available
        return available()
    from engine.backends.torch import available
    return available("cpu")


@dataclass(frozen=True)
class Selection:
    """Which backend runs, and why (the status line)."""

    name: str
    reason: str

    def line(self) -> str:
        return f"engine: {self.name} ({self.reason})"


def select_backend(requested: str = "auto",
                   probe: Callable[[str], tuple[bool, str]] = _probe,
                   log: Callable[[str], None] | None = print) -> Selection:
    """Pick the backend for ``--engine requested`` and print one status line.

    Args:
        requested: "auto", "tensorrt", "cuda", "onnxruntime" or "torch".
        probe: name → (available, why); tests pass fakes.
        log: where the status line goes (None: nowhere).

    Raises:
        ValueError: ``requested`` is not a known choice.
        BackendUnavailable: a named backend cannot run here (one line, with a fix).
    """
    if requested not in ENGINE_CHOICES:
        raise ValueError(f"engine must be one of {ENGINE_CHOICES}, got {requested!r}")
    if requested != "auto":
        ok, why = probe(requested)
        if not ok:
            raise BackendUnavailable(f"--engine {requested} cannot run here: {why}; "
                                     f"{_HINTS[requested]}")
        selection = Selection(requested, f"requested; {why}")
    else:
        skipped = []
        selection = None
        for name in BACKEND_NAMES:
            ok, why = probe(name)
            if ok:
                note = f"; skipped {', '.join(skipped)}" if skipped else ""
                selection = Selection(name, f"auto: {why}{note}")
                break
            skipped.append(f"{name}: {why}")
        if selection is None:
            raise BackendUnavailable("--engine auto: no backend can run here ("
                                     + "; ".join(skipped) + "); `pip install onnxruntime==1.32.0`")
    if log is not None:
        log(selection.line())
    return selection


class Engine:
    """Encoder + detector behind backends of one kind; what the pipeline calls.

    Args:
        encoder: backend with inputs ``flow`` (n, 3, S', S') float32, ``valid`` (n,)
            float32 and output ``features``.
        detector: backend with input ``features`` (1, window, feat_dim): the
            full-window detector.
        name: backend name (for the summary / status line).
        cfg: the model's ``ModelConfig`` (its window × feat_dim is the detector's
            static input shape).
        stepper: backend of the incremental detector (``engine.model.incremental``):
            inputs ``features`` (1, hop, feat_dim) and ``state``, outputs the
            detector's plus ``next_state``; None where the backend has none
            (TensorRT, an older export): the schedule then runs the full window.
    """

    def __init__(self, encoder: Backend, detector: Backend, name: str, cfg,
                 stepper: Backend | None = None) -> None:
        self.encoder, self.detector, self.name = encoder, detector, name
        self.stepper = stepper
        self.cfg = cfg  # the loaded model's ModelConfig (window, hop, labels, decode settings)
        self.window, self.feat_dim = cfg.window, cfg.feat_dim
        self._state0: np.ndarray | None = None  # fresh-stream state, computed on first use

    # --- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, engine: str = "auto", weights: str | Path | None = None,
             onnx_dir: str | Path | None = None, cache_dir: str | Path = DEFAULT_CACHE,
             threads: int = 2, precision: str = "fp16", device: str | None = None,
             model=None, log: Callable[[str], None] = print,
             probe: Callable[[str], tuple[bool, str]] = _probe,
             cuda_graphs: bool = True) -> "Engine":
        """Select a backend, find (or export) the graphs it needs, and activate it.

        Args:
            engine: ``--engine`` choice.
            weights: checkpoint; default the shipped one (ignored when ``model`` given).
            onnx_dir: directory with ``encoder.onnx`` / ``detector.onnx``; default: the
                shipped ones next to the default weights, else exported on first use
                into ``cache_dir``.
            cache_dir: first-use exports and TensorRT engines.
            threads: ONNX Runtime intra-op threads.
            precision: TensorRT precision, "fp16" or "fp32".
            device: where the torch / cuda backend runs; default "cpu" / "cuda" ("cpu"
                with ``cuda_graphs=False`` runs the cuda backend's bucketing eagerly).
            model: a FEDN instance to use instead of loading ``weights``.
            probe: name → (available, why), as :func:`select_backend`'s.
            cuda_graphs: cuda backend: replay CUDA graphs (False: eager on the same
                bucketed buffers, to measure what the graphs save).
        """
        from engine.config import StreamConfig
        from engine.decode import OUTPUT_KEYS
        from engine.export import OnnxPair, check_pair, ensure_onnx
        from engine.model.incremental import STEP_OUTPUTS, IncrementalDetector

        selection = select_backend(engine, probe=probe, log=log)
        shipped = model is None and weights is None  # only then may the shipped ONNX files fit
        model = model if model is not None else load_model(weights, log=log)
        cfg, flow_size = model.cfg, StreamConfig().flow_size
        step = None
        if selection.name in ("torch", "cuda"):  # the torch modules: eager, or CUDA graphs
            make = _torch_maker(selection.name, device, cuda_graphs)
            enc = make(model.encoder, _encoder_specs(flow_size, cfg.appearance_dim),
                       ("features",))
            det = make(model.detector, _detector_specs(cfg), OUTPUT_KEYS)
            step = make(IncrementalDetector(model.detector.eval()), _step_specs(cfg),
                        STEP_OUTPUTS)
        else:
            if onnx_dir is None and shipped and (WEIGHTS_DIR / "encoder.onnx").is_file() \
                    and _exported_from(WEIGHTS_DIR, model, cfg, flow_size, log):
                onnx_dir = WEIGHTS_DIR
            if onnx_dir is not None:
                root = Path(onnx_dir)
                step_path = root / "detector_step.onnx"
                if not step_path.is_file():
                    step_path = None
                    log(f"engine: no detector_step.onnx in {root} (an export from before the "
                        "incremental detector): every hop runs the full window; re-export "
                        "with `python -m engine.export` for the incremental one")
                pair = OnnxPair(root / "encoder.onnx", root / "detector.onnx",
                                detector_step=step_path)
                check_pair(pair, cfg, flow_size)
            else:
                pair = ensure_onnx(model.encoder, model.detector, cfg, cache_dir, flow_size,
                                   log=log)
            if selection.name == "onnxruntime":
                from engine.backends.onnxruntime import OnnxRuntimeBackend
                enc = OnnxRuntimeBackend(pair.encoder, threads=threads)
                det = OnnxRuntimeBackend(pair.detector, threads=threads)
                if pair.detector_step is not None:  # a hop's few positions: one thread is
                    step = OnnxRuntimeBackend(pair.detector_step, threads=1)  # faster than two
            else:  # TensorRT builds the full-window graph only
                enc, det = _tensorrt_pair(pair, cache_dir, precision, flow_size, log,
                                          cfg.appearance_dim)
        eng = cls(enc, det, selection.name, cfg, stepper=step)
        return eng.activate()

    def _backends(self) -> list[Backend]:
        return [self.encoder, self.detector] + ([self.stepper] if self.stepper else [])

    def activate(self) -> "Engine":
        done: list[Backend] = []
        try:
            for backend in self._backends():
                backend.activate()
                done.append(backend)
        except BaseException:
            for backend in done:
                backend.deactivate()
            raise
        return self

    def close(self) -> None:
        for backend in self._backends():
            backend.deactivate()

    def __enter__(self) -> "Engine":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the two calls ------------------------------------------------------------------
    @property
    def appearance_dim(self) -> int:
        """Width of the appearance input the encoder takes (0: flow only)."""
        return getattr(self.cfg, "appearance_dim", 0)

    def encode(self, flow_batch: np.ndarray, valid: np.ndarray,
               appearance: np.ndarray | None = None) -> np.ndarray:
        """Per-frame features.

        Args:
            flow_batch: (n, 3, S', S') float16/float32 flow maps (one per frame).
            valid: (n,) bool/float; 0 where no face (those rows get the no-face feature).
            appearance: (n, appearance_dim) float32 for a model with appearance fusion
                (``stream.appearance.model_input``), else None.

        Returns:
            (n, feat_dim) float32.
        """
        flow = np.asarray(flow_batch, dtype=np.float32)
        mask = np.asarray(valid, dtype=np.float32).reshape(-1)
        if flow.ndim != 4 or flow.shape[0] != mask.shape[0]:
            raise BackendError(f"Engine.encode: flow_batch {flow.shape} and valid {mask.shape} "
                               "must be (n, 3, S, S) and (n,)")
        inputs = {"flow": flow, "valid": mask}
        if self.appearance_dim:
            app = None if appearance is None else np.asarray(appearance, np.float32)
            if app is None or app.shape != (len(mask), self.appearance_dim):
                raise BackendError(f"Engine.encode: this model fuses appearance and needs "
                                   f"appearance (n={len(mask)}, {self.appearance_dim}), got "
                                   f"{None if app is None else app.shape}")
            inputs["appearance"] = app
        elif appearance is not None:
            raise BackendError("Engine.encode: this model is flow only "
                               "(ModelConfig.appearance_dim = 0); pass appearance=None")
        parts = [self.encoder.infer({k: v[i:i + MAX_ENCODE_BATCH]
                                     for k, v in inputs.items()})["features"]
                 for i in range(0, max(len(mask), 1), MAX_ENCODE_BATCH)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def detect(self, features_window: np.ndarray) -> dict[str, np.ndarray]:
        """Detector outputs (batch 1) for the last ``window`` features.

        Args:
            features_window: (window, feat_dim) or (1, window, feat_dim).

        Returns:
            ``engine.decode.OUTPUT_KEYS`` → arrays with a leading batch of 1.
        """
        feats = np.asarray(features_window, dtype=np.float32)
        if feats.ndim == 2:
            feats = feats[None]  # (T, F) -> (1, T, F)
        return self.detector.infer({"features": np.ascontiguousarray(feats)})

    @property
    def can_step(self) -> bool:
        """Whether :meth:`detect_step` runs here (else only :meth:`detect`)."""
        return self.stepper is not None

    @property
    def step_batch(self) -> bool:
        """Whether one :meth:`detect_step` call takes several streams (a dynamic batch dim)."""
        return self.stepper is not None and any(
            s.name == "state" and s.shape[:1] == (None,) for s in self.stepper.inputs)

    def detect_step(self, features_hop: np.ndarray, state: np.ndarray
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Incremental detector: outputs of ``hop`` new frames, and the state after them.

        Args:
            features_hop: (B, hop, feat_dim) — the hop's features of B streams — or
                (hop, feat_dim) for one; B > 1 needs :attr:`step_batch`.
            state: (B, rows, channels): each stream's from :meth:`initial_state` or the
                previous call, stacked.

        Returns:
            (``engine.decode.OUTPUT_KEYS`` → arrays with a leading batch of B over
            the hop's frames: its points ``pyramid_points(hop, levels)`` and its
            ``hop`` frames, next state (B, rows, channels)). Row b is what stream b
            alone gives: equal to :meth:`detect` on its window ending with these
            frames, at these frames.
        """
        if self.stepper is None:
            raise BackendError(f"Engine.detect_step: the {self.name} backend has no incremental "
                               "detector here; use detect() on the full window")
        feats = np.asarray(features_hop, dtype=np.float32)
        if feats.ndim == 2:
            feats = feats[None]  # (hop, F) -> (1, hop, F)
        state = np.asarray(state, dtype=np.float32)
        if state.ndim != 3 or feats.ndim != 3 or state.shape[0] != feats.shape[0]:
            raise BackendError(f"Engine.detect_step: features {feats.shape} and state "
                               f"{state.shape} must be (B, hop, feat_dim) and (B, rows, "
                               "channels) with the same B")
        out = self.stepper.infer({"features": np.ascontiguousarray(feats),
                                  "state": np.ascontiguousarray(state)})
        state = out.pop("next_state")
        return out, state

    def initial_state(self) -> np.ndarray:
        """(1, rows, channels): the incremental detector's state for a fresh stream (a copy).

        Computed once per engine through the backend itself ("no face" hops over
        a zero state until it is a fixed point); raises :class:`BackendError` if
        it does not settle.
        """
        if self._state0 is None:
            from engine.model.incremental import initial_state
            if self.stepper is None:
                raise BackendError(f"Engine.initial_state: the {self.name} backend has no "
                                   "incremental detector here")
            state, drift = initial_state(self.cfg, self.padding(1)[0], lambda f, s: {
                "next_state": self.detect_step(f, s)[1]})
            if not drift <= 1e-4:
                raise BackendError(f"Engine.initial_state: the {self.name} incremental detector "
                                   f"does not settle on 'no face' (changes by {drift:.2e} per "
                                   "hop); re-export with `python -m engine.export`")
            self._state0 = state
        return self._state0.copy()

    def padding(self, n: int) -> np.ndarray:
        """(n, feat_dim) features of frames before the stream starts (the no-face feature)."""
        spec = next(s for s in self.encoder.inputs if s.name == "flow")
        flow = np.zeros((1,) + tuple(spec.shape[1:]), np.float32)
        app = np.zeros((1, self.appearance_dim), np.float32) if self.appearance_dim else None
        no_face = self.encode(flow, np.zeros(1, np.float32), app)
        return np.repeat(no_face, n, axis=0)


def _exported_from(onnx_dir: Path, model, cfg, flow_size: int, log) -> bool:
    """Whether the ONNX files in ``onnx_dir`` were exported from ``model``'s weights.

    ``python -m engine.export`` writes ``manifest.json`` with the model fingerprint;
    files without one are trusted (their shapes are still checked).
    """
    import json

    from engine.export import model_fingerprint
    manifest = onnx_dir / "manifest.json"
    if not manifest.is_file():
        return True
    try:
        want = json.loads(manifest.read_text()).get("fingerprint")
    except ValueError:
        want = None
    if want == model_fingerprint((model.encoder, model.detector), cfg, flow_size):
        return True
    log(f"engine: the ONNX files in {onnx_dir} were exported from other weights; "
        "using a fresh export instead (re-run `python -m engine.export` to update them)")
    return False


def _encoder_specs(flow_size: int, appearance_dim: int = 0) -> tuple[TensorSpec, ...]:
    specs = (TensorSpec("flow", (None, 3, flow_size, flow_size), np.float32),
             TensorSpec("valid", (None,), np.float32))
    return specs + ((TensorSpec("appearance", (None, appearance_dim), np.float32),)
                    if appearance_dim else ())


def _detector_specs(cfg) -> tuple[TensorSpec, ...]:
    return (TensorSpec("features", (1, cfg.window, cfg.feat_dim), np.float32),)


def _step_specs(cfg) -> tuple[TensorSpec, ...]:
    """The incremental detector's inputs: a dynamic batch of streams first."""
    from engine.model.incremental import state_shape
    return (TensorSpec("features", (None, cfg.hop, cfg.feat_dim), np.float32),
            TensorSpec("state", (None,) + state_shape(cfg)[1:], np.float32))


def _torch_maker(name: str, device: str | None, cuda_graphs: bool) -> Callable[..., Backend]:
    """(module, specs, outputs) → the torch backend, or the cuda backend, on ``device``."""
    if name == "torch":
        from engine.backends.torch import TorchBackend
        where = device or "cpu"
        return lambda module, specs, outputs: TorchBackend(module, specs, outputs, device=where)
    from engine.backends.cuda import CudaGraphBackend
    where = device or "cuda"
    return lambda module, specs, outputs: CudaGraphBackend(module, specs, outputs, device=where,
                                                           graphs=cuda_graphs)


def _tensorrt_pair(pair, cache_dir, precision, flow_size, log, appearance_dim: int = 0):
    from engine.backends.cache import onnx_sha256
    from engine.backends.fp16 import convert_to_fp16
    from engine.backends.tensorrt import TensorRTBackend

    enc_path, det_path = pair.encoder, pair.detector
    if precision == "fp16":  # TensorRT >= 10 builds strongly typed: FP16 lives in the graph
        root = Path(cache_dir).expanduser() / "fp16"
        converted = []
        for path in (enc_path, det_path):
            out = path.with_name(f"{path.stem}.fp16.onnx")  # shipped / exported next to it
            if not out.is_file():
                out = root / onnx_sha256(path)[:16] / f"{path.stem}.fp16.onnx"
                if not out.is_file():
                    log(f"engine: converting {path.name} to FP16 for TensorRT ({out})")
                    convert_to_fp16(path, out)
            converted.append(out)
        enc_path, det_path = converted
    profile = {"flow": ((1, 3, flow_size, flow_size), (1, 3, flow_size, flow_size),
                        (MAX_ENCODE_BATCH, 3, flow_size, flow_size)),
               "valid": ((1,), (1,), (MAX_ENCODE_BATCH,))}
    if appearance_dim:  # appearance fusion: the encoder's third input, same batch
        profile["appearance"] = ((1, appearance_dim), (1, appearance_dim),
                                 (MAX_ENCODE_BATCH, appearance_dim))
    engines = Path(cache_dir).expanduser() / "tensorrt"
    return (TensorRTBackend(enc_path, engines, precision, profile=profile, log=log),
            TensorRTBackend(det_path, engines, precision, log=log))
