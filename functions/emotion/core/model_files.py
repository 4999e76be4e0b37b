"""Run-time checks of model files: sha256 against the manifest, fetch-time derived graphs, ONNX metadata.

Building derived graphs is fetch-time tooling (``emotion.model.derived``); this module only verifies them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from emotion.core.errors import ModelUnavailable
from emotion.core.manifest import ModelSpec, sha256_file

FETCH_HINT = "run `emotion models fetch` (or set EMOTION_MODEL_DIR to a folder that has the models)"


def verified_model_path(spec: ModelSpec, model_dir: Path) -> Path:
    """The model file in ``model_dir``, checked against the manifest's size and sha256."""
    path = model_dir / spec.file
    if not path.is_file():
        raise ModelUnavailable(f"model {spec.name} is not installed; {FETCH_HINT}")
    if path.stat().st_size != spec.size or sha256_file(path) != spec.sha256:
        raise ModelUnavailable(f"model {spec.name} fails its sha256 check; run `emotion models fetch` again")
    return path


def derived_path(spec: ModelSpec, model_dir: Path) -> Path:
    """Where the fetch-time derived graph of ``spec`` lives (next to the original)."""
    return model_dir / f"{Path(spec.file).stem}.{spec.derive}.onnx"


def derived_sidecar(path: Path) -> Path:
    """The JSON record of a derived graph: its source's sha256 and its own."""
    return path.with_suffix(".json")


def verify_derived(spec: ModelSpec, model_dir: Path) -> Path | None:
    """The derived file if it was built from this exact source and is intact, else None."""
    if not spec.derive:
        return None
    target = derived_path(spec, model_dir)
    try:
        record = json.loads(derived_sidecar(target).read_text())
    except (OSError, ValueError):
        return None
    if record.get("source_sha256") != spec.sha256 or not target.is_file():
        return None
    return target if sha256_file(target) == record.get("sha256") else None


def runnable_model_path(spec: ModelSpec, model_dir: Path) -> Path:
    """The verified file to load: the fetch-time derived graph when the model has one."""
    verified_model_path(spec, model_dir)
    if not spec.derive:
        return model_dir / spec.file
    derived = verify_derived(spec, model_dir)
    if derived is None:
        raise ModelUnavailable(f"model {spec.name}: its derived graph is missing or stale; {FETCH_HINT}")
    return derived


def verify_metadata(
    metadata: dict[str, str], labels: Sequence[str], preprocessing: str, output: str | None = None
) -> None:
    """Raise ``ValueError`` unless the file's labels / preprocessing (/ output kind) match the manifest."""
    problems = []
    try:
        got_labels = json.loads(metadata.get("labels", "null"))
    except json.JSONDecodeError:
        got_labels = None
    if got_labels != list(labels):
        problems.append(f"labels {got_labels!r} != manifest {list(labels)!r}")
    if metadata.get("preprocessing") != preprocessing:
        problems.append(f"preprocessing {metadata.get('preprocessing')!r} != manifest {preprocessing!r}")
    if output is not None and metadata.get("output") != output:
        problems.append(f"output {metadata.get('output')!r} != manifest {output!r}")
    if problems:
        raise ValueError("ONNX metadata does not match: " + "; ".join(problems))


def check_metadata(spec: ModelSpec, metadata: dict[str, str]) -> None:
    """Models that describe themselves (our own exports) must agree with the manifest on labels and input."""
    if "labels" not in metadata:
        return  # upstream files carry no metadata; their sha256 pins them instead
    try:
        verify_metadata(metadata, spec.labels, spec.preprocessing, spec.output)
    except ValueError as exc:
        raise ModelUnavailable(f"model {spec.name}: file metadata disagrees with the manifest: {exc}") from exc
