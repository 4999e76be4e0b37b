"""ONNX metadata written by the exporter and verified by loaders (torch-free: onnxruntime only).

Keys in ``metadata_props``:

* ``labels``: JSON list, output order, in the project vocabulary
* ``preprocessing``: preprocessing name (``crop_gray48_ferplus``)
* ``preprocessing_spec``: JSON object describing that preprocessing
* ``input``: JSON object (name, shape, dtype, layout, color, range)
* ``output``: ``logits`` or ``probabilities``
* ``model_name``, ``model_version``, ``val_accuracy``, ``training_config``
"""

from __future__ import annotations

import json
from typing import Any

from emotion.model.training import INPUT_NAME, INPUT_SIZE, OUTPUT_NAME, PREPROCESSING_NAME, VOCABULARY

PREPROCESSING_SPEC: dict[str, Any] = {
    "name": PREPROCESSING_NAME,
    "crop": "square, centred on the face-box centre, side = 1.0 * max(box w, box h); reference: "
    "model/training/preprocess.py",
    "box_scale": 1.0,
    "border": "replicate (cv2.warpAffine translation, BORDER_REPLICATE) where the square leaves the image",
    "color": "BGR -> GRAY with cv2.cvtColor(COLOR_BGR2GRAY)",
    "resize": [INPUT_SIZE, INPUT_SIZE],
    "interpolation": "cv2.INTER_AREA when shrinking, cv2.INTER_LINEAR when enlarging",
    "scale": "float32 gray / 255.0 -> [0, 1]; no mean/std (the network normalises internally)",
    "layout": "NCHW [N, 1, 48, 48]",
    "alignment": "none (upright crop of the detector box)",
}

INPUT_SPEC: dict[str, Any] = {
    "name": INPUT_NAME,
    "shape": ["N", 1, INPUT_SIZE, INPUT_SIZE],
    "dtype": "float32",
    "layout": "NCHW",
    "color": "GRAY",
    "range": [0.0, 1.0],
}


def build_metadata(
    model_name: str = "ferplus",
    version: str = "",
    val_accuracy: float | None = None,
    training_config: dict[str, Any] | None = None,
) -> dict[str, str]:
    """The ``metadata_props`` the exporter writes."""
    md = {
        "labels": json.dumps(list(VOCABULARY)),
        "preprocessing": PREPROCESSING_NAME,
        "preprocessing_spec": json.dumps(PREPROCESSING_SPEC),
        "input": json.dumps(INPUT_SPEC),
        "output": OUTPUT_NAME,
        "model_name": model_name,
        "model_version": version,
    }
    if val_accuracy is not None:
        md["val_accuracy"] = f"{val_accuracy:.4f}"
    if training_config is not None:
        md["training_config"] = json.dumps(training_config, sort_keys=True)
    return md


def read_metadata(path: str) -> dict[str, str]:
    """``metadata_props`` of an ONNX file, read through onnxruntime."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    return dict(sess.get_modelmeta().custom_metadata_map)
