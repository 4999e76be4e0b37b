"""PRelu on uint8 codes (:func:`emotion.model.optimize.prelu_on_codes`): the two forms against exact arithmetic on a
small hand-built QDQ graph, the conv fusion they must keep, and the shipped classifier against its float network.

Tolerances come from the quantisation steps: the codes form rounds ``a*x`` once, on x's grid (half a step of x's
scale); the split form rounds ``a*min(x, 0)`` on its own grid and the sum on y's (half a step of each).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from emotion.model.optimize import float_activations, prelu_on_codes, prelu_sites  # noqa: E402

C = 4
SLOPES = np.array([0.25, -0.5, 0.7, 0.05])
X_SCALE, X_ZERO = 0.05, 120  # x in [-6.0, 6.75]
AX_SCALE, AX_ZERO = 0.035, 120  # a*x in [-4.2, 4.725]
Y_SCALE, Y_ZERO = 0.043, 98  # PRelu(x) in [-4.2, 6.75]
A_SCALE, A_ZERO = 0.006, 128  # slopes in [-0.77, 0.76]
W_SCALE = np.array([0.01, 0.02, 0.015, 0.01])


def _prelu_graph(with_conv: bool) -> onnx.ModelProto:
    """``x -> Q -> DQ -> PRelu as Max(x, Mul(x, a)) in QDQ form -> Q -> DQ`` (the exporter's layout), optionally
    followed by a QDQ 1x1 conv whose int32 bias is at the PRelu output's scale."""
    rng = np.random.default_rng(0)
    a_codes = np.round(SLOPES / A_SCALE + A_ZERO).astype(np.uint8).reshape(C, 1, 1)

    def init(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(value, name)

    inits = [init("xs", np.array(X_SCALE, np.float32)), init("xz", np.array(X_ZERO, np.uint8)),
             init("axs", np.array(AX_SCALE, np.float32)), init("axz", np.array(AX_ZERO, np.uint8)),
             init("ys", np.array(Y_SCALE, np.float32)), init("yz", np.array(Y_ZERO, np.uint8)),
             init("aq", a_codes), init("as", np.array(A_SCALE, np.float32)), init("az", np.array(A_ZERO, np.uint8))]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["x_q"]),
             helper.make_node("DequantizeLinear", ["x_q", "xs", "xz"], ["x_dq"]),
             helper.make_node("DequantizeLinear", ["aq", "as", "az"], ["a"]),
             helper.make_node("Mul", ["x_dq", "a"], ["ax"]),
             helper.make_node("QuantizeLinear", ["ax", "axs", "axz"], ["ax_q"]),
             helper.make_node("DequantizeLinear", ["ax_q", "axs", "axz"], ["ax_dq"]),
             helper.make_node("Max", ["x_dq", "ax_dq"], ["y"]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["y_q"]),
             helper.make_node("DequantizeLinear", ["y_q", "ys", "yz"], ["y_dq"])]
    output = "y_dq"
    if with_conv:
        w_codes = rng.integers(-100, 100, (C, C, 1, 1)).astype(np.int8)
        bias = rng.uniform(-1, 1, C)
        inits += [init("wq", w_codes), init("ws", W_SCALE.astype(np.float32)), init("wz", np.zeros(C, np.int8)),
                  init("bq", np.round(bias / (Y_SCALE * W_SCALE)).astype(np.int32)),
                  init("bs", (Y_SCALE * W_SCALE).astype(np.float32)), init("bz", np.zeros(C, np.int32)),
                  init("os", np.array(0.05, np.float32)), init("oz", np.array(128, np.uint8))]
        nodes += [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
                  helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["b"], axis=0),
                  helper.make_node("Conv", ["y_dq", "w", "b"], ["c"]),
                  helper.make_node("QuantizeLinear", ["c", "os", "oz"], ["c_q"]),
                  helper.make_node("DequantizeLinear", ["c_q", "os", "oz"], ["out"])]
        output = "out"
    graph = helper.make_graph(nodes, "prelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 8, 8])],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, C, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _exact(x: np.ndarray) -> np.ndarray:
    """PRelu of the dequantised input codes, in float64 (the slopes as their int8 codes give them)."""
    x_hat = (np.clip(np.round(x / X_SCALE) + X_ZERO, 0, 255) - X_ZERO) * X_SCALE
    a = ((np.round(SLOPES / A_SCALE + A_ZERO) - A_ZERO) * A_SCALE).reshape(1, C, 1, 1)
    return np.where(x_hat >= 0, x_hat, a * x_hat)


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(1).uniform(-6, 6.7, (1, C, 8, 8)).astype(np.float32)


def test_codes_form_compares_uint8_codes_and_stays_within_a_step(inputs: np.ndarray) -> None:
    model = _prelu_graph(with_conv=False)
    before = _run(model, inputs)
    assert len(prelu_sites(model)) == 1
    assert prelu_on_codes(model) == {"prelu_codes": 1, "prelu_split": 0, "biases_requantised": 0}
    assert prelu_sites(model) == []  # nothing left to rewrite
    (max_node,) = [n for n in model.graph.node if n.op_type == "Max"]
    assert max_node.input[0] == "x_q"  # the codes, not their dequantised floats
    after = _run(model, inputs)
    exact = _exact(inputs)
    assert np.abs(before - exact).max() <= (AX_SCALE + Y_SCALE) / 2 + 1e-6
    # the result keeps x's scale: a*x is rounded once, on x's grid
    assert np.abs(after - exact).max() <= X_SCALE / 2 + 1e-6
    assert np.abs(after - before).max() > 0  # it is a different rounding, not a copy


def test_split_form_keeps_the_output_scale_and_precision(inputs: np.ndarray) -> None:
    model = _prelu_graph(with_conv=False)
    assert prelu_on_codes(model, precise={0}) == {"prelu_codes": 0, "prelu_split": 1, "biases_requantised": 0}
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Max") == 1 and ops.count("Min") == 1 and "Add" in ops
    after = _run(model, inputs)
    exact = _exact(inputs)
    neg_scale = float(numpy_helper.to_array(next(t for t in model.graph.initializer if t.name.endswith("_neg_scale"))))
    assert neg_scale < X_SCALE  # a*min(x, 0) gets a finer grid than x's
    assert np.abs(after - exact).max() <= (Y_SCALE + neg_scale) / 2 + 1e-6


def test_codes_form_requantises_the_next_conv_bias_so_the_conv_stays_int8(inputs: np.ndarray, tmp_path: Path) -> None:
    model = _prelu_graph(with_conv=True)
    before = _run(model, inputs)
    counts = prelu_on_codes(model)
    assert counts["biases_requantised"] == 1
    arrays = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    np.testing.assert_allclose(arrays["bs"], X_SCALE * W_SCALE, rtol=1e-6)  # input scale x weight scale
    # onnxruntime fuses DQ -> Conv -> Q into QLinearConv only when the bias scale matches
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fused = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert "QLinearConv" in fused and "Conv" not in fused
    after = _run(model, inputs)
    # each PRelu output moves by at most its two roundings; the conv sums them; both outputs are rounded (0.05)
    w = np.abs(arrays["wq"].astype(np.float64) * W_SCALE.reshape(C, 1, 1, 1))[:, :, 0, 0]
    moved = X_SCALE / 2 + (AX_SCALE + Y_SCALE) / 2
    assert np.abs(after - before).max() <= w.sum(1).max() * moved + 0.05 + 1e-6


def test_a_graph_without_prelu_sites_is_refused() -> None:
    model = _prelu_graph(with_conv=False)
    prelu_on_codes(model)
    with pytest.raises(ValueError, match="rewritten already"):
        prelu_on_codes(model)


def test_float_activations_drops_every_activation_quantiser(inputs: np.ndarray) -> None:
    model = _prelu_graph(with_conv=True)
    reference = float_activations(model)
    ops = [n.op_type for n in reference.graph.node]
    assert "QuantizeLinear" not in ops  # weights keep their DequantizeLinear, activations stay float
    assert ops.count("DequantizeLinear") == 3
    x = inputs.astype(np.float64)
    a = ((np.round(SLOPES / A_SCALE + A_ZERO) - A_ZERO) * A_SCALE).reshape(1, C, 1, 1)
    prelu = np.where(x >= 0, x, a * x)
    arrays = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    w = (arrays["wq"] * arrays["ws"].reshape(C, 1, 1, 1))[:, :, 0, 0]
    b = arrays["bq"] * arrays["bs"]
    conv = np.einsum("oc,nchw->nohw", w, prelu) + b.reshape(1, C, 1, 1)
    np.testing.assert_allclose(_run(reference, inputs), conv, atol=1e-4)


def test_shipped_classifier_runs_prelus_on_codes_close_to_its_float_network(model_dir: Path,
                                                                           shared_dir: Path) -> None:
    """The shipped int8 graph: no PRelu left in float form, every conv fused, and its logits on real faces as close to
    its own float-activation network as int8 rounding allows (the graph before the rewrite: mean |diff| 0.27 on
    calibration faces, argmax agreement 94%)."""
    import cv2

    from emotion.core.manifest import load_manifest
    from emotion.model.int8_exact import simulated_session

    spec = load_manifest().get("mobilefacenet8")
    model = onnx.load(str(model_dir / spec.file))
    assert prelu_sites(model) == []
    md = {p.key: p.value for p in model.metadata_props}
    assert "PRelu on uint8 codes" in md["quantization"] and json.loads(md["labels"])[7] == "contempt"

    files = sorted((shared_dir / "data/fer2013_publictest/ferplus_png").glob("*.png"))[::60][:48]
    faces = []
    for f in files:
        grey = cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (112, 112), interpolation=cv2.INTER_LINEAR)
        faces.append(np.stack([grey] * 3).astype(np.float32) / 127.5 - 1.0)
    x = np.stack(faces)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # The int8 arithmetic simulated exactly (the same on every CPU), not this CPU's integer kernels: the test speaks
    # of the graph, not of the instruction set (tests/unit/test_int8_exact.py compares the two).
    shipped = simulated_session(model)
    reference = ort.InferenceSession(float_activations(model).SerializeToString(), options,
                                     providers=["CPUExecutionProvider"])
    got, want = shipped.run(None, {"data": x})[0], reference.run(None, {"data": x})[0]
    assert np.abs(got - want).mean() < 0.4
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.85
