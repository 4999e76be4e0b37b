"""The model manifest (``model/manifest.json``): which ONNX files exist, how to verify and feed them.

The file lives in the repository's ``model/`` folder, installed as the data package ``emotion.model``; reading
it imports only that package's light ``__init__`` (no tooling).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

# The repository's model/ folder: manifest, our ONNX files, model cards (and the offline tooling).
ARTEFACTS_PACKAGE = "emotion.model"


class InputSpec(BaseModel):
    name: str
    shape: list[str]
    dtype: str = "float32"
    layout: Literal["NCHW", "NHWC"]
    color: Literal["BGR", "RGB", "GRAY"]


class ModelSpec(BaseModel):
    """One model file: identity, integrity and how to feed it."""

    name: str
    version: str
    role: Literal["detector", "classifier", "identity"]
    file: str
    size: int
    sha256: str
    urls: list[str] = Field(default_factory=list)
    licence: str
    input: InputSpec
    labels: list[str] = Field(default_factory=list)
    output: Literal["logits", "probabilities"] | None = None
    preprocessing: str
    notes: str = ""
    # A transform applied at fetch time (model/derived.py), e.g. "dynamic_hw" for YuNet.
    derive: str | None = None
    # Shipped inside the project (e.g. our own trained model) rather than fetched from a URL.
    bundled: bool = False
    # An int8 graph in QDQ form: onnxruntime must fuse its QuantizeLinear/DequantizeLinear pairs into integer
    # kernels when loading it, or every conv runs in float between them (2x slower).
    qdq_graph: bool = False
    # Arithmetic of the file's weights and products; an int8 file keeps every int8 weight within ±64 so that it
    # computes the same integers on every CPU (model/int8_exact.py).
    precision: Literal["int8", "fp32"] = "fp32"
    # The manifest entry holding the fp32 graph of the same weights (EMOTION_CLASSIFIER_PRECISION chooses).
    fp32_form: str | None = None
    # This entry is another form of that classifier, not a classifier of its own (not listed, not selectable).
    form_of: str | None = None


class Manifest(BaseModel):
    version: int
    models: list[ModelSpec]
    default_detector: str
    default_classifier: str

    def get(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def names(self, role: str) -> list[str]:
        """The selectable models of a role (another form of a classifier is not one of its own)."""
        return [m.name for m in self.models if m.role == role and m.form_of is None]


@lru_cache(maxsize=1)
def load_manifest() -> Manifest:
    """The manifest shipped with the package (parsed once per process)."""
    text = (resources.files(ARTEFACTS_PACKAGE) / "manifest.json").read_text(encoding="utf-8")
    return Manifest.model_validate(json.loads(text))


def bundled_path(spec: ModelSpec) -> Path:
    """Where a model shipped inside the package (our own trained models) lives."""
    return Path(str(resources.files(ARTEFACTS_PACKAGE) / spec.file))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
