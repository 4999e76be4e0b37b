"""`pip install .` as a library user gets it: the wheel carries the API, the CLI, the manifest and our own
models, installs `model/` as `emotion.model` (no top-level `model`), and works outside the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {"emotion": REPO / "functions" / "emotion", "emotion.model": REPO / "model"}
    found = set()
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found.add(".".join((name, *parts)))
    assert found <= listed, f"packages missing from pyproject: {sorted(found - listed)}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a clean copy of the tracked files: an in-tree build leaves build/ behind, whose stale modules
    # a later wheel would carry.
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True, timeout=600)
    (built,) = out.glob("emotion_service-*.whl")
    return built


def test_the_wheel_carries_api_cli_manifest_and_our_models(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("emotion/__init__.py", "emotion/analyzer.py", "emotion/cli.py", "emotion/api/static/index.html",
                   "emotion/model/manifest.json", "emotion/model/ferplus.onnx", "emotion/model/ferplus_int8.onnx",
                   "emotion/model/training/train.py", "emotion/core/manifest.py"):
        assert needed in names, needed
    assert not [n for n in names if n.startswith(("model/", "tests/", "infra/", "benchmarks/"))]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "emotion = emotion.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_wheel_works_outside_the_checkout(wheel: Path, model_dir: Path, scenes: Path,
                                                       tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    code = (
        "import emotion, emotion.core.manifest as m, emotion.model;"
        f"assert emotion.__file__.startswith({str(target)!r}), emotion.__file__;"
        "assert m.bundled_path(m.load_manifest().get('ferplus')).is_file();"
        f"r = emotion.Analyzer(classifier='ferplus').analyze({str(scenes / 'fr_two_people.jpg')!r});"
        "print(len(r.faces), len(r.faces[0].emotions))"
    )
    env = {**os.environ, "PYTHONPATH": str(target), "EMOTION_MODEL_DIR": str(model_dir)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["2", "8"]  # ferplus (bundled in the wheel) has 8 classes, contempt included
