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

The last section, :func:`prelu_on_codes`, is for our own 8-class model's QDQ
int8 graph: ``emotion export --int8`` computes its PReLUs on the uint8 codes
(see the comment there), at export time; the shipped file is the result.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

__all__ = [
    "BATCH_DIM",
    "build_batched_classifier",
    "choose_precise_prelus",
    "dequantize_graph",
    "float_activations",
    "make_batch_dynamic",
    "prelu_on_codes",
    "prelu_sites",
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



# --- PRelu on uint8 codes (our own QDQ int8 MobileFaceNet) -----------------------------------------------------
#
# ``emotion export --int8`` writes each PRelu of the 8-class MobileFaceNet as ``Max(x, Mul(x, a))`` between Q/DQ
# pairs. onnxruntime fuses the int8 convolutions but runs each such PRelu as four float passes over the activation
# (two DequantizeLinear, Max, QuantizeLinear) plus an int8 Mul: 70% of the time per face. Computing the PRelu on
# the uint8 codes removes the float passes. Two forms, chosen per PRelu (:func:`choose_precise_prelus`):
#
# * "codes" (fast): ``a*x`` is requantised to x's own scale and zero point, so ``Max`` compares uint8 codes and
#   the result keeps x's scale. The int32 biases of the convolutions that read it are requantised to match: the
#   QDQ conv fusion needs bias scale = input scale x weight scale, and leaves the conv in float otherwise. The
#   cost is the rounding of ``a*x`` on x's coarser grid.
# * "split" (precise): ``relu(x) + a*min(x, 0)``: relu and min on the codes, ``a*min(x, 0)`` at a scale of its
#   own, added at the PRelu output's original scale.


@dataclass
class PreluSite:
    """One PRelu in QDQ form: ``Q_y(Max(DQ_x(x), DQ_ax(Q_ax(Mul(DQ_x(x), a)))))``."""

    max: Any
    dq_x: Any
    mul: Any
    q_ax: Any
    dq_ax: Any
    q_y: Any


def _graph_maps(graph: Any) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    return producer, consumers


def _is(node: Any, op_type: str) -> TypeGuard[Any]:
    return node is not None and node.op_type == op_type


def prelu_sites(model: Any) -> list[PreluSite]:
    """The PRelus of a QDQ graph still in the float ``Max(x, Mul(x, a))`` form, in graph order."""
    producer, consumers = _graph_maps(model.graph)
    sites = []
    for node in model.graph.node:
        if node.op_type != "Max" or len(node.input) != 2:
            continue
        dq_x, dq_ax = producer.get(node.input[0]), producer.get(node.input[1])
        q_ax = producer.get(dq_ax.input[0]) if _is(dq_ax, "DequantizeLinear") else None
        mul = producer.get(q_ax.input[0]) if _is(q_ax, "QuantizeLinear") else None
        after = consumers.get(node.output[0], [])
        if (_is(dq_x, "DequantizeLinear") and _is(mul, "Mul") and mul.input[0] == dq_x.output[0]
                and len(after) == 1 and _is(after[0], "QuantizeLinear")):
            sites.append(PreluSite(node, dq_x, mul, q_ax, dq_ax, after[0]))
    return sites


def float_activations(model: Any) -> Any:
    """A copy of a QDQ graph with every activation Q -> DQ pair removed (the weights stay as they are): the float
    network its int8 activations approximate."""
    import onnx
    from onnx import helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    producer, _ = _graph_maps(graph)
    outputs = {o.name for o in graph.output}
    rename: dict[str, str] = {}
    nodes = []
    for n in graph.node:
        q = producer.get(n.input[0]) if n.op_type == "DequantizeLinear" else None
        if not _is(q, "QuantizeLinear"):
            nodes.append(n)
        elif n.output[0] in outputs:  # keep the graph output's name
            nodes.append(helper.make_node("Identity", [q.input[0]], [n.output[0]]))
        else:
            rename[n.output[0]] = q.input[0]
    for n in nodes:
        for i, name in enumerate(n.input):
            n.input[i] = rename.get(name, name)
    needed = {name for n in nodes for name in n.input} | outputs
    del graph.node[:]
    graph.node.extend(n for n in nodes if n.output[0] in needed)
    _drop_unused_initializers(graph)
    return out


def _drop_unused_initializers(graph: Any) -> None:
    used = {name for n in graph.node for name in n.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _codes_form(site: PreluSite, consumers: dict[str, list[Any]]) -> list[Any]:
    """Rewire ``site`` in place to the fast form; returns the nodes it no longer uses."""
    scale, zero = site.dq_x.input[1], site.dq_x.input[2]
    site.q_ax.input[1], site.q_ax.input[2] = scale, zero
    codes = site.max.output[0] + "_codes"
    site.max.input[0], site.max.input[1] = site.dq_x.input[0], site.q_ax.output[0]
    site.max.output[0] = codes
    for dq in consumers[site.q_y.output[0]]:
        if dq.op_type != "DequantizeLinear":
            raise ValueError(f"PRelu output {site.q_y.output[0]!r} feeds {dq.op_type}, not DequantizeLinear")
        dq.input[0], dq.input[1], dq.input[2] = codes, scale, zero
    return [site.dq_ax, site.q_y]


def _split_form(site: PreluSite, arrays: dict[str, Any], slope: Any) -> tuple[list[Any], list[Any]]:
    """The nodes that replace the site's Max in the precise form, and the initializers they add. ``slope``: the
    PRelu's per-channel slopes (float array)."""
    import numpy as np
    from onnx import helper, numpy_helper

    codes, scale, zero = site.dq_x.input
    z = int(arrays[zero])
    lowest = -z * float(arrays[scale])  # the most negative x the codes can hold
    neg_lo, neg_hi = min(0.0, float(slope.max()) * lowest), max(0.0, float(slope.min()) * lowest)  # a*min(x, 0)
    neg_scale = max((neg_hi - neg_lo) / 255.0, 1e-12)
    p = site.max.output[0]
    inits = [numpy_helper.from_array(np.array(z, np.uint8), p + "_zero_code"),
             numpy_helper.from_array(np.array(neg_scale, np.float32), p + "_neg_scale"),
             numpy_helper.from_array(np.array(round(-neg_lo / neg_scale), np.uint8), p + "_neg_zero_point")]
    neg_q = [p + "_neg_scale", p + "_neg_zero_point"]
    nodes = [
        helper.make_node("Max", [codes, p + "_zero_code"], [p + "_pos_codes"]),
        helper.make_node("Min", [codes, p + "_zero_code"], [p + "_neg_codes"]),
        helper.make_node("DequantizeLinear", [p + "_neg_codes", scale, zero], [p + "_neg"]),
        helper.make_node("Mul", [p + "_neg", site.mul.input[1]], [p + "_neg_ax"]),
        helper.make_node("QuantizeLinear", [p + "_neg_ax", *neg_q], [p + "_neg_ax_codes"]),
        helper.make_node("DequantizeLinear", [p + "_neg_ax_codes", *neg_q], [p + "_neg_ax_dq"]),
        helper.make_node("DequantizeLinear", [p + "_pos_codes", scale, zero], [p + "_pos"]),
        helper.make_node("Add", [p + "_pos", p + "_neg_ax_dq"], [p]),
    ]
    return nodes, inits


def _match_conv_biases(graph: Any) -> int:
    """Requantise each QDQ conv's int32 bias whose scale is not input scale x weight scale; returns the count."""
    import numpy as np
    from onnx import numpy_helper

    inits = {t.name: t for t in graph.initializer}
    producer, _ = _graph_maps(graph)
    fixed = 0
    for conv in graph.node:
        if conv.op_type != "Conv" or len(conv.input) < 3:
            continue
        dq_x, dq_w, dq_b = (producer.get(name) for name in conv.input[:3])
        dq = "DequantizeLinear"
        if not (_is(dq_x, dq) and _is(dq_w, dq) and _is(dq_b, dq)) or dq_b.input[0] not in inits:
            continue
        arr: dict[str, Any] = {name: numpy_helper.to_array(inits[name]).astype(np.float64)
                               for name in (dq_x.input[1], dq_w.input[1], *dq_b.input[:3])}
        wanted = arr[dq_x.input[1]] * arr[dq_w.input[1]]
        if np.allclose(arr[dq_b.input[1]], wanted, rtol=1e-6, atol=0):
            continue
        bias = (arr[dq_b.input[0]] - arr[dq_b.input[2]]) * arr[dq_b.input[1]]
        codes = np.clip(np.round(bias / wanted), -(2**31), 2**31 - 1).astype(np.int32)
        inits[dq_b.input[0]].CopyFrom(numpy_helper.from_array(codes, dq_b.input[0]))
        inits[dq_b.input[1]].CopyFrom(numpy_helper.from_array(wanted.astype(np.float32), dq_b.input[1]))
        inits[dq_b.input[2]].CopyFrom(numpy_helper.from_array(np.zeros_like(codes), dq_b.input[2]))
        fixed += 1
    return fixed


def prelu_on_codes(model: Any, precise: Any = ()) -> dict[str, int]:
    """Rewrite every PRelu site of a QDQ graph (:func:`prelu_sites`) in place: the sites whose index is in
    ``precise`` in the split form, the others in the codes form. Returns counts."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph
    sites = prelu_sites(model)
    if not sites:
        raise ValueError("no PRelu in Max(x, Mul(x, a)) QDQ form: not an `emotion export --int8` graph, "
                         "or rewritten already")
    arrays = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer, consumers = _graph_maps(graph)
    drop: set[int] = set()
    replace: dict[int, list[Any]] = {}
    for index, site in enumerate(sites):
        if index in precise:
            slope_dq = producer[site.mul.input[1]]
            q, s, z = (arrays[name].astype(np.float64) for name in slope_dq.input)
            nodes, inits = _split_form(site, arrays, (q - z) * s)
            graph.initializer.extend(inits)
            replace[id(site.max)] = nodes
            drop |= {id(site.dq_x), id(site.mul), id(site.q_ax), id(site.dq_ax)}
        else:
            drop |= {id(n) for n in _codes_form(site, consumers)}
    nodes = []
    for n in graph.node:
        if id(n) not in drop:
            nodes.extend(replace.get(id(n), [n]))
    del graph.node[:]
    graph.node.extend(nodes)
    biases = _match_conv_biases(graph)
    _drop_unused_initializers(graph)
    del graph.value_info[:]
    return {"prelu_codes": len(sites) - len(replace), "prelu_split": len(replace), "biases_requantised": biases}


def _logits(model: Any, feeds: list[dict[str, Any]]) -> Any:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, feed)[0] for feed in feeds])


def choose_precise_prelus(model: Any, feeds: list[dict[str, Any]], tolerance: float = 0.03) -> dict[str, Any]:
    """Which PRelu sites need the precise form. Starting from every site in the split form, each site alone is
    put in the codes form; it stays precise when that moves the logits on ``feeds`` (calibration batches:
    training faces) further from the float-activation network's (:func:`float_activations`) by more than
    ``tolerance`` x the all-split graph's mean |difference|."""
    import numpy as np
    import onnx

    reference = _logits(float_activations(model), feeds)
    count = len(prelu_sites(model))

    def error(precise: set[int]) -> float:
        trial = onnx.ModelProto()
        trial.CopyFrom(model)
        prelu_on_codes(trial, precise)
        return round(float(np.abs(_logits(trial, feeds) - reference).mean()), 4)

    every = set(range(count))
    base = error(every)
    alone = [error(every - {index}) for index in range(count)]
    return {"precise": [i for i, e in enumerate(alone) if e > base * (1 + tolerance)],
            "int8_error": round(float(np.abs(_logits(model, feeds) - reference).mean()), 4),
            "all_split_error": base, "error_with_one_site_in_codes_form": alone}
