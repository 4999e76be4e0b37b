"""Int8 graphs that compute the same integers on every CPU, and the tools that show it.

onnxruntime multiplies uint8 activations by int8 weights (U8S8) with different instructions on different CPUs.
With AVX-512 VNNI, AVX-VNNI or AMX the products accumulate in 32 bits. With AVX2 (or AVX-512 without VNNI) they go
through ``VPMADDUBSW``, which adds each pair of adjacent products into a *saturating 16-bit* sum; a pair can
reach 2 x 255 x 127 = 64,770, so with full-range weights the sums clip and the answer depends on the CPU.
Weights within ±64 keep every pair within 2 x 255 x 64 = 32,640 <= 32,767: the kernels are exact everywhere
(onnxruntime's documented remedy, ``reduce_range``).

* :func:`saturation_risks` — the static check: every int8 initializer of a graph within ±:data:`WEIGHT_LIMIT`.
* :func:`limit_weights` — requantise a QDQ graph's int8 weights to ±64 in place (per output channel, the scale
  grows by ``max|q| / 64``), with each int32 bias that shares the weight's scale requantised to match, so
  onnxruntime still fuses every conv into ``QLinearConv``.
* :func:`simulated_session` — the same graph with every quantised op computed from its dequantised inputs and
  requantised (``session.disable_quant_qdq``): the exact int8 arithmetic, in float, on any CPU.
* :func:`vpmaddubsw_saturations` — emulates the AVX2 pair sums in numpy on real activations and counts those
  that would clip.

``python -m emotion.model.int8_exact --faces FACES.npz GRAPH...`` prints the report (JSON) for each graph;
``python -m emotion.model.int8_exact --requantise IN OUT [--version V]`` writes IN's weights limited to ±64.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "WEIGHT_LIMIT",
    "compare_sessions",
    "engine_session",
    "limit_weights",
    "requantise_file",
    "saturation_risks",
    "simulated_session",
    "vpmaddubsw_saturations",
]

#: |w| * 255 * 2 <= 32,767: the largest int8 weight whose VPMADDUBSW pair sums cannot saturate.
WEIGHT_LIMIT = 64
INT16_MAX = 32767


def saturation_risks(model: Any, limit: int = WEIGHT_LIMIT) -> list[tuple[str, int]]:
    """``(name, max |value|)`` of every int8 initializer beyond ±``limit`` (empty: the graph is exact on every
    CPU). uint8 tensors (activation codes, PReLU slopes, U8U8 weights) cannot saturate and are not listed."""
    from onnx import TensorProto, numpy_helper

    risks = []
    for tensor in model.graph.initializer:
        if tensor.data_type == TensorProto.INT8:
            worst = int(np.abs(numpy_helper.to_array(tensor).astype(np.int32)).max(initial=0))
            if worst > limit:
                risks.append((tensor.name, worst))
    return risks


def _consumers(graph: Any) -> dict[str, list[Any]]:
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return consumers


def limit_weights(model: Any, limit: int = WEIGHT_LIMIT) -> dict[str, int]:
    """Requantise, in place, every int8 weight of a QDQ graph (``DequantizeLinear`` of an int8 initializer) to
    ±``limit``. Per channel (or per tensor), codes ``q`` become ``round(q * limit / max|q|)`` and the scale grows
    by ``max|q| / limit``, so the dequantised weights move by at most half a new step. A conv's or Gemm's int32
    bias is requantised by the same ratio per output channel (its scale must stay input scale x weight scale for
    onnxruntime to fuse the integer kernel). Returns counts of what changed."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = _consumers(graph)
    producer = {o: n for n in graph.node for o in n.output}
    counts = {"weights_requantised": 0, "biases_requantised": 0}

    def replace(name: str, array: np.ndarray) -> None:
        inits[name].CopyFrom(numpy_helper.from_array(array, name))

    for node in graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        tensor = inits[node.input[0]]
        if tensor.data_type != TensorProto.INT8:
            continue
        q = numpy_helper.to_array(tensor).astype(np.int32)
        zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else np.zeros(1, np.int8)
        if np.any(zero != 0):
            raise ValueError(f"{tensor.name}: asymmetric int8 weights are not supported")
        if np.abs(q).max(initial=0) <= limit:
            continue
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32)
        axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
        if scale.ndim == 0:  # per tensor
            ratio = np.float32(max(np.abs(q).max() / limit, 1.0))
            q_new = np.round(q / ratio)
        else:
            moved = np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1)
            ratio = np.maximum(np.abs(moved).max(1) / limit, 1.0).astype(np.float32)
            shape = [1] * q.ndim
            shape[axis] = -1
            q_new = np.round(q / ratio.reshape(shape))
        replace(tensor.name, np.clip(q_new, -limit, limit).astype(np.int8))
        replace(node.input[1], (scale * ratio).astype(np.float32))
        counts["weights_requantised"] += 1
        for op in consumers.get(node.output[0], []):
            if op.op_type not in ("Conv", "Gemm", "MatMul") or len(op.input) < 3:
                continue
            bias_dq = producer.get(op.input[2])
            if bias_dq is None or bias_dq.op_type != "DequantizeLinear" or bias_dq.input[0] not in inits:
                continue
            if inits[bias_dq.input[0]].data_type != TensorProto.INT32:
                continue
            b = numpy_helper.to_array(inits[bias_dq.input[0]]).astype(np.float64)
            b_scale = numpy_helper.to_array(inits[bias_dq.input[1]]).astype(np.float32)
            r = np.broadcast_to(ratio, b.shape)
            replace(bias_dq.input[0], np.round(b / r).astype(np.int32))
            replace(bias_dq.input[1], (b_scale * r).astype(np.float32))
            counts["biases_requantised"] += 1
    return counts


def requantise_file(src: Path, dst: Path, version: str | None = None) -> dict[str, Any]:
    """Write ``src`` with its int8 weights limited to ±64 (:func:`limit_weights`) to ``dst``; the metadata's
    ``quantization`` says so and ``model_version`` becomes ``version`` when given."""
    import onnx

    model = onnx.load(str(src))
    counts = limit_weights(model)
    props = {p.key: p.value for p in model.metadata_props}
    if props:  # our own exports describe themselves; upstream files carry no metadata
        note = f"weights within ±{WEIGHT_LIMIT} (7-bit), so no U8S8 pair sum can saturate on any CPU"
        props["quantization"] = f"{props.get('quantization', 'int8')}; {note}"
        if version:
            props["model_version"] = version
        onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    if saturation_risks(model):
        raise ValueError(f"{src}: int8 weights beyond ±{WEIGHT_LIMIT} remain")
    dst.write_bytes(model.SerializeToString(deterministic=True))
    return counts


def _session(model: Any, simulate: bool) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.disable_quant_qdq", "1" if simulate else "0")
    source = model if isinstance(model, bytes) else model.SerializeToString() if hasattr(model, "graph") else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def engine_session(model: Any) -> Any:
    """The graph as the engine runs a QDQ graph: Q/DQ pairs fused into onnxruntime's integer kernels."""
    return _session(model, simulate=False)


def simulated_session(model: Any) -> Any:
    """The exact int8 arithmetic in float: every quantised op computed from its dequantised inputs, then
    requantised. The same on every CPU up to float rounding at a requantisation boundary."""
    return _session(model, simulate=True)


def _run(session: Any, faces: np.ndarray, batch: int = 64) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: faces[i : i + batch]})[0] for i in range(0, len(faces), batch)])


def compare_sessions(got: Any, want: Any, faces: np.ndarray) -> dict[str, float]:
    """Mean and max |logit difference| and top-1 agreement of two sessions of one graph on the same inputs."""
    a, b = _run(got, faces), _run(want, faces)
    diff = np.abs(a.astype(np.float64) - b)
    return {
        "faces": len(faces),
        "mean_abs_logit_diff": round(float(diff.mean()), 5),
        "max_abs_logit_diff": round(float(diff.max()), 5),
        "top1_agreement": round(float((a.argmax(1) == b.argmax(1)).mean()), 5),
    }


def _attrs(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _integer_products(model: Any) -> list[dict[str, Any]]:
    """Each conv/Gemm of a QDQ graph whose input is a uint8 code tensor and whose weight is int8 codes."""
    from onnx import TensorProto, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    found = []
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        x_dq, w_dq = producer.get(node.input[0]), producer.get(node.input[1])
        if not (x_dq and w_dq and x_dq.op_type == w_dq.op_type == "DequantizeLinear"):
            continue
        w = inits.get(w_dq.input[0])
        if w is None or w.data_type != TensorProto.INT8:
            continue
        weights = numpy_helper.to_array(w).astype(np.int32)
        if node.op_type == "Gemm" and _attrs(node).get("transB", 0) == 0:
            weights = weights.T
        found.append({"node": node, "codes": x_dq.input[0], "weights": weights, "attrs": _attrs(node)})
    return found


def _patches(x: np.ndarray, weights: np.ndarray, attrs: dict[str, Any], zero: int) -> np.ndarray:
    """im2col of one uint8 NCHW input, K ordered (kh, kw, channel) as onnxruntime's NHWC integer conv packs it:
    [positions, K]. Padding takes the input's zero point, as the kernels pad."""
    from numpy.lib.stride_tricks import sliding_window_view

    kh, kw = weights.shape[2:]
    (pt, pl, pb, pr) = attrs.get("pads", [0, 0, 0, 0])
    sh, sw = attrs.get("strides", [1, 1])
    padded = np.pad(x, ((0, 0), (pt, pb), (pl, pr)), constant_values=zero)
    windows = sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # C, Ho, Wo, kh, kw
    return windows.transpose(1, 2, 3, 4, 0).reshape(-1, kh * kw * x.shape[0])


def vpmaddubsw_saturations(model: Any, faces: np.ndarray) -> dict[str, Any]:
    """Emulate AVX2's U8S8 pair sums (``VPMADDUBSW``: u8 codes x s8 weights of two adjacent input channels at one
    kernel tap, summed and saturated to int16) of every integer conv and Gemm on real inputs; count the pairs that
    clip. Activations come from the exactly simulated graph (:func:`simulated_session`). Depthwise convs are left
    out: they have no input channels to pair."""
    import onnx
    from onnx import numpy_helper

    products = _integer_products(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = sorted({p["codes"] for p in products})
    known = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    session = simulated_session(probe)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    saturated = total = 0
    per_layer: dict[int, int] = {}
    input_name = session.get_inputs()[0].name
    for face in faces:
        values = dict(zip([o.name for o in session.get_outputs()], session.run(None, {input_name: face[None]}),
                          strict=True))
        for index, p in enumerate(products):
            codes = values[p["codes"]].astype(np.int32)[0]
            w = p["weights"]
            x_dq = producer[p["node"].input[0]]
            zero = int(inits[x_dq.input[2]]) if len(x_dq.input) > 2 else 0
            if p["node"].op_type == "Conv" and p["attrs"].get("group", 1) > 1:
                continue  # depthwise: no input channels to pair (onnxruntime's depthwise kernel widens to 16 bits)
            if p["node"].op_type == "Conv":
                if codes.shape[0] % 2:  # an odd channel count: the last channel pairs with a zero one
                    codes = np.concatenate([codes, np.full((1, *codes.shape[1:]), zero, np.int32)])
                    w = np.concatenate([w, np.zeros((w.shape[0], 1, *w.shape[2:]), np.int32)], 1)
                a = _patches(codes, w, p["attrs"], zero)
                wk = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)  # O, K in (kh, kw, c) order
            else:  # Gemm / MatMul: weights already [out, K]
                a = codes.reshape(1, -1)
                wk = w
                if a.shape[1] % 2:
                    a = np.concatenate([a, np.zeros((1, 1), np.int32)], 1)
                    wk = np.concatenate([wk, np.zeros((wk.shape[0], 1), np.int32)], 1)
            # adjacent K pairs = adjacent input channels at one kernel tap
            pairs = (a[:, None, 0::2] * wk[None, :, 0::2]) + (a[:, None, 1::2] * wk[None, :, 1::2])
            clipped = int(np.count_nonzero((pairs > INT16_MAX) | (pairs < -INT16_MAX - 1)))
            saturated += clipped
            total += pairs.size
            per_layer[index] = per_layer.get(index, 0) + clipped
    return {
        "faces": len(faces),
        "saturated_pairs": saturated,
        "pairs": total,
        "layers_with_saturation": sum(1 for count in per_layer.values() if count),
        "layers_emulated": len(per_layer),
    }


def collect_faces(shared_dir: Path, classifiers: tuple[str, ...] = ("mobilefacenet8", "ferplus_int8"),
                  every: int = 1) -> dict[str, np.ndarray]:
    """Each classifier's network inputs for the dev faces, made by the engine's own steps (enlarge, detect, align
    or crop): FER+ PublicTest (majority labels) as sent, and the SFEW validation films as sent and in a frame.

    Returns ``size{S}`` (inputs of a classifier whose input is S px), ``labels_{S}`` (vocabulary indices) and
    ``set_{S}`` (``ferplus`` / ``sfew`` / ``sfew_framed``); crops without a face are left out (they score the
    same under every graph)."""
    import cv2

    from emotion.core.engine import default_options, get_engine
    from emotion.core.vocabulary import EMOTIONS, canonical_emotion
    from emotion.model.crops import engine_input
    from emotion.model.evaluate import labelled_from_csv

    data = shared_dir / "data"
    fer, _ = labelled_from_csv(data / "fer2013_publictest", data / "fer2013_publictest/labels.csv",
                               image_column="ferplus_png", label_column="ferplus_majority")
    sfew, _ = labelled_from_csv(data / "sfew_train", data / "sfew_train/labels.csv", validation_split_by="movie")
    sources = [("ferplus", item, 0.0) for item in fer[::every]]
    sources += [(name, item, pad) for name, pad in (("sfew", 0.0), ("sfew_framed", 0.5)) for item in sfew]
    options = default_options()
    out: dict[str, np.ndarray] = {}
    for name in classifiers:
        engine = get_engine(name)
        inputs, labels, sets = [], [], []
        for set_name, item, pad in sources:
            image = engine_input(cv2.imread(str(item.path), cv2.IMREAD_COLOR), pad)
            faces = engine.detect(image, options)
            if len(faces):
                inputs.append(engine.classifier.preprocess(image, faces[:1])[0])
                labels.append(EMOTIONS.index(canonical_emotion(item.label)))
                sets.append(set_name)
        size = inputs[0].shape[-1] if inputs[0].shape[0] in (1, 3) else inputs[0].shape[-2]
        out[f"size{size}"] = np.stack(inputs)
        out[f"labels_{size}"], out[f"set_{size}"] = np.array(labels), np.array(sets)
    return out


def main(argv: list[str] | None = None) -> int:
    import onnx

    from emotion.core.cpu import cpu_info

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("graphs", nargs="*", type=Path)
    parser.add_argument("--requantise", nargs=2, type=Path, metavar=("IN", "OUT"),
                        help="only write IN with its int8 weights limited to ±64 to OUT")
    parser.add_argument("--version", help="with --requantise: the new model_version metadata")
    parser.add_argument("--faces", type=Path,
                        help="the dev faces' network inputs (.npz); written first when missing")
    parser.add_argument("--shared", type=Path, default=Path("../shared"), help="the shared models/data folder")
    parser.add_argument("--emulate", type=int, default=64, help="faces for the VPMADDUBSW emulation (0: skip)")
    args = parser.parse_args(argv)
    if args.requantise:
        src, dst = args.requantise
        print(json.dumps(requantise_file(src, dst, version=args.version)))
        return 0
    if args.faces is None:
        parser.error("--faces is required")
    if not args.faces.exists():
        args.faces.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.faces, allow_pickle=False, **collect_faces(args.shared))
    faces = np.load(args.faces)
    report: dict[str, Any] = {"cpu": cpu_info(), "graphs": {}}
    for path in args.graphs:
        model = onnx.load(str(path))
        size = model.graph.input[0].type.tensor_type.shape.dim[-1].dim_value
        x = faces[f"size{size}"]
        entry: dict[str, Any] = {"risky_int8_tensors": len(saturation_risks(model))}
        entry["engine_vs_simulated"] = compare_sessions(engine_session(model), simulated_session(model), x)
        if args.emulate:
            entry["vpmaddubsw"] = vpmaddubsw_saturations(model, x[: args.emulate])
        report["graphs"][str(path)] = entry
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
