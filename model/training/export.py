"""Export a checkpoint to ONNX, check it, optionally quantize to int8, evaluate and benchmark.

``python -m emotion.model.training.export --checkpoint RUN/best.pt --out model/ferplus.onnx [--int8 OUT] [--bench]``

Prints a JSON report (also written to ``--report``): ORT-vs-PyTorch agreement, validation accuracy and
per-class recall of the ONNX file(s) through onnxruntime, int8 accuracy cost, single-thread latency.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from emotion.core.model_files import verify_metadata
from emotion.model.training import INPUT_NAME, INPUT_SIZE, OUTPUT_NAME, VOCABULARY
from emotion.model.training.config import TrainConfig
from emotion.model.training.data import FaceSet, expand_path, load_set
from emotion.model.training.net import FerNet
from emotion.model.training.onnx_meta import build_metadata, read_metadata
from emotion.model.training.train import metrics


def load_checkpoint(path: str | Path) -> tuple[FerNet, TrainConfig, dict[str, Any]]:
    """Network (eval mode, CPU), its config and the raw checkpoint."""
    ckpt = torch.load(path, map_location="cpu")
    cfg = TrainConfig.model_validate(ckpt["config"])
    net = FerNet(cfg.net)
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), cfg, ckpt


def set_metadata(path: str | Path, md: dict[str, str]) -> None:
    """Replace the ``metadata_props`` of an ONNX file in place."""
    m = onnx.load(str(path))
    del m.metadata_props[:]
    for k, v in md.items():
        onnx.helper.set_model_props(m, {**{p.key: p.value for p in m.metadata_props}, k: v})
    onnx.checker.check_model(m)
    onnx.save(m, str(path))


def export_onnx(net: torch.nn.Module, out: str | Path, md: dict[str, str], opset: int = 17) -> None:
    """TorchScript-based export with a dynamic batch dimension, then metadata."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.rand(1, 1, INPUT_SIZE, INPUT_SIZE),),
            str(out),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    set_metadata(out, md)


def session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def ort_probs(sess: ort.InferenceSession, images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Softmax probabilities [N,8] from an ONNX session on uint8 [N,48,48] faces."""
    out = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch].astype(np.float32)[:, None] / 255.0
        z = sess.run(None, {INPUT_NAME: x})[0]
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        out.append(e / e.sum(1, keepdims=True))
    return np.concatenate(out)


def check_agreement(net: torch.nn.Module, path: str | Path, n: int = 16, seed: int = 0) -> dict[str, float]:
    """Random inputs through PyTorch and onnxruntime; raise if they disagree."""
    x = np.random.default_rng(seed).random((n, 1, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    got = session(path).run(None, {INPUT_NAME: x})[0]
    diff = float(np.abs(ref - got).max())
    same = float((ref.argmax(1) == got.argmax(1)).mean())
    if diff > 1e-3 or same < 1.0:
        raise RuntimeError(f"ONNX Runtime disagrees with PyTorch: max |diff| {diff:.2e}, argmax agreement {same}")
    return {"max_abs_diff": diff, "argmax_agreement": same, "n": n}


def quantize_int8(fp32: str | Path, out: str | Path, feeds: list[dict[str, np.ndarray]], md: dict[str, str]) -> None:
    """Static int8 (QDQ, per-channel 7-bit weights, min-max activation ranges) calibrated on ``feeds``: network-ready
    input batches, which should span every kind of face the model serves (grey and colour alike)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    quantize_static(
        str(fp32),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        # 7-bit weights (±64): no U8S8 pair sum can saturate on an AVX2 CPU, so every CPU computes the same
        # integers (emotion.model.int8_exact).
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    import onnx

    from emotion.model.int8_exact import saturation_risks

    risks = saturation_risks(onnx.load(str(out)))
    if risks:
        raise RuntimeError(f"int8 weights beyond ±64 after quantisation: {risks[:3]}")
    set_metadata(out, {"quantization": "int8 static QDQ, per-channel weights within ±64 (7-bit)", **md})


def bench(path: str | Path, batch_sizes: tuple[int, ...] = (1, 16), runs: int = 50,
          item_shape: tuple[int, ...] = (1, INPUT_SIZE, INPUT_SIZE)) -> dict[str, float]:
    """Median single-thread per-face latency (ms) for each batch size, on inputs of ``item_shape`` per face."""
    sess = session(path, threads=1)
    name = sess.get_inputs()[0].name
    res = {}
    for b in batch_sizes:
        x = np.random.default_rng(0).random((b, *item_shape), dtype=np.float32)
        for _ in range(5):
            sess.run(None, {name: x})
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, {name: x})
            ts.append(time.perf_counter() - t)
        res[f"batch{b}_ms_per_face"] = round(float(np.median(ts)) * 1000 / b, 3)
    return res


def file_info(path: str | Path) -> dict[str, Any]:
    """Size and sha256."""
    data = Path(path).read_bytes()
    return {"file": str(path), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def write_report(report: dict[str, Any], path: str | None) -> None:
    """The JSON report on stdout, and in ``path`` too when given."""
    text = json.dumps(report, indent=2)
    if path:
        Path(path).write_text(text + "\n")
    print(text)


def _eval(path: str | Path, val: FaceSet) -> dict[str, Any]:
    ev = metrics(ort_probs(session(path, threads=2), val.images), val)
    return {k: ev[k] for k in ("accuracy", "n", "mean_recall", "per_class_recall", "confusion")}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``emotion export`` calls this)."""
    ap = argparse.ArgumentParser(prog="export", description="Export a trained checkpoint to ONNX.")
    ap.add_argument("--checkpoint", default=".cache/train/ferplus/best.pt")
    ap.add_argument("--out", default="model/ferplus.onnx")
    ap.add_argument("--version", default="ferplus-1")
    ap.add_argument("--int8", help="also write a static int8 model here and report its accuracy cost")
    ap.add_argument("--calib", type=int, default=512, help="training faces used to calibrate int8")
    ap.add_argument("--no-eval", action="store_true", help="skip validation-set evaluation")
    ap.add_argument("--bench", action="store_true", help="single-thread latency, batch 1 and 16")
    ap.add_argument("--report", help="write the JSON report here too")
    a = ap.parse_args(argv)

    net, cfg, ckpt = load_checkpoint(a.checkpoint)
    md = build_metadata("ferplus", a.version, ckpt.get("metrics", {}).get("accuracy"), cfg.model_dump())
    export_onnx(net, a.out, md)
    report: dict[str, Any] = {
        "onnx": file_info(a.out),
        "checkpoint_epoch": ckpt.get("epoch"),
        "agreement": check_agreement(net, a.out),
    }
    verify_metadata(read_metadata(a.out), VOCABULARY, md["preprocessing"], md["output"])
    val = None
    if not a.no_eval:
        d = cfg.data
        val = load_set(expand_path(d.val_dir), d.val_format, "majority", d.limit_val, d.cache_dir)
        report["val"] = _eval(a.out, val)
    if a.bench:
        report["latency"] = bench(a.out)
    if a.int8:
        d = cfg.data
        train = load_set(expand_path(d.train_dir), d.train_format, d.label_mode, d.limit_train, d.cache_dir)
        idx = np.random.default_rng(cfg.seed).permutation(len(train))[: a.calib]
        calib = train.images[np.sort(idx)].astype(np.float32)[:, None] / 255.0
        quantize_int8(a.out, a.int8, [{INPUT_NAME: calib[i : i + 32]} for i in range(0, len(calib), 32)], md)
        report["int8"] = {"onnx": file_info(a.int8)}
        if val is not None:
            report["int8"]["val"] = _eval(a.int8, val)
            report["int8"]["accuracy_cost"] = report["val"]["accuracy"] - report["int8"]["val"]["accuracy"]
        if a.bench:
            report["int8"]["latency"] = bench(a.int8)
    write_report(report, a.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
