"""The Python library as a notebook user calls it: every kind of image input, typed errors, light import,
no clash with a user's own ``model.py``, and the one-way package structure."""

from __future__ import annotations

import ast
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import emotion
from emotion.settings import get_settings

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "functions" / "emotion"
EMOTION_CLI = shutil.which("emotion", path=str(Path(sys.executable).parent)) or "emotion"


@pytest.fixture(scope="module")
def analyzer(model_dir: Path) -> emotion.Analyzer:
    return emotion.Analyzer()


@pytest.fixture(scope="module")
def two_people(scenes: Path) -> Path:
    return scenes / "fr_two_people.jpg"


def _boxes(result: emotion.AnalysisResult) -> np.ndarray:
    return np.array([[f.box.x, f.box.y, f.box.width, f.box.height] for f in result.faces], dtype=float)


def test_every_input_kind_gives_the_same_faces(analyzer: emotion.Analyzer, two_people: Path) -> None:
    data = two_people.read_bytes()
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    reference = analyzer.analyze(str(two_people))
    assert len(reference.faces) == 2
    results = {
        "Path": analyzer.analyze(two_people),
        "bytes": analyzer.analyze(data),
        "BGR array": analyzer.analyze(bgr),
        "RGB array": analyzer.analyze(np.ascontiguousarray(bgr[:, :, ::-1]), rgb=True),
        "PIL image": analyzer.analyze(Image.open(io.BytesIO(data))),
    }
    for kind, result in results.items():
        assert result.image == reference.image, kind
        # Pillow and OpenCV may decode a JPEG a grey level apart; boxes stay within 2 px.
        assert np.abs(_boxes(result) - _boxes(reference)).max() <= 2, kind
        assert [f.dominant_emotion for f in result.faces] == [f.dominant_emotion for f in reference.faces], kind
    # A grey photo: the same two faces are found (the detector may see a third, weaker one without colour).
    grey = _boxes(analyzer.analyze(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)))
    for box in _boxes(reference):
        assert max(_iou(box, other) for other in grey) > 0.8


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_an_rgb_array_read_as_bgr_is_not_silently_the_same(analyzer: emotion.Analyzer, two_people: Path) -> None:
    bgr = cv2.imread(str(two_people))
    as_bgr = analyzer.analyze(bgr)
    swapped = analyzer.analyze(np.ascontiguousarray(bgr[:, :, ::-1]))  # RGB pixels without rgb=True
    # The flag matters: the colour order reaches the detector and the (RGB) classifier.
    first, first_swapped = as_bgr.faces[0], min(swapped.faces, key=lambda f: -_iou(_boxes(as_bgr)[0], np.array(
        [f.box.x, f.box.y, f.box.width, f.box.height], dtype=float)))
    assert max(abs(first.emotions[k] - first_swapped.emotions[k]) for k in first.emotions) > 1e-3


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (lambda tmp: tmp / "missing.jpg", emotion.InputNotFound, "no such file"),
        (lambda tmp: tmp, emotion.BadParameter, "is a folder"),
        (lambda tmp: _write(tmp / "notes.txt", b"some text\n"), emotion.UnsupportedMediaType, "not a supported image"),
        (lambda tmp: np.zeros((0, 0, 3), np.uint8), emotion.EmptyInput, "empty"),
        (lambda tmp: np.zeros((64, 64, 3), np.float64), emotion.BadParameter, "uint8"),
        (lambda tmp: np.zeros((64, 64, 5), np.uint8), emotion.BadParameter, "shape"),
        (lambda tmp: np.zeros((5, 64, 3), np.uint8), emotion.ImageTooSmall, "at least"),
        (lambda tmp: b"", emotion.EmptyInput, "no image bytes"),
        (lambda tmp: "https://example.com/a.jpg", emotion.BadParameter, "never fetched"),
        (lambda tmp: 42, emotion.BadParameter, "cannot read an image from a int"),
    ],
)
def test_bad_inputs_raise_typed_errors_with_clear_messages(analyzer, tmp_path, make, error, words) -> None:
    with pytest.raises(error) as caught:
        analyzer.analyze(make(tmp_path))
    assert words in caught.value.message
    assert isinstance(caught.value, emotion.EmotionError)
    assert "0x" not in caught.value.message  # no object reprs


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_huge_arrays_meet_the_pixel_limit(analyzer: emotion.Analyzer) -> None:
    limit = get_settings().max_pixels
    side = int(limit**0.5) + 64
    huge = np.broadcast_to(np.zeros(1, np.uint8), (side, side, 3))  # no memory: a strided view
    with pytest.raises(emotion.ImageTooLarge, match="limit"):
        analyzer.analyze(huge)


def test_analyze_many_matches_one_by_one(analyzer: emotion.Analyzer, scenes: Path) -> None:
    paths = sorted(scenes.glob("*.jpg"))
    one_by_one = [analyzer.analyze(p) for p in paths]
    together = list(analyzer.analyze_many(paths, batch_size=3))
    assert len(together) == len(paths)
    for a, b in zip(one_by_one, together, strict=True):
        assert _boxes(a).tolist() == _boxes(b).tolist()
        for fa, fb in zip(a.faces, b.faces, strict=True):
            assert fa.dominant_emotion == fb.dominant_emotion
            assert max(abs(fa.emotions[k] - fb.emotions[k]) for k in fa.emotions) < 1e-4
        assert b.timings_ms["decode"] > 0


def test_annotate_returns_pixels_and_writes_by_extension(analyzer, two_people, tmp_path) -> None:
    drawn = analyzer.annotate(two_people, path=tmp_path / "out.webp")
    original = cv2.imread(str(two_people))
    assert drawn.shape == original.shape and not np.array_equal(drawn, original)
    assert (tmp_path / "out.webp").read_bytes()[8:12] == b"WEBP"
    rgb = analyzer.annotate(np.ascontiguousarray(original[:, :, ::-1]), rgb=True)
    assert np.array_equal(rgb[:, :, ::-1], drawn)  # the colour order given comes back
    with pytest.raises(emotion.BadParameter, match="extension"):
        analyzer.annotate(two_people, path=tmp_path / "out.gif")


def test_options_are_applied(model_dir: Path, scenes: Path) -> None:
    image = scenes / "fp_multiface.jpg"
    everything = emotion.Analyzer().analyze(image)
    assert len(emotion.Analyzer(max_faces=2).analyze(image).faces) == 2
    big = max(f.box.width for f in everything.faces)
    assert all(f.box.width >= big - 1 or f.box.height >= big - 1
               for f in emotion.Analyzer(min_face=big - 1).analyze(image).faces)
    low = emotion.Analyzer(score_threshold=0.3).analyze(image)
    assert len(low.faces) >= len(everything.faces)
    light = emotion.Analyzer(classifier="mini_xception")
    assert len(light.labels) == 7 and "contempt" not in light.labels
    with pytest.raises(emotion.BadParameter, match="unknown classifier"):
        emotion.Analyzer(classifier="nope")


def test_a_missing_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(emotion.ModelUnavailable) as caught:
        emotion.Analyzer(model_dir=tmp_path)
    assert "emotion models fetch" in caught.value.message
    assert str(tmp_path) not in caught.value.message  # no server paths in messages


def test_module_level_analyze_and_model_dump_is_the_service_json(model_dir: Path, two_people: Path) -> None:
    result = emotion.analyze(two_people)
    assert emotion.analyze(two_people.read_bytes()).faces[0].box == result.faces[0].box
    dumped = result.model_dump()
    assert set(dumped) == {"image", "faces", "models", "timings_ms"}
    assert set(dumped["faces"][0]) >= {"box", "confidence", "landmarks", "emotions", "dominant_emotion"}
    json.dumps(dumped)


def test_analyze_video_reports_progress(model_dir: Path, shared_dir: Path) -> None:
    clip = shared_dir / "data" / "videos" / "fr_short_hamilton_clip.mp4"
    seen: list[float] = []
    result = emotion.analyze_video(clip, fps=2, progress=seen.append)
    assert result.tracks and seen and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    with pytest.raises(emotion.InputNotFound):
        emotion.analyze_video(shared_dir / "no-such-clip.mp4")
    # min_face (px of the video, 640x360): none of its faces is 1000 px; its performer is over 60 px.
    assert emotion.analyze_video(clip, fps=2, min_face=1000).tracks == []
    large = emotion.analyze_video(clip, fps=2, min_face=60)
    assert large.tracks and all(min(p.box.width, p.box.height) >= 60 for t in large.tracks for p in t.timeline)


# ------------------------------------------------------------------------------------ import behaviour
def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)


def test_import_emotion_is_light(tmp_path: Path) -> None:
    proc = _python(
        "import sys, emotion; heavy = ('onnxruntime', 'cv2', 'pydantic', 'numpy', 'PIL', 'fastapi');"
        "print(sorted(m for m in heavy if m in sys.modules))", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_users_own_modules_in_the_working_directory_break_nothing(model_dir, two_people, tmp_path) -> None:
    for name in ("model", "training", "benchmarks", "tests", "functions", "infra"):
        (tmp_path / f"{name}.py").write_text(f"raise RuntimeError('the user module {name}.py was imported')\n")
    proc = _python(f"import emotion; print(len(emotion.analyze({str(two_people)!r}).faces))", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for args in (["models", "list"], ["analyze", str(two_people)], ["eval-classify", "--help"],
                 ["eval-detect", "--help"], ["bench", "--help"], ["train", "--help"], ["export", "--help"]):
        cli = subprocess.run([EMOTION_CLI, *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
        assert cli.returncode == 0, (args, cli.stderr[-1500:])
        assert "user module" not in cli.stderr


# ------------------------------------------------------------------------------------ one-way structure
# Modules under each prefix must never import any of these (the core is below every adapter and tool).
FORBIDDEN = {
    "emotion.core": ("fastapi", "starlette", "mangum", "boto3", "botocore", "uvicorn", "aws_lambda_powertools",
                     "emotion.api", "emotion.jobs", "emotion.storage", "emotion.cli", "emotion.analyzer",
                     "emotion.model", "model", "torch"),
    # The run-time adapters may use the core and each other, never the offline tooling.
    "emotion.api": ("emotion.model", "model", "torch"),
    "emotion.jobs": ("emotion.model", "model", "torch"),
    "emotion.storage": ("emotion.model", "model", "torch", "emotion.api"),
    "emotion.analyzer": ("emotion.model", "model", "fastapi", "boto3", "mangum"),
    "emotion.settings": ("emotion.model", "model"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_dependencies_point_one_way() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        for prefix, banned in FORBIDDEN.items():
            if module == prefix or module.startswith(prefix + "."):
                for name in _imports(path):
                    if any(name == b or name.startswith(b + ".") for b in banned):
                        violations.append(f"{module} imports {name}")
    assert not violations, violations
    # and the tooling sits above: nothing in the repository imports a top-level `model` package any more
    folders = ("functions", "model", "tests", "benchmarks", "infra", "layers")
    stray = [f"{p.relative_to(REPO)}: {n}" for folder in folders for p in (REPO / folder).rglob("*.py")
             for n in _imports(p) if n == "model" or n.startswith("model.")]
    assert not stray, stray


def test_the_import_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import boto3\nfrom emotion.model.evaluate import evaluate_classifier\n")
    assert {"boto3", "emotion.model.evaluate"} <= _imports(bad)


def test_readme_python_example_runs_as_written(model_dir, two_people, shared_dir, tmp_path) -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Python\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert section, "README has no '## Python' section"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), flags=re.S)
    assert blocks, "the Python section has no python example"
    shutil.copy(two_people, tmp_path / "photo.jpg")
    shutil.copy(shared_dir / "data" / "videos" / "fr_short_hamilton_clip.mp4", tmp_path / "clip.mp4")
    proc = _python("\n".join(blocks), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip(), "the example prints what it found"


def test_models_go_to_the_venv_or_a_per_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from emotion import settings as settings_module

    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(sys, "base_prefix", "/usr")
    assert settings_module._default_model_dir() == tmp_path / "venv" / "share" / "emotion-models"
    monkeypatch.setattr(sys, "prefix", "/usr")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # platformdirs' Linux cache root
    assert settings_module._default_model_dir() == tmp_path / "cache" / "emotion-service" / "models"
