"""Derived model files, built once at fetch time from a verified original (never at inference time).

YuNet's ONNX declares a fixed 1x3x640x640 input although the network is fully convolutional; a copy with
symbolic H and W lets onnxruntime run it at each image's own size. A sidecar JSON records the source
sha256 and the derived file's sha256, which the engine checks before loading.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from emotion.core.manifest import ModelSpec, sha256_file
from emotion.core.model_files import derived_path, derived_sidecar, verify_derived


def dynamic_detector_input(src: Path, dst: Path) -> dict:
    """YuNet with symbolic input height/width and output anchor counts."""
    import onnx  # fetch-time dependency only

    model = onnx.load(str(src))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    for output in model.graph.output:
        output.type.tensor_type.shape.dim[1].dim_param = f"anchors_{output.name}"
    del model.graph.value_info[:]  # stale fixed shapes; onnxruntime infers them per run
    _atomic_write(dst, model.SerializeToString())
    return {"transform": "dynamic_hw"}


def batched_classifier(src: Path, dst: Path) -> dict:
    """The classifier with a symbolic batch dimension (see model/optimize.py)."""
    from emotion.model.optimize import build_batched_classifier

    return build_batched_classifier(src, dst)


TRANSFORMS: dict[str, Callable[[Path, Path], dict]] = {
    "dynamic_hw": dynamic_detector_input,
    "batched": batched_classifier,
}


def _atomic_write(dst: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", dir=dst.parent)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, dst)


def build_derived(spec: ModelSpec, model_dir: Path) -> Path | None:
    """Build (or keep, when current) the derived file of a verified model; None when it has none."""
    if not spec.derive:
        return None
    target = derived_path(spec, model_dir)
    if verify_derived(spec, model_dir) is not None:
        return target
    info = TRANSFORMS[spec.derive](model_dir / spec.file, target)
    record = {"source_sha256": spec.sha256, "sha256": sha256_file(target), **info}
    _atomic_write(derived_sidecar(target), json.dumps(record, indent=2, sort_keys=True).encode())
    return target
