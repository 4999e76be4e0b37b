"""Derived model files, built once at fetch time from a verified original (never at inference time).

YuNet's ONNX declares a fixed 1x3x640x640 input although the network is fully convolutional; a copy with
symbolic H and W lets onnxruntime run it at each image's own size; SFace needs its int8 weights folded to
load at all (:func:`folded_identity`). A sidecar JSON records the source
sha256 and the derived file's sha256, which the engine checks before loading.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from emotion.core.manifest import ModelSpec, sha256_file
from emotion.core.model_files import derived_path, derived_sidecar, verify_derived


def dynamic_detector_input(src: Path, dst: Path) -> dict:
    """YuNet with symbolic input height/width and output anchor counts."""
    import onnx  # fetch-time dependency only

    model = onnx.load(str(src))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = f"anchors_{output.name}"
    del model.graph.value_info[:]  # stale fixed shapes; onnxruntime infers them per run
    _atomic_write(dst, model.SerializeToString())
    return {"transform": "dynamic_hw"}


def batched_classifier(src: Path, dst: Path) -> dict:
    """The classifier with a symbolic batch dimension (see model/optimize.py)."""
    from emotion.model.optimize import build_batched_classifier

    return build_batched_classifier(src, dst)


def folded_identity(src: Path, dst: Path) -> dict:
    """SFace (MANIFEST section 4) as a graph onnxruntime loads: the shipped file declares 29 stale inputs no
    node uses and stores its weights as blocked int8 (``DequantizeLinear`` with ``block_size``, opset 21).

    Keeps only the input ``data`` with a symbolic batch, folds each ``DequantizeLinear`` (+ ``Reshape``) weight
    chain into an fp32 initializer, and rewrites each ``PRelu(x, s)`` as ``Relu(x) + s * (x - Relu(x))``
    (exact; onnxruntime's PRelu with per-channel slopes was about 2x slower here). Outputs match the shipped
    graph (stray inputs removed) within 3e-6.
    """
    import numpy as np
    import onnx  # fetch-time dependency only
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "DequantizeLinear" and all(name in values for name in node.input):
            q, scale, zero = (values[name] for name in node.input)
            axis, block = attrs.get("axis", 1), attrs.get("block_size", 0)
            if block:  # blocked: one scale per `block` elements along `axis`
                keep = tuple(slice(0, n) if i == axis else slice(None) for i, n in enumerate(q.shape))
                scale = np.repeat(scale, block, axis=axis)[keep]
                zero = np.repeat(zero, block, axis=axis)[keep]
            values[node.output[0]] = (q.astype(np.float32) - zero.astype(np.float32)) * scale.astype(np.float32)
        elif node.op_type == "Reshape" and all(name in values for name in node.input):
            values[node.output[0]] = values[node.input[0]].reshape(values[node.input[1]])
        elif node.op_type == "PRelu":
            x, slope = node.input
            y = node.output[0]
            nodes += [helper.make_node("Relu", [x], [f"{y}_pos"]),
                      helper.make_node("Sub", [x, f"{y}_pos"], [f"{y}_neg"]),
                      helper.make_node("Mul", [f"{y}_neg", slope], [f"{y}_scaled"]),
                      helper.make_node("Add", [f"{y}_pos", f"{y}_scaled"], [y])]
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    initializers = [numpy_helper.from_array(np.ascontiguousarray(values[name]), name)
                    for name in sorted(used) if name in values]
    (data,) = [i for i in graph.input if i.name == "data"]
    for value in (data, graph.output[0]):
        value.type.tensor_type.shape.dim[0].Clear()
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    folded = helper.make_graph(nodes, graph.name, [data], list(graph.output), initializers)
    derived = helper.make_model(folded, opset_imports=list(model.opset_import), ir_version=model.ir_version,
                                producer_name="emotion.model.derived")
    onnx.checker.check_model(derived)
    _atomic_write(dst, derived.SerializeToString())
    return {"transform": "folded", "nodes": len(nodes), "initializers": len(initializers)}


TRANSFORMS: dict[str, Callable[[Path, Path], dict]] = {
    "dynamic_hw": dynamic_detector_input,
    "batched": batched_classifier,
    "folded": folded_identity,
}


def _atomic_write(dst: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, dst)


def build_derived(spec: ModelSpec, model_dir: Path) -> Path | None:
    """Build (or keep, when current) the derived file of a verified model; None when it has none."""
    if not spec.derive:
        return None
    target = derived_path(spec, model_dir)
    if verify_derived(spec, model_dir) is not None:
        return target
    info = TRANSFORMS[spec.derive](model_dir / spec.file, target)
    record = {"source_sha256": spec.sha256, "sha256": sha256_file(target), **info}
    _atomic_write(derived_sidecar(target), json.dumps(record, indent=2, sort_keys=True).encode())
    return target
