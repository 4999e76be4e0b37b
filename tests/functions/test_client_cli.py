"""``emotion.Client``, ``emotion batch`` and ``emotion analyze --csv`` against a real local server (uvicorn on
127.0.0.1, embedded storage and worker, an API key required), with real photos from ../shared/data."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.live_server import running_server

KEY = "test-key-" + "k" * 32


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[str]:
    with running_server({"EMOTION_STORAGE": "local", "EMOTION_DATA_DIR": str(tmp_path_factory.mktemp("cli-data")),
                         "EMOTION_API_KEY": KEY, "EMOTION_COLLECTION_CHUNK_IMAGES": "5"}, unset=()) as base:
        yield base


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    """12 photos in two sub-folders, one broken JPEG, and a text file (left out: not an image extension)."""
    root = tmp_path_factory.mktemp("study")
    (root / "scenes").mkdir()
    (root / "crops").mkdir()
    for path in sorted((shared_dir / "data" / "scenes").glob("*.jpg"))[:6]:
        shutil.copy(path, root / "scenes" / path.name)
    for path in sorted((shared_dir / "data" / "ferplus_train").glob("*.png"))[:5]:
        shutil.copy(path, root / "crops" / path.name)
    (root / "crops" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "notes.txt").write_text("not an image")
    return root


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "emotion"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})}, check=False)


def test_client_analyze_matches_the_library(server: str, scenes: Path) -> None:
    import emotion

    client = emotion.Client(server, api_key=KEY)
    photo = scenes / "fr_two_people.jpg"
    remote, local = client.analyze(photo), emotion.Analyzer().analyze(photo)
    assert isinstance(remote, emotion.AnalysisResult) and len(remote.faces) == len(local.faces) >= 2
    assert [f.box for f in remote.faces] == [f.box for f in local.faces]
    assert [f.dominant_emotion for f in remote.faces] == [f.dominant_emotion for f in local.faces]
    from_array = client.analyze(np.asarray(__import__("PIL.Image").Image.open(photo).convert("RGB")), rgb=True)
    assert len(from_array.faces) == len(local.faces)
    with pytest.raises(emotion.UnsupportedMediaType):
        client.analyze(b"%PDF-1.4 not an image")
    with pytest.raises(emotion.EmotionError) as caught:
        emotion.Client(server, api_key="wrong").analyze(photo)
    assert caught.value.status == 401
    with pytest.raises(emotion.EmotionError) as caught:
        emotion.Client("http://127.0.0.1:9", api_key=KEY).analyze(photo)
    assert caught.value.code == "service_unreachable"


def test_client_collection_from_a_folder(server: str, folder: Path, tmp_path: Path) -> None:
    import emotion

    result = emotion.Client(server, api_key=KEY, poll_s=0.2).analyze_collection(folder, progress=False,
                                                                                out=tmp_path / "out")
    assert isinstance(result, emotion.CollectionResult)
    names = [image.name for image in result.images]
    assert names == sorted(names) and len(names) == 12 and not any(n.endswith(".txt") for n in names)
    broken = next(image for image in result.images if image.name.endswith("broken.jpg"))
    assert broken.result is None and broken.error is not None and broken.error.code == "undecodable_image"
    analysed = [image for image in result.images if image.result is not None]
    assert len(analysed) == 11 and all(isinstance(i.result, emotion.AnalysisResult) for i in analysed)
    assert result.summary["images"] == 12 and result.summary["failures_by_code"] == {"undecodable_image": 1}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["faces.csv", "results.jsonl", "summary.json"]
    # A ZIP given as it is: the same images, the same answers.
    archive = shutil.make_archive(str(tmp_path / "study"), "zip", folder.parent, folder.name)
    again = emotion.Client(server, api_key=KEY, poll_s=0.2).analyze_collection(archive, progress=False)
    by_name = {i.name: i for i in again.images}
    for image in analysed:
        theirs = by_name[image.name].result
        assert theirs is not None and image.result is not None
        assert [(f.box, f.dominant_emotion) for f in theirs.faces] == [(f.box, f.dominant_emotion)
                                                                       for f in image.result.faces]
    notes = by_name[f"{folder.name}/notes.txt"].error
    assert notes is not None and notes.code == "unsupported_media_type"


def test_cli_batch_writes_three_files(server: str, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "batch"
    done = run_cli("batch", str(folder / "scenes"), str(folder / "crops"), "--url", server, "--api-key", KEY,
                   "--out", str(out))
    assert done.returncode == 1, done.stderr  # one image failed: exit status 1, and it is reported
    summary = json.loads(done.stdout)
    assert summary["images"] == 12 and summary["failed"] == 1 and summary["faces"] >= 11
    rows = list(csv.DictReader((out / "faces.csv").open()))
    assert {r["image"].split("/")[0] for r in rows} == {"scenes", "crops"}
    assert json.loads((out / "summary.json").read_text())["images"] == 12
    ok = run_cli("batch", str(folder / "scenes"), "--url", server, "--out", str(out), env={"EMOTION_API_KEY": KEY})
    assert ok.returncode == 0, ok.stderr
    refused = run_cli("batch", str(folder), "--url", server, "--out", str(out), "--api-key", "wrong")
    assert refused.returncode == 2 and "x-api-key" in refused.stderr


def test_cli_analyze_csv_matches_the_collection_rows(server: str, folder: Path, tmp_path: Path) -> None:
    from emotion.tables import CSV_COLUMNS

    out = tmp_path / "faces.csv"
    done = run_cli("analyze", str(folder / "scenes"), "--csv", str(out))
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 6  # JSON Lines still on stdout
    local = list(csv.DictReader(out.open()))
    assert tuple(local[0]) == CSV_COLUMNS
    batch = run_cli("batch", str(folder / "scenes"), "--url", server, "--api-key", KEY, "--out", str(tmp_path / "b"))
    remote = list(csv.DictReader((tmp_path / "b" / "faces.csv").open()))
    columns = ("face", "x", "y", "width", "height", "dominant_emotion", "error")
    assert batch.returncode == 0
    assert [[r[c] for c in columns] for r in local] == [[r[c] for c in columns] for r in remote]
    assert [Path(r["image"]).name for r in local] == [Path(r["image"]).name for r in remote]

    as_csv = run_cli("analyze", str(folder / "crops"), "--format", "csv")
    assert as_csv.returncode == 1  # broken.jpg
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len({r["image"] for r in rows}) == 6
    assert [r["error"] for r in rows if r["image"].endswith("broken.jpg")] == ["undecodable_image"]
