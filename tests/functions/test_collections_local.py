"""Collections in the embedded mode, end to end over HTTP: the real app under uvicorn on 127.0.0.1, local storage,
the in-process worker and its chunk threads, real photos from ../shared/data.

create job (application/zip or tar) → upload through the presigned-POST stand-in → poll (progress) → the three
result files. Every bad archive fails its job with a code; every bad entry is a row with a code.
"""

from __future__ import annotations

import csv
import io
import json
import tarfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.corpus import png_with_declared_size
from tests.live_server import running_server

CHUNK = 7


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[str]:
    with running_server({"EMOTION_STORAGE": "local", "EMOTION_DATA_DIR": str(tmp_path_factory.mktemp("coll-data")),
                         "EMOTION_MAX_UPLOAD_BYTES": "20000000", "EMOTION_COLLECTION_CHUNK_IMAGES": str(CHUNK),
                         "EMOTION_COLLECTION_MAX_IMAGES": "80",
                         "EMOTION_COLLECTION_MAX_UNCOMPRESSED_BYTES": "40000000"}) as base:
        yield base


def zip_bytes(entries: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as zf:
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=method)
    return buffer.getvalue()


def tar_bytes(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_collection(base: str, data: bytes, content_type: str = "application/zip",
                   name: str = "photos.zip") -> tuple[dict, list[dict]]:
    created = httpx.post(f"{base}/v1/jobs", json={"filename": name, "content_type": content_type, "size": len(data)})
    assert created.status_code == 201, created.text
    job = created.json()
    posted = httpx.post(job["upload"]["url"], data=job["upload"]["fields"],
                        files={"file": (name, data, content_type)}, timeout=60)
    assert posted.status_code == 204, posted.text
    seen = []
    deadline = time.time() + 300
    while time.time() < deadline:
        status = httpx.get(job["status_url"]).json()
        seen.append(status)
        if status["status"] in ("succeeded", "failed"):
            return status, seen
        time.sleep(0.1)
    raise AssertionError("collection did not finish")


def photos(shared_dir: Path) -> list[tuple[str, bytes]]:
    scenes = sorted((shared_dir / "data" / "scenes").glob("*.jpg"))
    crops = sorted((shared_dir / "data" / "ferplus_train").glob("*.png"))[:22]
    return [(f"scenes/{p.name}", p.read_bytes()) for p in scenes] + [(f"crops/{p.name}", p.read_bytes()) for p in crops]


def bad_entries(good: bytes) -> list[tuple[str, bytes]]:
    return [
        ("notes.txt", b"not an image at all\n" * 5),
        ("truncated.jpg", good[: len(good) // 3]),
        ("../../escape.jpg", good),
        ("inner/archive.zip", zip_bytes([("x.jpg", good)])),
        ("scenes/fr_two_people.jpg", good),  # a duplicate name
        ("bomb.png", png_with_declared_size(100_000, 100_000)),
        ("zeros.bmp", b"BM" + b"\0" * 3_000_000),  # compression ratio ~1000
        ("__MACOSX/scenes/._fr_two_people.jpg", b"resource fork"),
    ]


def get(url: str) -> bytes:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_collection_end_to_end(server: str, shared_dir: Path) -> None:
    from emotion import Analyzer
    from emotion.tables import CSV_COLUMNS

    good = photos(shared_dir)
    entries = good + bad_entries(good[0][1])
    status, seen = run_collection(server, zip_bytes(entries))
    assert status["status"] == "succeeded", status
    running = [s["collection"] for s in seen if s["status"] == "processing" and s["collection"]["total"]]
    for progress in running:  # progress only moves forward and stays within total
        assert 0 <= progress["done"] <= progress["total"] == len(entries) - 1
    chunks = -(-(len(entries) - 1) // CHUNK)
    assert status["collection"] == {"total": len(entries) - 1, "done": len(entries) - 1, "failed": 7,
                                    "chunks": chunks, "chunks_done": chunks}
    summary = status["result"]
    assert summary["kind"] == "collection" and summary["images"] == len(entries) - 1 and summary["skipped"] == 1
    assert summary["failures_by_code"] == {"compression_ratio": 1, "duplicate_name": 1, "image_too_large": 1,
                                           "nested_archive": 1, "undecodable_image": 1, "unsafe_name": 1,
                                           "unsupported_media_type": 1}
    assert summary["faces"] >= 30 and sum(summary["dominant_emotions"].values()) == summary["faces"]
    assert abs(sum(summary["mean_probabilities"].values()) - 1) < 0.01

    lines = [json.loads(line) for line in get(status["files"]["results_jsonl"]).decode().splitlines()]
    assert [line["name"] for line in lines] == [name for name, _ in entries if "__MACOSX" not in name]
    rows = list(csv.DictReader(io.StringIO(get(status["files"]["faces_csv"]).decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert len(rows) == sum(max(1, len(line.get("faces", []))) for line in lines)
    assert json.loads(get(status["files"]["summary_json"])) == summary

    # Each image's row is the library's answer for the same bytes (boxes, dominant emotion, probabilities).
    analyzer = Analyzer()
    by_name: dict[str, dict] = {}
    for line in lines:
        by_name.setdefault(line["name"], line)  # a duplicate name's second entry is an error row
    for name, data in good[:3] + good[-2:]:
        expected = analyzer.analyze(data)
        got = by_name[name]
        assert [f["box"] for f in got["faces"]] == [f.box.model_dump() for f in expected.faces]
        assert [f["dominant_emotion"] for f in got["faces"]] == [f.dominant_emotion for f in expected.faces]
        for mine, theirs in zip(got["faces"], expected.faces, strict=True):
            assert all(abs(mine["emotions"][k] - v) <= 2e-4 for k, v in theirs.emotions.items())
    face_rows = [r for r in rows if r["image"] == "scenes/fr_two_people.jpg" and not r["error"]]
    assert len(face_rows) == len(by_name["scenes/fr_two_people.jpg"]["faces"]) >= 2
    assert [r["face"] for r in face_rows] == [str(i) for i in range(1, len(face_rows) + 1)]
    with_face = [r for r in rows if r["face"]]
    assert with_face and all(r["pose_yaw"] != "" and r["quality_reliable"] in ("True", "False") for r in with_face)
    failed = {r["image"]: r["error"] for r in rows if r["error"]}
    assert failed["notes.txt"] == "unsupported_media_type" and failed["../../escape.jpg"] == "unsafe_name"
    assert all(r["face"] == "" and r["x"] == "" for r in rows if r["error"])


def test_tar_collection_gives_the_same_rows(server: str, shared_dir: Path) -> None:
    entries = photos(shared_dir)[:9]
    by_zip, _ = run_collection(server, zip_bytes(entries))
    by_tar, _ = run_collection(server, tar_bytes(entries), "application/x-tar", "photos.tar")
    assert by_zip["status"] == by_tar["status"] == "succeeded"
    strip = [{k: v for k, v in json.loads(line).items() if k != "timings_ms"}
             for line in get(by_zip["files"]["results_jsonl"]).decode().splitlines()]
    assert strip == [{k: v for k, v in json.loads(line).items() if k != "timings_ms"}
                     for line in get(by_tar["files"]["results_jsonl"]).decode().splitlines()]
    assert get(by_zip["files"]["faces_csv"]) == get(by_tar["files"]["faces_csv"])


@pytest.mark.parametrize(("make", "code"), [
    (lambda good: zip_bytes([]), "empty_archive"),
    (lambda good: zip_bytes([("folder/", b""), (".DS_Store", b"x")]), "empty_archive"),
    (lambda good: b"this is not an archive" * 40, "undecodable_archive"),
    (lambda good: zip_bytes([("a.jpg", good)])[:-30], "undecodable_archive"),
    (lambda good: zip_bytes([(f"{i}.jpg", good) for i in range(81)], zipfile.ZIP_STORED), "too_many_entries"),
    (lambda good: zip_bytes([(f"{i}.bmp", b"\0" * 900_000) for i in range(45)]), "archive_too_large"),
])
def test_bad_archives_fail_with_a_reason(server: str, shared_dir: Path, make, code: str) -> None:
    good = (shared_dir / "data" / "ferplus_train" / "fer0000000.png").read_bytes()
    status, _ = run_collection(server, make(good))
    assert status["status"] == "failed" and status["error"]["code"] == code, status
    assert status["files"] is None


def test_collection_job_refuses_other_types(server: str) -> None:
    resp = httpx.post(f"{server}/v1/jobs", json={"filename": "a.rar", "content_type": "application/x-rar",
                                                 "size": 100})
    assert resp.status_code == 415 and "application/zip" in resp.json()["error"]["message"]
    resp = httpx.post(f"{server}/v1/jobs", json={"filename": "a.zip", "content_type": "application/zip",
                                                 "size": 20_000_001})
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "upload_too_large"
