"""The README's shell examples, run as written against a real `emotion serve` (only the port changed): the curl
call answers what the README shows, the video job (create -> upload with the real size -> poll) succeeds, and the
command line prints the table shown. Values that depend on the CPU (timings, the last digits of probabilities)
are not compared; shapes, faces, boxes and outcomes are."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from emotion.api.server import serve_in_subprocess
from tests.terminal import run_in_terminal

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
README_URL = "http://127.0.0.1:8000"


def _blocks(section: str) -> list[tuple[str, str]]:
    """(language, text) of every fenced block in the README section headed ``section`` (## or ###)."""
    match = re.search(rf"^##+ {re.escape(section)}\n(.*?)(?=^## )", README, flags=re.S | re.M)
    assert match, f"README has no '{section}' section"
    return re.findall(r"```(\w*)\n(.*?)```", match.group(1), flags=re.S)


def _after(blocks: list[tuple[str, str]], needle: str) -> tuple[str, str]:
    """The shell block containing ``needle`` and the output block right after it."""
    for i, (lang, text) in enumerate(blocks):
        if lang == "sh" and needle in text:
            return text, blocks[i + 1][1]
    raise AssertionError(f"no sh block with {needle!r}")


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {k: v for k, v in os.environ.items() if k != "EMOTION_API_KEY"}
    env["EMOTION_DATA_DIR"] = str(tmp_path_factory.mktemp("readme-data"))
    with serve_in_subprocess(env) as (url, _proc):
        yield url.rstrip("/")


@pytest.fixture
def workdir(tmp_path: Path, shared_dir: Path) -> Path:
    shutil.copy(shared_dir / "data" / "scenes" / "fr_two_people.jpg", tmp_path / "photo.jpg")
    shutil.copy(shared_dir / "data" / "videos" / "fr_short_hamilton_clip.mp4", tmp_path / "clip.mp4")
    return tmp_path


def _bash(script: str, cwd: Path, url: str) -> subprocess.CompletedProcess:
    if not shutil.which("jq"):
        pytest.fail("jq is missing: apt-get install jq (make system-deps installs it)")
    env = dict(os.environ, PATH=f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}")
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script.replace(README_URL, url)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_curl_analyze_answers_what_the_readme_shows(server: str, workdir: Path) -> None:
    command, shown = _after(_blocks("HTTP"), "/v1/analyze")
    proc = _bash(command, workdir, server)
    assert proc.returncode == 0, proc.stderr
    got, expected = json.loads(proc.stdout), json.loads(shown)
    assert got.keys() == expected.keys() and got["image"] == expected["image"]
    assert len(got["faces"]) == len(expected["faces"])
    for face, want in zip(got["faces"], expected["faces"], strict=True):
        assert face.keys() == want.keys() and face["emotions"].keys() == want["emotions"].keys()
        assert all(abs(face["box"][k] - want["box"][k]) <= 3 for k in want["box"])
    assert got["models"].keys() == expected["models"].keys()  # the classifier's version may move on


def test_the_video_job_runs_as_written(server: str, workdir: Path) -> None:
    command, shown = _after(_blocks("HTTP"), "/v1/jobs")
    assert "stat -c %s clip.mp4" in command  # the real size, not a made-up one
    proc = _bash(command, workdir, server)
    assert proc.returncode == 0, proc.stderr
    got, expected = json.loads(proc.stdout), json.loads(shown)
    assert got.keys() == expected.keys() and got["status"] == expected["status"] == "succeeded"
    assert len(got["mostly"]) >= 2 and set(got["mostly"]) <= {"neutral", "happiness", "surprise", "sadness",
                                                              "anger", "disgust", "fear", "contempt"}


def test_the_command_line_table_is_what_a_terminal_shows(model_dir: Path, workdir: Path) -> None:
    command, shown = _after(_blocks("Command line"), "emotion analyze photo.jpg")
    status, output = run_in_terminal([str(REPO / ".venv" / "bin" / "emotion"), "analyze", "photo.jpg"], cwd=workdir)
    assert "emotion analyze photo.jpg" in command and status == 0
    rows = output.strip().splitlines()
    expected = shown.strip().splitlines()
    assert rows[0] == expected[0] and len(rows) == len(expected)
    for row, want in zip(rows[1:], expected[1:], strict=True):
        assert row.split()[:3] == want.split()[:3] or row.split()[:2] == want.split()[:2], (row, want)
