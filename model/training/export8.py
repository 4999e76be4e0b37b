"""Export the fine-tuned 8-class MobileFaceNet (``finetune.py``'s ``final.pt``) to ONNX, check it, benchmark it.

``python -m emotion.model.training.export8 --checkpoint RUN/final.pt --out model/mobilefacenet8.onnx --version V``

The graph takes ``data`` float32 [N,3,112,112] (RGB in [-1, 1], ``align112_rgb_pm1``, as the upstream model) and
gives ``logits`` [N,8] in the vocabulary order, already divided by the calibrated temperature. Each ``PRelu`` is
rewritten as ``Max(x, x*a)`` (exact for slopes <= 1; faster in onnxruntime, see ``emotion.model.optimize``).
Prints a JSON report: PyTorch-vs-onnxruntime agreement on real aligned faces, accuracy on the cached sets,
single-thread latency per face, file size and sha256.

``--int8 PATH`` also writes the static int8 graph, its PReLUs computed on uint8 codes
(``emotion.model.optimize.prelu_on_codes``); ``--from-int8 OLD --int8 NEW`` applies only that last step to an
earlier int8 graph, with no checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from emotion.core.manifest import load_manifest
from emotion.core.model_files import verify_metadata
from emotion.model.optimize import choose_precise_prelus, prelu_on_codes, prelu_to_mul_max
from emotion.model.training import VOCABULARY
from emotion.model.training.export import bench, file_info, quantize_int8, session, write_report
from emotion.model.training.faces import load_faces, to_network
from emotion.model.training.finetune import EmotionNet8, FinetuneConfig, build_model, measure_ranges, summarise
from emotion.model.training.qat import CALIBRATION_SETS, calibration_faces

PREPROCESSING = "align112_rgb_pm1"
INPUT = "data"
OUTPUT = "logits"
REPORT_SETS = ("sfew_val", "ferplus_holdout", "ferplus_publictest", "affect_val")
INPUT_SPEC = {"name": INPUT, "shape": ["N", 3, 112, 112], "dtype": "float32", "layout": "NCHW", "color": "RGB",
              "range": [-1.0, 1.0]}
PREPROCESSING_SPEC = {
    "name": PREPROCESSING,
    "alignment": "4-DOF similarity fitted by least squares from the 5 YuNet landmarks to the ArcFace 112x112 "
    "template (emotion.core.align), cv2.warpAffine with a black border",
    "color": "BGR -> RGB",
    "scale": "(x / 255 - 0.5) / 0.5 -> [-1, 1]",
    "layout": "NCHW [N, 3, 112, 112]",
}


def load_final(path: str | Path) -> tuple[EmotionNet8, FinetuneConfig, dict[str, Any]]:
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = FinetuneConfig.model_validate(ck["config"])
    net = build_model(cfg)
    net.load_state_dict(ck["state_dict"])
    measure_ranges(net, cfg)  # a quantisation-aware run is evaluated as its int8 export will round it
    return net.eval(), cfg, ck


def metadata(name: str, version: str, ck: dict[str, Any], cfg: FinetuneConfig) -> dict[str, str]:
    return {
        "labels": json.dumps(list(VOCABULARY)),
        "preprocessing": PREPROCESSING,
        "preprocessing_spec": json.dumps(PREPROCESSING_SPEC),
        "input": json.dumps(INPUT_SPEC),
        "output": OUTPUT,
        "model_name": name,
        "model_version": version,
        "temperature": f"{ck['temperature']:.4f}",
        "validation": json.dumps({k: v for k, v in ck["metrics"].items() if isinstance(v, dict)}),
        "training_config": json.dumps(cfg.model_dump(), sort_keys=True),
    }


def float_network(net: EmotionNet8) -> contextlib.AbstractContextManager[None]:
    """``net`` without a quantisation-aware run's rounding: the graph exported is the float one, and onnxruntime's
    quantiser adds the rounding."""
    fake_quant = net.backbone.fake_quant
    return fake_quant.off() if fake_quant else contextlib.nullcontext()


def export(net: EmotionNet8, out: Path, md: dict[str, str]) -> int:
    """Write the ONNX file (symbolic batch ``N``); returns how many PRelu nodes were rewritten."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), float_network(net):
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 3, 112, 112),), str(out), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "N"}, OUTPUT: {0: "N"}}, opset_version=17,
                          do_constant_folding=True, dynamo=False)
    model = onnx.load(str(out))
    rewritten = prelu_to_mul_max(model)
    onnx.helper.set_model_props(model, md)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    return rewritten


def ort_logits(sess: ort.InferenceSession, images: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([sess.run(None, {INPUT: to_network(images[i : i + batch])})[0]
                           for i in range(0, len(images), batch)])


def calibrated_on(faces: Path) -> str:
    names = {"ferplus_train": "FER+", "sfew_train": "SFEW", "affect_train": "affect_train"}
    return " and ".join(names[n] for n in CALIBRATION_SETS if (faces / f"{n}.npz").exists()) + " faces"


def calibration_feeds(faces: Path, per_set: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Network-ready batches of the calibration faces (``qat.calibration_faces``: those a quantisation-aware run
    measured its ranges on)."""
    images = calibration_faces(faces, per_set, seed)
    return [{INPUT: to_network(images[i : i + 32])} for i in range(0, len(images), 32)]


def prelus_on_codes(path: Path, out: Path, feeds: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Rewrite the PRelus of the int8 graph at ``path`` to work on uint8 codes (``emotion.model.optimize``), the
    precise form where the calibration ``feeds`` show the fast one drifting from the float network; write ``out``."""
    model = onnx.load(str(path))
    choice = choose_precise_prelus(model, feeds)
    counts = prelu_on_codes(model, set(choice["precise"]))
    props = {p.key: p.value for p in model.metadata_props}
    props["quantization"] = (f"{props.get('quantization', 'int8 static QDQ')}; PRelu on uint8 codes "
                             f"(split form at sites {choice['precise']})")
    onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.SerializeToString(deterministic=True))
    return {**counts, **choice}


def report_int8(out: Path, faces: Path, with_bench: bool) -> dict[str, Any]:
    """File info, accuracy on the cached sets and (optionally) latency of the int8 graph at ``out``."""
    sess = session(out, 2)
    verify_metadata(dict(sess.get_modelmeta().custom_metadata_map), VOCABULARY, PREPROCESSING, OUTPUT)
    report: dict[str, Any] = {"onnx": file_info(out)}
    for name in REPORT_SETS:
        if (faces / f"{name}.npz").exists():
            ds = load_faces(faces / f"{name}.npz")
            report[name] = summarise(ort_logits(sess, ds["images"]), ds["labels"])
    if with_bench:
        report["latency"] = bench(out, batch_sizes=(1, 8), item_shape=(3, 112, 112))
    return report


def export_int8(fp32: Path, out: Path, faces: Path, md: dict[str, str], per_set: int, seed: int,
                with_bench: bool) -> dict[str, Any]:
    """Quantize ``fp32`` (:func:`~emotion.model.training.export.quantize_int8`) on training faces of both sets,
    then compute its PRelus on uint8 codes (:func:`prelus_on_codes`)."""
    feeds = calibration_feeds(faces, per_set, seed)
    # QDQ form: the engine loads it with QDQ fusion on (manifest "qdq_graph": true). The QLinear-operator form
    # was measured too: as fast, but 1-2 crops worse on each SFEW crop mode.
    quantize_int8(fp32, out, feeds,
                  {**md, "quantization": "int8 static QDQ, per-channel weights, calibrated on " + calibrated_on(faces)})
    prelu = prelus_on_codes(out, out, feeds)
    return {**report_int8(out, faces, with_bench), "prelu": prelu}


def fp32_form(int8: Path, out: Path) -> dict[str, Any]:
    """The fp32 graph of an int8 export's own weights (each as its DequantizeLinear gives it, activations in float):
    the engine's other precision (``EMOTION_CLASSIFIER_PRECISION``). Metadata as the int8 graph's, but for
    ``quantization`` and ``model_version`` (``-fp32``)."""
    from emotion.model.training.finetune import load_int8_export

    net = build_model(FinetuneConfig())
    load_int8_export(net, int8)
    props = {p.key: p.value for p in onnx.load(str(int8)).metadata_props}
    props["quantization"] = f"none: fp32 form of {int8.name} (sha256 {file_info(int8)['sha256']}), same weights"
    props["model_version"] = props.get("model_version", "").removesuffix("-int8") + "-fp32"
    rewritten = export(net.eval(), out, props)
    return {"onnx": file_info(out), "prelu_rewritten": rewritten}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="export8", description="Export the fine-tuned 8-class MobileFaceNet.")
    ap.add_argument("--checkpoint", default=".cache/train/mobilefacenet8_v4/final.pt")
    ap.add_argument("--out", default="model/mobilefacenet8.onnx")
    ap.add_argument("--name", default="mobilefacenet8")
    ap.add_argument("--version", default="mobilefacenet8-ferplus-sfew-v4")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--int8", metavar="PATH", help="also write a static int8 graph here, calibrated on training "
                    "faces of both sets, and report its accuracy against the fp32 graph's")
    ap.add_argument("--calib", type=int, default=256, help="calibration faces from each training set (int8)")
    ap.add_argument("--from-int8", metavar="PATH", help="no checkpoint: rewrite the PRelus of this earlier "
                    "`--int8` graph to work on uint8 codes and write it to --int8 (faces from --faces-dir)")
    ap.add_argument("--faces-dir", default=FinetuneConfig().faces_dir,
                    help="cached faces for --from-int8 (a checkpoint names its own)")
    ap.add_argument("--fp32-of", metavar="INT8", help="no checkpoint: write the fp32 form of this int8 graph's "
                    "weights to --out")
    ap.add_argument("--report")
    a = ap.parse_args(argv)
    if a.fp32_of:
        write_report(fp32_form(Path(a.fp32_of), Path(a.out)), a.report)
        return 0
    if a.from_int8:
        if not a.int8:
            ap.error("--from-int8 needs --int8 PATH")
        faces = Path(a.faces_dir)
        feeds = calibration_feeds(faces, a.calib, FinetuneConfig().seed)
        try:
            prelu = prelus_on_codes(Path(a.from_int8), Path(a.int8), feeds)
        except ValueError as exc:
            ap.exit(2, f"export8: {a.from_int8}: {exc}\n")
        write_report({**report_int8(Path(a.int8), faces, a.bench), "prelu": prelu}, a.report)
        return 0

    net, cfg, ck = load_final(a.checkpoint)
    out = Path(a.out)
    md = metadata(a.name, a.version, ck, cfg)
    rewritten = export(net, out, md)
    sess = session(out, 2)
    got_md = dict(sess.get_modelmeta().custom_metadata_map)
    verify_metadata(got_md, VOCABULARY, PREPROCESSING, OUTPUT)
    manifest = load_manifest()
    if a.name in manifest.names("classifier"):  # once registered, the file must also agree with its entry
        spec = manifest.get(a.name)
        verify_metadata(got_md, spec.labels, spec.preprocessing, spec.output)
        if spec.input.name != INPUT or spec.input.shape != [str(d) for d in INPUT_SPEC["shape"]]:
            raise RuntimeError(f"manifest input {spec.input} != {INPUT_SPEC}")
    shape = sess.get_inputs()[0].shape
    if isinstance(shape[0], int):
        raise RuntimeError(f"batch dimension is fixed: {shape}")
    faces = Path(cfg.faces_dir)
    report: dict[str, Any] = {"onnx": file_info(out),
                              "prelu_rewritten": rewritten, "input_shape": shape,
                              "temperature": ck["temperature"], "step": ck["step"]}
    for name in REPORT_SETS:
        path = faces / f"{name}.npz"
        if not path.exists():
            continue
        ds = load_faces(path)
        got = ort_logits(sess, ds["images"])
        if name == "sfew_val":
            with torch.no_grad(), float_network(net):
                ref = net(torch.from_numpy(to_network(ds["images"]))).numpy()
            diff = float(np.abs(ref - got).max())
            report["agreement"] = {"n": len(ref), "max_abs_logit_diff": diff,
                                   "argmax_agreement": float((ref.argmax(1) == got.argmax(1)).mean())}
            if diff > 1e-3:
                raise RuntimeError(f"onnxruntime disagrees with PyTorch: max |diff| {diff:.2e}")
        report[name] = summarise(got, ds["labels"])
    if a.bench:
        report["latency"] = bench(out, batch_sizes=(1, 8), item_shape=(3, 112, 112))  # 8: the engine's chunk
    if a.int8:
        report["int8"] = export_int8(out, Path(a.int8), faces, md, a.calib, cfg.seed, a.bench)
        sets = [name for name in REPORT_SETS if name in report]
        report["int8"]["accuracy_cost_points"] = {
            name: round(100 * (report[name]["accuracy"] - report["int8"][name]["accuracy"]), 2) for name in sets}
    write_report(report, a.report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
