"""The OpenCV-zoo MobileFaceNet FER model (RAF-DB, int8 ONNX) rebuilt as a trainable fp32 PyTorch module.

The staged file is a QLinear graph (Intel Neural Compressor): every conv is ``QLinearConv`` with int8 weights,
per-tensor scales and int32 biases, between ``QuantizeLinear`` / ``DequantizeLinear`` pairs, plus PReLU, one fp32
depthwise 7x7 conv, and ``QLinearMatMul`` + ``QLinearAdd`` for the classifier. :class:`DequantisedMobileFaceNet`
walks that graph once and keeps each weight as ``(q - zero_point) * scale`` (biases ``q * x_scale * w_scale``), so
the module is the same network in fp32. ``emulate_int8=True`` also rounds every activation the graph quantises
(fake quantisation with the graph's own scales), which is how :func:`compare_with_onnxruntime` proves that the
weights were read correctly: it must then agree with onnxruntime to within rounding.

Input: float32 [N,3,112,112], RGB in [-1, 1] (``align112_rgb_pm1``). ``features`` gives the 512-d embedding,
``forward`` the 7 logits in the upstream label order :data:`UPSTREAM_LABELS`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

from emotion.model.training.qat import FakeQuant

# The ops whose outputs the int8 export quantises (with FakeQuant: rounded as it does).
QUANTISED_OUTPUTS = ("conv", "prelu", "add", "add_const", "matmul")
UPSTREAM_LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
FEATURE_TENSOR = "481"  # Flatten output: the 512-d embedding that feeds the classifier (fc)


def _key(name: str) -> str:
    return "p_" + "".join(c if c.isalnum() else "_" for c in name)


class DequantisedMobileFaceNet(nn.Module):
    """The int8 graph's network with fp32 parameters (one ``nn.Parameter`` per conv/PReLU/fc tensor)."""

    def __init__(self, onnx_path: str | Path, emulate_int8: bool = False) -> None:
        super().__init__()
        graph = onnx.load(str(onnx_path)).graph
        init = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
        self.emulate_int8 = emulate_int8
        self.params = nn.ParameterDict()
        self._qparams: dict[str, tuple[float, int]] = {}  # activation -> (scale, zero point), for emulation
        self._ops: list[tuple[str, list[str], str, dict[str, Any]]] = []
        # Integer weights and float32 requantisation multipliers, for the exact int8 emulation (not parameters).
        self._int8: dict[str, dict[str, Any]] = {}

        def f32(v: Any) -> np.float32:
            return np.float32(v)

        def ints(name: str, zp: str) -> torch.Tensor:
            return torch.from_numpy(init[name].astype(np.float64) - init[zp].astype(np.float64))

        def deq(q: str, s: str, zp: str) -> np.ndarray:
            return (init[q].astype(np.float64) - init[zp].astype(np.float64)) * init[s].astype(np.float64)

        def param(name: str, value: np.ndarray) -> str:
            key = _key(name)
            self.params[key] = nn.Parameter(torch.from_numpy(np.array(value, dtype=np.float32)))  # a writable copy
            return key

        for node in graph.node:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            i, out = list(node.input), node.output[0]
            op = node.op_type
            if op in ("QuantizeLinear", "DequantizeLinear"):
                if op == "QuantizeLinear":
                    self._qparams[out] = (float(init[i[1]]), int(init[i[2]]))
                self._ops.append(("identity", [i[0]], out, {}))
            elif op == "QLinearConv":
                w_scale = init[i[4]].astype(np.float64)
                w = deq(i[3], i[4], i[5])
                bias = init[i[8]].astype(np.float64) * float(init[i[1]]) * w_scale
                self._qparams[out] = (float(init[i[6]]), int(init[i[7]]))
                self._int8[out] = {"x_scale": f32(init[i[1]]), "w": ints(i[3], i[5]),
                                   "b": torch.from_numpy(init[i[8]].astype(np.float64)),
                                   "mult": torch.from_numpy(np.asarray(f32(init[i[1]]) * init[i[4]].astype(np.float32)
                                                                       / f32(init[i[6]]), np.float32))}
                self._ops.append(("conv", [i[0]], out, {
                    "w": param(out + "_w", w), "b": param(out + "_b", np.broadcast_to(bias, (w.shape[0],))),
                    "stride": attrs["strides"], "pad": attrs["pads"][:2], "group": attrs.get("group", 1)}))
            elif op == "Conv":
                self._ops.append(("conv", [i[0]], out, {
                    "w": param(i[1], init[i[1]]), "b": param(i[2], init[i[2]]),
                    "stride": attrs["strides"], "pad": attrs["pads"][:2], "group": attrs.get("group", 1)}))
            elif op == "PRelu":
                self._ops.append(("prelu", [i[0]], out, {"w": param(i[1], init[i[1]])}))
            elif op == "QLinearAdd":
                self._qparams[out] = (float(init[i[6]]), int(init[i[7]]))
                self._int8[out] = {"a_scale": f32(init[i[1]]), "b_scale": f32(init[i[4]]),
                                   "ratio_a": f32(init[i[1]]) / f32(init[i[6]]),
                                   "ratio_b": f32(init[i[4]]) / f32(init[i[6]]),
                                   "b_const": ints(i[3], i[5]) if i[3] in init else None}
                if i[3] in init:  # the classifier bias, a constant
                    self._ops.append(("add_const", [i[0]], out, {"b": param(i[3], deq(i[3], i[4], i[5]))}))
                else:
                    self._ops.append(("add", [i[0], i[3]], out, {}))
            elif op == "QLinearMatMul":
                self._qparams[out] = (float(init[i[6]]), int(init[i[7]]))
                self._int8[out] = {"x_scale": f32(init[i[1]]), "w": ints(i[3], i[5]), "b": None,
                                   "mult": torch.tensor(f32(init[i[1]]) * f32(init[i[4]]) / f32(init[i[6]]))}
                self._ops.append(("matmul", [i[0]], out, {"w": param(i[3], deq(i[3], i[4], i[5]))}))
            elif op == "Flatten":
                self._ops.append(("flatten", [i[0]], out, {}))
            else:
                raise ValueError(f"{onnx_path}: unsupported op {op}")
        self.input_name = graph.input[0].name
        self.output_name = graph.output[0].name
        # Each tensor's producer past the Quantize/DequantizeLinear identities (a PReLU rounds to its conv's codes).
        self._producer: dict[str, str] = {}
        for kind, ins, out, _ in self._ops:
            self._producer[out] = self._producer.get(ins[0], ins[0]) if kind == "identity" else out
        self._frozen_ops = 0  # the first N ops run without gradients (see freeze_until)
        self.fake_quant: FakeQuant | None = None  # quantisation-aware training (``qat``): the export's rounding

    def freeze_until(self, tensor: str | None) -> None:
        """Freeze every op up to and including the one that writes ``tensor`` (``None``: train all).

        Their parameters stop requiring gradients and they run under ``no_grad``, which saves their backward
        pass: on one CPU thread most of a training step goes to the high-resolution layers' backward.
        """
        outputs = [out for _, _, out, _ in self._ops]
        self._frozen_ops = 0 if tensor is None else outputs.index(tensor) + 1
        for j, (_, _, _, a) in enumerate(self._ops):
            for key in (a.get("w"), a.get("b")):
                if key is not None:
                    self.params[key].requires_grad_(j >= self._frozen_ops)

    def _quant(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """QuantizeLinear then DequantizeLinear with the graph's scale (emulation only): round half to even."""
        if self.emulate_int8 and name in self._qparams:
            scale, zp = self._qparams[name]
            s = torch.tensor(scale, dtype=torch.float32)
            return (torch.clamp(torch.round(x / s) + zp, 0, 255) - zp) * s
        return x

    def _op_int8(self, kind: str, ins: list[str], out: str, env: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The QLinear ops as onnxruntime computes them: exact int32 accumulation (in float64), a float32
        requantisation multiplier, round half to even, saturate to uint8. ``None`` for the float ops."""
        q = self._int8.get(out)
        if q is None:
            return None
        scale, zp = self._qparams[out]
        if kind in ("conv", "matmul"):
            x = torch.round(env[ins[0]] / q["x_scale"]).double()  # the input's integers minus its zero point
            if kind == "conv":
                a = next(a for k, _, o, a in self._ops if o == out)
                acc = F.conv2d(x, q["w"], q["b"], a["stride"], a["pad"], 1, a["group"])
                mult = q["mult"].view(1, -1, 1, 1) if q["mult"].ndim else q["mult"]
            else:
                acc, mult = x @ q["w"], q["mult"]
            y = torch.round(acc.float() * mult)
        else:  # add / add_const
            a_int = torch.round(env[ins[0]] / q["a_scale"])
            b_int = q["b_const"].float() if q["b_const"] is not None else torch.round(env[ins[1]] / q["b_scale"])
            # MLAS adds the output zero point before rounding (it matters for float32 ties)
            return (torch.clamp(torch.round(q["ratio_a"] * a_int + q["ratio_b"] * b_int + zp), 0, 255) - zp) * \
                torch.tensor(scale, dtype=torch.float32)
        return (torch.clamp(y + zp, 0, 255) - zp) * torch.tensor(scale, dtype=torch.float32)

    def _op(self, kind: str, ins: list[str], a: dict[str, Any], env: dict[str, torch.Tensor]) -> torch.Tensor:
        v = env[ins[0]]
        if kind == "conv":
            w = self.params[a["w"]] if self.fake_quant is None else self.fake_quant.weight(self.params[a["w"]])
            return F.conv2d(v, w, self.params[a["b"]], a["stride"], a["pad"], 1, a["group"])
        if kind == "prelu":
            slope = self.params[a["w"]] if self.fake_quant is None else self.fake_quant.slope(self.params[a["w"]])
            return F.prelu(v, slope.reshape(-1))
        if kind == "add":
            return v + env[ins[1]]
        if kind == "add_const":
            return v + self.params[a["b"]]
        if kind == "matmul":
            return v @ self.params[a["w"]]
        if kind == "flatten":
            return torch.flatten(v, 1)
        return v  # identity (Quantize/DequantizeLinear)

    def _run(self, x: torch.Tensor, stop_at: str | None = None) -> torch.Tensor:
        env = {self.input_name: x}
        grad = torch.is_grad_enabled()
        for j, (kind, ins, out, a) in enumerate(self._ops):
            with torch.set_grad_enabled(grad and j >= self._frozen_ops):
                exact = self._op_int8(kind, ins, out, env) if self.emulate_int8 else None
                env[out] = exact if exact is not None else self._quant(out, self._op(kind, ins, a, env))
                if self.fake_quant is not None and kind in QUANTISED_OUTPUTS:
                    # a PReLU's output keeps its input's codes (the export computes it on them)
                    env[out] = self.fake_quant.activation(self._producer[ins[0]] if kind == "prelu" else out,
                                                         env[out])
            if out == stop_at:
                return env[out]
        return env[self.output_name]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 512-d embedding (before the classifier)."""
        return self._run(x, stop_at=FEATURE_TENSOR)

    def prelu_slope_names(self) -> list[str]:
        """The keys of the PReLU slopes in ``params``, in the order the network applies them."""
        return [a["w"] for kind, _, _, a in self._ops if kind == "prelu"]

    def classifier_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight [512, 7], bias [7]) of the upstream classifier."""
        (mm,) = [a for k, _, _, a in self._ops if k == "matmul"]
        (bias,) = [a for k, _, _, a in self._ops if k == "add_const"]
        return self.params[mm["w"]], self.params[bias["b"]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)


def compare_with_onnxruntime(onnx_path: str | Path, faces: np.ndarray) -> dict[str, float]:
    """Logits of onnxruntime vs the module (int8-emulating and plain fp32) on ``faces`` [N,3,112,112] in [-1,1]."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    ref = np.concatenate([sess.run(None, {name: faces[i : i + 1]})[0] for i in range(len(faces))])
    report: dict[str, float] = {"n": float(len(faces)), "logit_range": float(ref.max() - ref.min())}
    for label, emulate in (("int8_emulated", True), ("fp32", False)):
        net = DequantisedMobileFaceNet(onnx_path, emulate_int8=emulate).eval()
        with torch.no_grad():
            got = torch.cat([net(torch.from_numpy(faces[i : i + 64])) for i in range(0, len(faces), 64)]).numpy()
        diff = np.abs(got - ref)
        report[f"{label}_max_abs_diff"] = float(diff.max())
        report[f"{label}_mean_abs_diff"] = float(diff.mean())
        report[f"{label}_argmax_agreement"] = float((got.argmax(1) == ref.argmax(1)).mean())
        report[f"{label}_faces_identical"] = float((diff.max(1) == 0).sum())
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m emotion.model.training.mobilefacenet [--n 512]``: the agreement check on cached real faces."""
    import argparse
    import json

    from emotion.model.training.data import expand_path
    from emotion.model.training.faces import load_faces, to_network

    ap = argparse.ArgumentParser(prog="mobilefacenet", description="Dequantised module vs onnxruntime.")
    ap.add_argument("--onnx", default="${SHARED}/models/facial_expression_recognition_mobilefacenet_2022july_int8.onnx")
    ap.add_argument("--faces-dir", default="/tmp/emotion_faces")
    ap.add_argument("--n", type=int, default=512, help="half from SFEW (colour films), half from FER+ PublicTest")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    sfew = np.concatenate([load_faces(f"{a.faces_dir}/{s}.npz")["images"] for s in ("sfew_val", "sfew_train")])
    fer = load_faces(f"{a.faces_dir}/ferplus_publictest.npz")["images"]
    rng = np.random.default_rng(0)
    half = a.n // 2
    faces = np.concatenate([sfew[rng.permutation(len(sfew))[:half]], fer[rng.permutation(len(fer))[: a.n - half]]])
    print(json.dumps(compare_with_onnxruntime(expand_path(a.onnx), to_network(faces)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
