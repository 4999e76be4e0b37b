"""Embedded mode end to end over HTTP: the real app under uvicorn on 127.0.0.1, local storage, local worker.

create job → upload through the local stand-in for S3's presigned POST (same form fields) → poll → result.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, model_dir: Path):
    import uvicorn

    from emotion.settings import get_settings
    from emotion.storage import get_storage

    mp = pytest.MonkeyPatch()
    mp.setenv("EMOTION_STORAGE", "local")
    mp.setenv("EMOTION_DATA_DIR", str(tmp_path_factory.mktemp("emotion-data")))
    mp.setenv("EMOTION_MAX_UPLOAD_BYTES", "2000000")
    mp.delenv("EMOTION_API_KEY", raising=False)
    get_settings.cache_clear()
    get_storage.cache_clear()
    from emotion.api.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline and not srv.started:
        time.sleep(0.1)
    assert srv.started, "uvicorn did not start"
    yield base
    srv.should_exit = True
    thread.join(15)
    mp.undo()
    get_settings.cache_clear()
    get_storage.cache_clear()


def submit(base: str, path: Path, content_type: str, data: bytes | None = None) -> tuple[str, dict]:
    data = path.read_bytes() if data is None else data
    created = httpx.post(f"{base}/v1/jobs", json={"filename": path.name, "content_type": content_type,
                                                  "size": len(data)})
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["upload"]["url"] == f"{base}/v1/uploads"
    assert job["status_url"] == f"{base}/v1/jobs/{job['job_id']}"
    return job["job_id"], job


def upload(job: dict, name: str, data: bytes, content_type: str) -> httpx.Response:
    return httpx.post(job["upload"]["url"], data=job["upload"]["fields"], files={"file": (name, data, content_type)},
                      timeout=60)


def poll(url: str, timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = httpx.get(url).json()
        assert 0 <= status["progress"] <= 1
        if status["status"] in ("succeeded", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def test_video_job_end_to_end(server: str, shared_dir: Path) -> None:
    clip = shared_dir / "data" / "videos" / "fa_test_video.mp4"
    data = clip.read_bytes()
    job_id, job = submit(server, clip, "video/mp4")
    assert httpx.get(job["status_url"]).json()["status"] == "pending"
    resp = upload(job, clip.name, data, "video/mp4")
    assert resp.status_code == 204, resp.text
    status = poll(job["status_url"])
    assert status["status"] == "succeeded", status
    assert status["kind"] == "video" and status["progress"] == 1.0
    result = status["result"]
    assert result["video"]["frames_read"] == 5 and result["tracks"]
    for track in result["tracks"]:
        times = [p["t_ms"] for p in track["timeline"]]
        assert times == sorted(times)
    annotated = httpx.get(status["annotated_url"])
    assert annotated.status_code == 200 and annotated.headers["content-type"] == "video/mp4"
    tampered = httpx.get(status["annotated_url"].replace("signature=", "signature=0"))
    assert tampered.status_code == 403 and tampered.json()["error"]["code"] == "forbidden"


def test_video_job_min_face(server: str, shared_dir: Path) -> None:
    """A video job's min_face (px of the video) leaves out smaller faces; a bad one is a 422 and makes no job."""
    clip = shared_dir / "data" / "videos" / "fa_test_video.mp4"
    data = clip.read_bytes()
    results = {}
    for min_face in (0, 10_000):
        created = httpx.post(f"{server}/v1/jobs", json={"filename": clip.name, "content_type": "video/mp4",
                                                        "size": len(data), "min_face": min_face})
        assert created.status_code == 201, created.text
        job = created.json()
        assert upload(job, clip.name, data, "video/mp4").status_code == 204
        status = poll(job["status_url"])
        assert status["status"] == "succeeded", status
        results[min_face] = status["result"]
    assert results[0]["tracks"] and results[0]["persons"]
    assert results[10_000]["tracks"] == [] and results[10_000]["video"] == results[0]["video"]
    bad = httpx.post(f"{server}/v1/jobs", json={"filename": clip.name, "content_type": "video/mp4",
                                                "size": len(data), "min_face": -1})
    assert bad.status_code == 422 and bad.json()["error"]["code"]


def test_upload_refused_by_policy(server: str, shared_dir: Path) -> None:
    clip = shared_dir / "data" / "videos" / "fa_test_video.mp4"
    data = clip.read_bytes()
    _, job = submit(server, clip, "video/mp4")
    wrong_type = dict(job["upload"]["fields"], **{"Content-Type": "text/html"})
    resp = httpx.post(job["upload"]["url"], data=wrong_type, files={"file": ("x.html", b"<html>", "text/html")})
    assert resp.status_code == 403 and "Content-Type" in resp.json()["error"]["message"]
    too_big = upload(job, clip.name, b"\0" * 2_000_001, "video/mp4")
    assert too_big.status_code in (403, 413)
    forged = dict(job["upload"]["fields"], key="uploads/" + "a" * 32 + "/other.mp4")
    assert httpx.post(job["upload"]["url"], data=forged, files={"file": ("a", data, "video/mp4")}).status_code == 403


def test_image_and_poison_jobs(server: str, scenes: Path) -> None:
    photo = scenes / "fr_two_people.jpg"
    _, job = submit(server, photo, "image/jpeg")
    assert upload(job, photo.name, photo.read_bytes(), "image/jpeg").status_code == 204
    status = poll(job["status_url"])
    assert status["status"] == "succeeded" and len(status["result"]["faces"]) >= 2

    junk = b"\xff\xd8\xff\xe0" + b"\x00\x01" * 300
    _, job = submit(server, photo, "image/jpeg", junk)
    assert upload(job, photo.name, junk, "image/jpeg").status_code == 204
    status = poll(job["status_url"])
    assert status["status"] == "failed" and status["error"]["code"] == "undecodable_image"
