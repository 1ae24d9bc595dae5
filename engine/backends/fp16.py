"""FP32 ONNX graph → mixed-precision FP16 graph, for TensorRT's strongly typed networks.

TensorRT 11 removed ``BuilderFlag.FP16``: precision comes from the graph. NVIDIA
points to ModelOpt AutoCast (NVIDIA's package index only); our graphs are small
and use a handful of standard ops, so this module does the same job directly:

- float32 weights, constants and ``Cast(to=float)`` become float16;
- the graph keeps **float32 inputs and outputs** (a Cast at each end), so every
  backend is fed and read the same way;
- numerically touchy ops (:data:`KEEP_FP32`: LayerNorm, softmax, ...) run in
  float32 between Casts, and weights used only by them stay float32.

Pure ``onnx``: runs and is tested without a GPU (ONNX Runtime on CPU runs the
result, inserting its own casts where it lacks FP16 kernels).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

#: Ops evaluated in float32 inside the FP16 graph (reductions / exponentials).
KEEP_FP32: frozenset[str] = frozenset({
    "LayerNormalization", "Softmax", "LogSoftmax", "Softplus", "ReduceMean", "ReduceSum",
    "ReduceL2", "Exp", "Log", "Pow", "Sqrt", "Reciprocal", "InstanceNormalization"})


def convert_to_fp16(src: str | Path, dst: str | Path, keep_fp32: frozenset[str] = KEEP_FP32
                    ) -> Path:
    """Write the mixed-precision FP16 version of ONNX file ``src`` to ``dst``.

    Args:
        src: an FP32 ONNX file (external data next to it is read).
        dst: output path; weights go to ``<dst name>.data`` beside it.
        keep_fp32: op types computed in float32.

    Returns:
        ``dst``, checked with ``onnx.checker``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper, shape_inference

    model = onnx.load(str(src))
    inferred = shape_inference.infer_shapes(model)
    ftypes = {vi.name for vi in list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output) if vi.type.tensor_type.elem_type == TensorProto.FLOAT}
    g = model.graph
    ftypes |= {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT}

    consumers: dict[str, list] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    keep_inits = {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT
                  and consumers.get(t.name) and all(n.op_type in keep_fp32
                                                    for n in consumers[t.name])}
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT and t.name not in keep_inits:
            t.CopyFrom(numpy_helper.from_array(
                _to_half(numpy_helper.to_array(t)), t.name))

    # graph inputs: float32 outside, a Cast to float16 feeds the graph
    rename: dict[str, str] = {}
    head = []
    for vi in g.input:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            rename[vi.name] = f"{vi.name}__fp16"
            head.append(helper.make_node("Cast", [vi.name], [rename[vi.name]],
                                         to=TensorProto.FLOAT16, name=f"{vi.name}__cast_in"))
    out_names = {vi.name for vi in g.output if vi.type.tensor_type.elem_type == TensorProto.FLOAT}

    new_nodes = list(head)
    tail = []
    for node in g.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(_to_half(numpy_helper.to_array(attr.t)),
                                                            attr.t.name))
        elif node.op_type == "ConstantOfShape":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    half = _to_half(numpy_helper.to_array(attr.t))
                    attr.t.CopyFrom(numpy_helper.from_array(half))
        elif node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
        keep = node.op_type in keep_fp32
        if keep:  # float16 inputs -> Cast to float32; float32 outputs -> Cast back to float16
            for i, name in enumerate(node.input):
                if name and name in ftypes and name not in keep_inits:
                    cast_out = f"{name}__to32_{node.name or id(node)}_{i}"
                    new_nodes.append(helper.make_node("Cast", [name], [cast_out],
                                                      to=TensorProto.FLOAT, name=f"{cast_out}_n"))
                    node.input[i] = cast_out
        post = []
        for i, name in enumerate(node.output):
            if not name or name not in ftypes:
                continue
            if keep:
                inner = f"{name}__fp32"
                node.output[i] = inner
                post.append(helper.make_node("Cast", [inner], [name], to=TensorProto.FLOAT16,
                                             name=f"{name}__cast16"))
        new_nodes.append(node)
        new_nodes.extend(post)
    # graph outputs: whatever produced them (now float16) goes through a Cast to float32
    for node in new_nodes:
        for i, name in enumerate(node.output):
            if name in out_names:
                node.output[i] = f"{name}__fp16"
                tail.append(helper.make_node("Cast", [node.output[i]], [name],
                                             to=TensorProto.FLOAT, name=f"{name}__cast_out"))
    for node in new_nodes + tail:  # consumers of a renamed output read the float16 copy
        for i, name in enumerate(node.input):
            if name in out_names and not (node.op_type == "Cast" and node.name.endswith(
                    "__cast_out")):
                node.input[i] = f"{name}__fp16"
    del g.node[:]
    g.node.extend(new_nodes + tail)
    del g.value_info[:]

    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    data = dst.with_name(dst.name + ".data")
    if data.exists():
        data.unlink()  # save appends to an existing data file
    onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data.name, size_threshold=1024)
    onnx.checker.check_model(str(dst), full_check=True)
    return dst


def _to_half(arr: np.ndarray) -> np.ndarray:
    """float32 → float16, clipping finite values to the float16 range (inf stays inf)."""
    fmax = float(np.finfo(np.float16).max)
    out = np.where(np.isfinite(arr), np.clip(arr, -fmax, fmax), arr)
    return out.astype(np.float16)


def fp32_islands(path: str | Path) -> dict[str, list[str]]:
    """For each op type of :data:`KEEP_FP32` in an ONNX file: the elem types of its inputs.

    Used to check FP16 export hygiene (every LayerNorm must read float32).
    Returns ``{op_type: ["FLOAT", ...]}`` over the op's float inputs, all nodes.
    """
    import onnx
    from onnx import TensorProto, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False))
    g = model.graph
    types = {vi.name: vi.type.tensor_type.elem_type
             for vi in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    found: dict[str, list[str]] = {}
    for node in g.node:
        if node.op_type in KEEP_FP32:
            for name in node.input:
                if name and name in types:
                    found.setdefault(node.op_type, []).append(
                        TensorProto.DataType.Name(types[name]))
    return found
