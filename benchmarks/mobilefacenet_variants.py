"""Single-thread latency and fidelity of MobileFaceNet FER graph variants.

Variants (onnxruntime CPU, ``intra_op_num_threads=1``, sequential):

* ``int8_orig``   - the upstream int8 QLinear model, batch fixed at 1 (baseline).
* ``int8_dyn``    - the same graph with only a symbolic batch dim ``N``.
* ``shipped``     - :func:`model.optimize.build_batched_classifier`: int8 graph,
  PRelu rewritten as ``Max(x, Mul(x, a))``, symbolic batch.
* ``float``       - :func:`model.optimize.dequantize_graph`: float32 rebuild from
  the int8 weights (Q/DQ dropped, PRelu kept), symbolic batch.
* ``float_2conv`` - ``float`` with ``PRelu(Conv(x))`` rewritten as
  ``Conv_{aW}(x) + Relu(Conv_{(1-a)W}(x))`` (valid for slopes ``a <= 1``) so
  that ORT's NCHWc transformer fuses everything into conv kernels.

Suffixes: ``all`` / ``ext`` = ``graph_optimization_level`` ENABLE_ALL /
ENABLE_EXTENDED; ``all_noqdq`` = ALL plus ``session.disable_quant_qdq=1``;
``all_spin`` = ALL plus ``session.intra_op.allow_spinning=1``.

Runs are interleaved: each round runs every (variant, options, batch) case
once, in a round-robin order rotated every round, so background load hits all
cases alike. The figure is the median over rounds of ms per face; ``ratio`` is
that median divided by ``int8_orig/all/b1`` from the same run.

Fidelity compares the logits against ``int8_orig`` (run face by face) on FER+
public-test crops (48x48 grey, upscaled to 112, stacked to 3 channels,
normalised to [-1, 1] as the service does) and on uniform random inputs.

Usage::

    .venv/bin/python benchmarks/mobilefacenet_variants.py --rounds 40

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from emotion.core.cpu import cpu_info  # noqa: E402
from emotion.model.optimize import build_batched_classifier, dequantize_graph, make_batch_dynamic  # noqa: E402

MODEL_NAME = "facial_expression_recognition_mobilefacenet_2022july_int8.onnx"
LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "ext": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
}


def shared_dir() -> Path:
    return Path(os.environ.get("EMOTION_SHARED_DIR", REPO.parent / "shared")).resolve()


def face_batch(n: int, seed: int = 0) -> np.ndarray:
    """Load ``n`` FER+ crops as an ``[n,3,112,112]`` float32 blob in [-1, 1]."""
    import cv2

    files = sorted((shared_dir() / "data" / "fer2013_publictest" / "ferplus_png").glob("*.png"))
    rng = np.random.default_rng(seed)
    pick = sorted(rng.choice(len(files), size=min(n, len(files)), replace=False))
    out = []
    for i in pick:
        g = cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE)
        g = cv2.resize(g, (112, 112), interpolation=cv2.INTER_LINEAR)
        x = (g.astype(np.float32) / 255.0 - 0.5) / 0.5
        out.append(np.stack([x, x, x]))
    return np.stack(out).astype(np.float32)


def split_conv_prelu(model):
    """Rewrite ``PRelu(Conv(x), a)`` as ``Conv_{aW}(x) + Relu(Conv_{(1-a)W}(x))`` in place.

    Exact in real arithmetic when every slope ``a <= 1`` (so ``1-a >= 0`` and
    ``Relu((1-a)y) = (1-a)Relu(y)``); float rounding differs by ulps.
    """
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consumers: dict[str, int] = {}
    for n in g.node:
        for i in n.input:
            consumers[i] = consumers.get(i, 0) + 1
    prelu_of = {n.input[0]: n for n in g.node if n.op_type == "PRelu"}
    fused, nodes, new = set(), [], []
    for n in g.node:
        y0 = n.output[0]
        if n.op_type == "Conv" and y0 in prelu_of and consumers[y0] == 1:
            pr = prelu_of[y0]
            a = numpy_helper.to_array(inits[pr.input[1]]).astype(np.float64).reshape(-1)
            if not (a <= 1).all():
                nodes.append(n)
                continue
            w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
            b = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64) if len(n.input) > 2 else np.zeros(len(w))
            y = pr.output[0]
            attrs = {at.name: helper.get_attribute_value(at) for at in n.attribute}
            for tag, f in (("a", a), ("r", 1 - a)):
                new.append(numpy_helper.from_array((w * f.reshape(-1, 1, 1, 1)).astype(np.float32), f"{y}_W{tag}"))
                new.append(numpy_helper.from_array((b * f).astype(np.float32), f"{y}_B{tag}"))
            nodes += [
                helper.make_node("Conv", [n.input[0], f"{y}_Wr", f"{y}_Br"], [f"{y}_cr"], **attrs),
                helper.make_node("Relu", [f"{y}_cr"], [f"{y}_rr"]),
                helper.make_node("Conv", [n.input[0], f"{y}_Wa", f"{y}_Ba"], [f"{y}_ca"], **attrs),
                helper.make_node("Add", [f"{y}_ca", f"{y}_rr"], [y]),
            ]
            fused.add(pr.output[0])
            continue
        if not (n.op_type == "PRelu" and n.output[0] in fused):  # a PRelu comes after its Conv
            nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    g.initializer.extend(new)
    used = {i for n in g.node for i in n.input}
    keep = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model


def session(path: Path, opts: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = LEVELS[opts.split("_")[0]]
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if opts.endswith("_spin") else "0")
    if opts.endswith("_noqdq"):
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_batched(sess: ort.InferenceSession, x: np.ndarray, batch: int) -> np.ndarray:
    outs = [sess.run(["label"], {"data": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(outs)


def fidelity(ref: np.ndarray, got: np.ndarray) -> dict:
    d = np.abs(ref - got)
    return {
        "n": int(len(ref)),
        "max_abs_logit_diff": round(float(d.max()), 6),
        "mean_abs_logit_diff": round(float(d.mean()), 6),
        "argmax_agreement": round(float((ref.argmax(1) == got.argmax(1)).mean()), 5),
        "ref_logit_absmax": round(float(np.abs(ref).max()), 3),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mfn_bench_") as tmp:
        _main(Path(tmp))


def _main(tmp: Path) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--faces", type=int, default=512, help="face crops for the fidelity check")
    args = ap.parse_args()

    import onnx

    src = shared_dir() / "models" / MODEL_NAME
    paths = {"int8_orig": src}
    paths["int8_dyn"] = tmp / "int8_dyn.onnx"
    onnx.save(make_batch_dynamic(onnx.load(str(src))), str(paths["int8_dyn"]))
    paths["shipped"] = tmp / "shipped.onnx"
    build_info = build_batched_classifier(src, paths["shipped"])
    flt, _ = dequantize_graph(onnx.load(str(src)))
    make_batch_dynamic(flt)
    paths["float"] = tmp / "float.onnx"
    onnx.save(flt, str(paths["float"]))
    paths["float_2conv"] = tmp / "float_2conv.onnx"
    onnx.save(split_conv_prelu(flt), str(paths["float_2conv"]))

    cases = [
        ("int8_orig", "all", 1),
        ("int8_orig", "ext", 1),
        *[("int8_dyn", "all", b) for b in (4, 8, 16)],
        *[("shipped", o, b) for o in ("all", "ext") for b in (1, 4, 8, 16)],
        *[("shipped", o, b) for o in ("all_noqdq", "all_spin") for b in (1, 8)],
        *[("float", "all", b) for b in (1, 8)],
        ("float", "ext", 8),
        *[("float_2conv", "all", b) for b in (1, 8, 16)],
    ]
    sessions = {(v, o): session(paths[v], o) for v, o, _ in cases}

    # Fidelity against the original, on the ALL level (what the service uses).
    faces = face_batch(args.faces)
    rnd = np.random.default_rng(1).uniform(-1, 1, (64, 3, 112, 112)).astype(np.float32)
    ref_f = run_batched(sessions[("int8_orig", "all")], faces, 1)
    ref_r = run_batched(sessions[("int8_orig", "all")], rnd, 1)
    fid = {}
    for v in ("int8_dyn", "shipped", "float", "float_2conv"):
        s = sessions[(v, "all")]
        fid[v] = {
            "faces_batch8": fidelity(ref_f, run_batched(s, faces, 8)),
            "random_batch8": fidelity(ref_r, run_batched(s, rnd, 8)),
        }
    fid["shipped"]["faces_batch1"] = fidelity(ref_f[:64], run_batched(sessions[("shipped", "all")], faces[:64], 1))
    fid["shipped"]["faces_batch16_ext"] = fidelity(ref_f, run_batched(sessions[("shipped", "ext")], faces, 16))

    # Timing: interleaved round robin.
    x16 = faces[:16]
    for v, o, b in cases:  # warm-up
        for _ in range(3):
            sessions[(v, o)].run(["label"], {"data": x16[:b]})
    times: dict[tuple, list[float]] = {c: [] for c in cases}
    for r in range(args.rounds):
        k = r % len(cases)
        for v, o, b in cases[k:] + cases[:k]:
            s, xb = sessions[(v, o)], x16[:b]
            t0 = time.perf_counter()
            s.run(["label"], {"data": xb})
            times[(v, o, b)].append((time.perf_counter() - t0) * 1e3 / b)
    base = statistics.median(times[("int8_orig", "all", 1)])
    timing = {}
    for (v, o, b), ts in times.items():
        med = statistics.median(ts)
        timing[f"{v}/{o}/b{b}"] = {
            "ms_per_face_median": round(med, 3),
            "ms_per_face_min": round(min(ts), 3),
            "ratio_vs_int8_orig_b1": round(med / base, 3),
        }
    print(
        json.dumps(
            {
                "cpu": cpu_info(),
                "onnxruntime": ort.__version__,
                "loadavg_at_end": [round(v, 2) for v in os.getloadavg()],
                "rounds": args.rounds,
                "baseline_int8_orig_all_b1_ms": round(base, 3),
                "timing": timing,
                "fidelity_vs_int8_orig": fid,
                "build": build_info,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
