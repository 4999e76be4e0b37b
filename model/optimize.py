"""Build-time rewrites of the OpenCV-zoo MobileFaceNet FER classifier.

The upstream model (``facial_expression_recognition_mobilefacenet_2022july_int8.onnx``,
MANIFEST section 2) is an Intel Neural Compressor QLinear graph whose batch
dimension is fixed at 1.

Profiling it in onnxruntime 1.31 (one thread) shows that about 70% of the time
goes to the 33 ``PRelu`` nodes, not to the int8 convolutions: ORT runs PRelu
with a per-channel slope ``[1,C,1,1]`` through its generic broadcasting path,
several ns per element. Batching does not help that (nor the int8 convs), which
is why simply making the batch symbolic gave no per-face speed-up.

:func:`build_batched_classifier` therefore writes the **same int8 graph** with

* each ``PRelu(x, a)`` replaced by ``Max(x, Mul(x, a))``. This is exact, bit
  for bit, whenever every slope ``a <= 1``: for ``x >= 0``, ``a*x <= x``; for
  ``x < 0``, ``a*x >= x``, and the product is the same one PRelu computes.
  The model's slopes lie in [-0.61, 0.72]. ``Mul`` with a per-channel constant
  and ``Max`` of two equal shapes both run on vectorised kernels;
* a symbolic batch dimension ``N`` on ``data`` and ``label`` (``Flatten`` has
  ``axis=1``, so nothing else depends on the batch) and the stale
  ``value_info`` cleared.

The logits are identical to the original model's (max abs diff 0.0 on face
crops and random inputs), at about 0.4-0.45x its single-thread latency, at
batch 1 as well as batched.

:func:`dequantize_graph` (a float32 rebuild from the int8 weights) is kept for
the benchmark's comparison: it is not faster once PRelu is fixed, and it moves
the logits by up to ~2 because activations are no longer rounded to uint8.

This runs once, at ``emotion models fetch`` time, never on the inference path;
it needs the ``onnx`` package. The output is deterministic (same bytes for the
same input), so its sha256 can be pinned.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "BATCH_DIM",
    "build_batched_classifier",
    "dequantize_graph",
    "make_batch_dynamic",
    "prelu_to_mul_max",
]

#: Name given to the symbolic batch dimension of ``data`` and ``label``.
BATCH_DIM = "N"

_INPUT = "data"
_OUTPUT = "label"


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _set_batch_dim(value_info: Any, name: str) -> None:
    dim = value_info.type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_param = name


def make_batch_dynamic(model: Any, dim_name: str = BATCH_DIM) -> Any:
    """Make dim 0 of every graph input and output symbolic, in place.

    Intermediate ``value_info`` entries are cleared because they carry the
    old fixed batch of 1; onnxruntime re-infers shapes at load time. Returns
    ``model`` for chaining.
    """
    graph = model.graph
    initializer_names = {i.name for i in graph.initializer}
    for vi in list(graph.input) + list(graph.output):
        if vi.name in initializer_names:
            continue
        _set_batch_dim(vi, dim_name)
    del graph.value_info[:]
    return model


def prelu_to_mul_max(model: Any) -> int:
    """Replace ``PRelu(x, a)`` by ``Max(x, Mul(x, a))`` in place; return the count.

    Only nodes whose slope is a constant initializer with every value ``<= 1``
    are rewritten (there the two forms agree bit for bit; see the module
    docstring); any other PRelu is left as it is. ``Mul`` broadcasts the slope
    exactly as PRelu does (unidirectionally, ``[1,C,1,1]`` or ``[C,1,1]``
    against NCHW).
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    taken = {o for n in graph.node for o in n.output} | set(inits) | {i.name for i in graph.input}
    nodes: list[Any] = []
    count = 0
    for idx, n in enumerate(graph.node):
        slope = n.input[1] if n.op_type == "PRelu" and len(n.input) == 2 else None
        if slope is None or slope not in inits or n.domain not in ("", "ai.onnx"):
            nodes.append(n)
            continue
        a = numpy_helper.to_array(inits[slope])
        if not (np.isfinite(a).all() and (a <= 1).all()):
            nodes.append(n)
            continue
        x, y = n.input[0], n.output[0]
        ax = f"{y}_prelu_ax"
        if ax in taken:
            raise ValueError(f"tensor name clash: {ax!r}")
        taken.add(ax)
        base = n.name or f"PRelu_{idx}"
        nodes.append(helper.make_node("Mul", [x, slope], [ax], name=f"{base}_mul"))
        nodes.append(helper.make_node("Max", [x, ax], [y], name=f"{base}_max"))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return count


def dequantize_graph(model: Any) -> tuple[Any, dict[str, int]]:
    """Return a float32 copy of a QLinear (QOperator-format) ONNX model.

    Supported ops: ``QuantizeLinear``, ``DequantizeLinear`` (per-tensor),
    ``QLinearConv``, ``QLinearMatMul``, ``QLinearAdd``; every other node is
    copied unchanged and must already work on float tensors. A quantized
    tensor ``T_q`` is replaced by the float tensor that the graph
    dequantizes it to (the output name of its ``DequantizeLinear``, when
    there is one), so surviving float nodes keep their original inputs.

    Returns the new model and counts of the rewritten node types.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}

    # Pass 1: the float name standing for each quantized tensor.
    fname: dict[str, str] = {}
    for n in graph.node:
        if n.op_type == "QuantizeLinear":
            fname[n.output[0]] = n.input[0]
    for n in graph.node:
        if n.op_type == "DequantizeLinear":
            q = n.input[0]
            if q in inits or producer.get(q) is not None and producer[q].op_type == "QuantizeLinear":
                continue  # dequantized initializer or DQ(Q(x)): handled in pass 2
            if q in fname:
                raise ValueError(f"tensor {q!r} is dequantized twice")
            fname[q] = n.output[0]

    def float_of(q: str) -> str:
        return fname.setdefault(q, q + "_float")

    new_inits: dict[str, np.ndarray] = {}

    def add_init(name: str, arr: np.ndarray) -> str:
        if name in new_inits or name in inits:
            raise ValueError(f"initializer name clash: {name!r}")
        new_inits[name] = np.ascontiguousarray(arr, dtype=np.float32)
        return name

    def scalar(name: str) -> float:
        arr = inits[name]
        if arr.size != 1:
            raise ValueError(f"only per-tensor quantization is supported ({name!r} has {arr.size})")
        return float(arr.reshape(()))

    def deq(name: str, scale: str, zero: str) -> np.ndarray:
        q = inits[name].astype(np.float64)
        return (q - float(inits[zero].reshape(()))) * scalar(scale)

    nodes: list[Any] = []
    counts: dict[str, int] = {}
    for n in graph.node:
        op = n.op_type
        counts[op] = counts.get(op, 0) + 1
        if op == "QuantizeLinear":
            continue
        if op == "DequantizeLinear":
            q = n.input[0]
            if q in inits:
                arr = deq(q, n.input[1], n.input[2])
                new_inits[n.output[0]] = arr.astype(np.float32)
            elif q in producer and producer[q].op_type == "QuantizeLinear":
                nodes.append(helper.make_node("Identity", [float_of(q)], [n.output[0]], name=n.name))
            continue
        if op == "QLinearConv":
            x, xs, _xz, w, ws, wz, _ys, _yz = n.input[:8]
            w_f = deq(w, ws, wz)
            ins = [float_of(x), add_init(w + "_float", w_f)]
            if len(n.input) > 8 and n.input[8]:
                b = inits[n.input[8]].astype(np.float64) * scalar(xs) * scalar(ws)
                if b.size == 1 and w_f.shape[0] != 1:
                    b = np.broadcast_to(b.reshape(-1), (w_f.shape[0],))
                ins.append(add_init(n.input[8] + "_float", b))
            a = _attrs(n)
            nodes.append(helper.make_node("Conv", ins, [float_of(n.output[0])], name=n.name, **a))
            continue
        if op == "QLinearMatMul":
            a_q, _as, _az, b_q, bs, bz, _ys, _yz = n.input
            b_name = add_init(b_q + "_float", deq(b_q, bs, bz)) if b_q in inits else float_of(b_q)
            nodes.append(helper.make_node("MatMul", [float_of(a_q), b_name], [float_of(n.output[0])], name=n.name))
            continue
        if op == "QLinearAdd":
            a_q, as_, az, b_q, bs, bz, _cs, _cz = n.input
            ins = []
            for t, s, z in ((a_q, as_, az), (b_q, bs, bz)):
                if t in inits:
                    ins.append(add_init(t + "_float", deq(t, s, z)))
                else:
                    ins.append(float_of(t))
            nodes.append(helper.make_node("Add", ins, [float_of(n.output[0])], name=n.name))
            continue
        if op.startswith("QLinear") or n.domain not in ("", "ai.onnx"):
            raise ValueError(f"unsupported node {n.name!r} ({n.domain}:{op})")
        nodes.append(n)

    # Keep the float initializers still used (PRelu slopes, the float GDC conv).
    used = {i for nd in nodes for i in nd.input}
    initializers = [numpy_helper.from_array(new_inits[k], k) for k in new_inits if k in used]
    initializers += [i for i in graph.initializer if i.name in used and i.name not in new_inits]
    initializers.sort(key=lambda t: t.name)

    new_graph = helper.make_graph(
        nodes,
        graph.name or "mobilefacenet_fer",
        [vi for vi in graph.input if vi.name not in inits],
        list(graph.output),
        initializer=initializers,
    )
    opset = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    out = helper.make_model(new_graph, opset_imports=opset, producer_name="emotion.model.optimize")
    out.ir_version = model.ir_version
    onnx.checker.check_model(out)
    return out, counts


def _atomic_write(data: bytes, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dst.name + ".", suffix=".tmp", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build_batched_classifier(src: Path, dst: Path) -> dict[str, Any]:
    """Write a batchable, faster, output-identical copy of the int8 FER model.

    ``src`` is the upstream int8 ONNX file; ``dst`` receives (atomically) the
    same int8 graph with every PRelu rewritten as ``Max(x, Mul(x, a))`` (see
    :func:`prelu_to_mul_max`) and a symbolic batch dimension ``N``: input
    ``data`` float32 ``[N,3,112,112]``, output ``label`` float32 ``[N,7]``
    logits. The bytes are deterministic for a given ``src``.

    Returns a small summary: the variant name, source/output sha256 and size,
    the number of PRelu rewritten, node counts before/after, the batch dim.
    """
    import onnx

    src, dst = Path(src), Path(dst)
    raw = src.read_bytes()
    model = onnx.load_from_string(raw)
    names_in = [i.name for i in model.graph.input]
    names_out = [o.name for o in model.graph.output]
    if _INPUT not in names_in or names_out != [_OUTPUT]:
        raise ValueError(f"unexpected model I/O: inputs {names_in}, outputs {names_out}")

    def op_counts(m: Any) -> dict[str, int]:
        c: dict[str, int] = {}
        for n in m.graph.node:
            c[n.op_type] = c.get(n.op_type, 0) + 1
        return dict(sorted(c.items()))

    before = op_counts(model)
    rewritten = prelu_to_mul_max(model)
    make_batch_dynamic(model)
    onnx.checker.check_model(model)
    data = model.SerializeToString(deterministic=True)
    _atomic_write(data, dst)
    return {
        "variant": "int8_prelu_as_mul_max_dynamic_batch",
        "batch_dim": BATCH_DIM,
        "prelu_rewritten": rewritten,
        "src_sha256": hashlib.sha256(raw).hexdigest(),
        "dst_sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "ops_before": before,
        "ops_after": op_counts(model),
    }
