"""Tests for :mod:`model.optimize` against the shared MobileFaceNet int8 model.

Tolerance: the shipped rewrite (``PRelu(x, a)`` -> ``Max(x, Mul(x, a))`` with
all slopes ``<= 1``, plus a symbolic batch) is exact bit for bit, and the
unchanged int8 kernels compute each batch item independently, so the logits
are expected to equal the original's. The check allows 1e-5 absolute only as
headroom for a future onnxruntime kernel that vectorises differently across a
batch; one uint8 quantisation step of the output is ~0.0087 logits
(``label_scale``), so anything below that means no output code changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from emotion.model.optimize import BATCH_DIM, build_batched_classifier, prelu_to_mul_max  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("EMOTION_SHARED_DIR", REPO.parent / "shared"))
SRC = SHARED / "models" / "facial_expression_recognition_mobilefacenet_2022july_int8.onnx"
FACES = SHARED / "data" / "fer2013_publictest" / "ferplus_png"
ATOL = 1e-5

pytestmark = pytest.mark.skipif(not SRC.is_file(), reason=f"shared model missing: {SRC}")


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _faces(n: int = 24) -> np.ndarray:
    """Real FER+ crops, 48x48 grey upscaled to 112 and stacked to 3 channels, in [-1, 1]."""
    cv2 = pytest.importorskip("cv2")
    all_files = sorted(FACES.glob("*.png"))
    files = all_files[:: max(1, len(all_files) // n)][:n]
    if not files:
        pytest.skip(f"no face crops under {FACES}")
    out = []
    for f in files:
        g = cv2.resize(cv2.imread(str(f), cv2.IMREAD_GRAYSCALE), (112, 112), interpolation=cv2.INTER_LINEAR)
        x = (g.astype(np.float32) / 255.0 - 0.5) / 0.5
        out.append(np.stack([x, x, x]))
    return np.stack(out).astype(np.float32)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    dst = tmp_path_factory.mktemp("optimize") / "fer_batched.onnx"
    info = build_batched_classifier(SRC, dst)
    return dst, info


@pytest.fixture(scope="module")
def reference() -> ort.InferenceSession:
    return _session(SRC)


def _ref_logits(ref: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    return np.concatenate([ref.run(["label"], {"data": x[i : i + 1]})[0] for i in range(len(x))])


def test_build_summary_and_io(built: tuple[Path, dict]) -> None:
    dst, info = built
    assert info["prelu_rewritten"] == 33
    assert "PRelu" not in info["ops_after"]
    assert info["ops_after"]["QLinearConv"] == 49
    m = onnx.load(str(dst))
    (inp,) = [i for i in m.graph.input if i.name == "data"]
    (out,) = m.graph.output
    assert out.name == "label"
    assert inp.type.tensor_type.shape.dim[0].dim_param == BATCH_DIM
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim[1:]] == [3, 112, 112]
    assert out.type.tensor_type.shape.dim[0].dim_param == BATCH_DIM
    assert not list(dst.parent.glob("*.tmp")), "atomic write left a temp file"


@pytest.mark.parametrize("batch", range(1, 9))
def test_batches_1_to_8_match_original(built: tuple[Path, dict], reference: ort.InferenceSession, batch: int) -> None:
    x = np.random.default_rng(batch).uniform(-1, 1, (batch, 3, 112, 112)).astype(np.float32)
    got = _session(built[0]).run(["label"], {"data": x})[0]
    assert got.shape == (batch, 7)
    np.testing.assert_allclose(got, _ref_logits(reference, x), rtol=0, atol=ATOL)


def test_real_faces_match_and_argmax_agrees(built: tuple[Path, dict], reference: ort.InferenceSession) -> None:
    x = _faces(24)
    sess = _session(built[0])
    got = np.concatenate([sess.run(["label"], {"data": x[i : i + 8]})[0] for i in range(0, len(x), 8)])
    ref = _ref_logits(reference, x)
    np.testing.assert_allclose(got, ref, rtol=0, atol=ATOL)
    assert (got.argmax(1) == ref.argmax(1)).all()


def test_deterministic_bytes(built: tuple[Path, dict], tmp_path: Path) -> None:
    dst, info = built
    info2 = build_batched_classifier(SRC, tmp_path / "again.onnx")
    assert (tmp_path / "again.onnx").read_bytes() == dst.read_bytes()
    assert info2 == info


def test_prelu_rewrite_keeps_slopes_above_one() -> None:
    """A PRelu with a slope > 1 is not equal to Max(x, a*x), so it must be left alone."""
    from onnx import TensorProto, helper, numpy_helper

    def model(slope: np.ndarray):
        node = helper.make_node("PRelu", ["x", "a"], ["y"], name="p")
        g = helper.make_graph(
            [node],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 1, 1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])],
            initializer=[numpy_helper.from_array(slope, "a")],
        )
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)], ir_version=6)

    ok = model(np.array([-0.5, 0.25], np.float32).reshape(1, 2, 1, 1))
    assert prelu_to_mul_max(ok) == 1
    assert [n.op_type for n in ok.graph.node] == ["Mul", "Max"]
    x = np.array([-3.0, -2.0], np.float32).reshape(1, 2, 1, 1)
    y = ort.InferenceSession(ok.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(y.ravel(), [1.5, -0.5])

    bad = model(np.array([1.5, 0.25], np.float32).reshape(1, 2, 1, 1))
    assert prelu_to_mul_max(bad) == 0
    assert [n.op_type for n in bad.graph.node] == ["PRelu"]
