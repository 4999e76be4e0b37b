"""HTTP hygiene and bounded cost per request (issue 12, rows 4, 13-16, 18, 21), on the real server or Mangum.

Each test would fail on the code before the issue: no 429 (unbounded threadpool), the Host header in links,
an empty EMOTION_API_KEY silently turning auth off, /healthz 200 with no models, ClientDisconnect as a 500,
Lambda-sized bodies/responses reaching the gateway as 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.functions.test_lambda_events import context, load_event


def _invoke(event: dict) -> dict:
    """The app behind Mangum, as in emotion.api.lambda_handler, built and called in a thread with its own
    event loop: Mangum binds the loop of the thread that constructs it, and importing the module-level handler
    here would bind the main thread's loop before other test modules' asyncio.run() unsets it."""
    from mangum import Mangum

    from emotion.api.app import create_app

    def run() -> dict:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return Mangum(create_app(), lifespan="off")(event, context())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(run).result()


def _png(size: tuple[int, int], mode: str = "L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def _peak_rss(pid: int) -> int:
    return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmHWM")) * 1024


def _env(model_dir: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, EMOTION_STORAGE="local", EMOTION_DATA_DIR=str(tmp_path / "data"),
               EMOTION_MODEL_DIR=str(model_dir), **extra)
    env.pop("EMOTION_API_KEY", None)
    return env


def test_engine_work_is_bounded_and_overflow_gets_429_with_retry_after(model_dir: Path, tmp_path: Path):
    from emotion.api.server import serve_in_subprocess

    bomb = _png((6000, 6600))  # 39.6 MP in ~40 kB: each request decodes ~160 MB and works ~1 s
    env = _env(model_dir, tmp_path, EMOTION_ENGINE_CONCURRENCY="1", EMOTION_ENGINE_QUEUE="1")
    with serve_in_subprocess(env) as (base, proc):
        warm = httpx.post(base + "v1/analyze", content=_png((64, 64)), headers={"content-type": "image/png"})
        assert warm.status_code == 200
        rss_before = _peak_rss(proc.pid)

        def post(_: int) -> httpx.Response:
            return httpx.post(base + "v1/analyze", content=bomb, headers={"content-type": "image/png"}, timeout=120)

        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(post, range(8)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 429}, [r.text for r in responses]
        assert statuses.count(200) >= 2 and statuses.count(429) >= 1, statuses  # 1 running + 1 waiting
        busy = next(r for r in responses if r.status_code == 429)
        assert busy.json()["error"]["code"] == "too_many_requests" and int(busy.headers["retry-after"]) >= 1
        # One analysis at a time: the peak grows by about one request's budget, not eight.
        assert _peak_rss(proc.pid) - rss_before < 700_000_000
        assert httpx.get(base + "healthz").status_code == 200


def test_links_never_come_from_the_host_header(model_dir: Path, tmp_path: Path):
    from emotion.api.server import serve_in_subprocess

    body = {"filename": "a.jpg", "content_type": "image/jpeg", "size": 100}
    with serve_in_subprocess(_env(model_dir, tmp_path)) as (base, _):
        job = httpx.post(base + "v1/jobs", json=body, headers={"host": "evil.example"}).json()
        assert job["upload"]["url"] == base + "v1/uploads"
        assert job["status_url"].startswith(base) and "evil" not in json.dumps(job)
    with serve_in_subprocess(_env(model_dir, tmp_path, EMOTION_PUBLIC_BASE_URL="https://emotion.example.org/")) \
            as (base, _):
        job = httpx.post(base + "v1/jobs", json=body, headers={"host": "evil.example"}).json()
        assert job["upload"]["url"] == "https://emotion.example.org/v1/uploads"


def test_links_behind_api_gateway_use_the_gateway_domain_and_stage(model_dir: Path, monkeypatch, tmp_path: Path):
    from emotion.settings import get_settings
    from emotion.storage import get_storage

    monkeypatch.setenv("EMOTION_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    get_storage.cache_clear()
    try:
        event = load_event("apigw_http_v2_models.json")
        event.update(rawPath="/v1/jobs", body=json.dumps({"filename": "a.jpg", "content_type": "image/jpeg",
                                                          "size": 100}), isBase64Encoded=False)
        event["requestContext"]["http"].update(method="POST", path="/v1/jobs")
        event["headers"].update({"content-type": "application/json", "host": "evil.example"})
        response = _invoke(event)
        assert response["statusCode"] == 201, response["body"]
        domain = event["requestContext"]["domainName"]
        assert json.loads(response["body"])["status_url"].startswith(f"https://{domain}/v1/jobs/")
    finally:
        get_settings.cache_clear()
        get_storage.cache_clear()


def test_empty_api_key_is_an_error_at_start(monkeypatch):
    from emotion.api.app import create_app
    from emotion.settings import get_settings

    monkeypatch.setenv("EMOTION_API_KEY", "")
    get_settings.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="EMOTION_API_KEY is set but empty"):
            create_app()
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()


def test_healthz_is_503_without_models_and_names_no_server_path(tmp_path: Path):
    from emotion.api.server import serve_in_subprocess

    empty = tmp_path / "no-models-here"
    empty.mkdir()
    env = _env(empty, tmp_path)
    with serve_in_subprocess(env) as (base, _):
        health = httpx.get(base + "healthz")
        assert health.status_code == 503 and health.json()["error"]["code"] == "model_unavailable"
        analysed = httpx.post(base + "v1/analyze", content=_png((64, 64)), headers={"content-type": "image/png"})
        assert analysed.status_code == 503
        for text in (health.text, analysed.text):
            assert str(empty) not in text and str(tmp_path) not in text


def test_undecodable_images_name_no_heap_address(model_dir: Path):
    from fastapi.testclient import TestClient

    from emotion.api.app import create_app

    with TestClient(create_app()) as client:
        for data in (b"\x89PNG\r\n\x1a\n" + bytes(64), b"GIF89a" + bytes(30), b"II*\x00" + bytes(30)):
            response = client.post("/v1/analyze", content=data, headers={"content-type": "image/png"})
            assert response.status_code == 400, response.text
            assert " at 0x" not in response.text and "<_io" not in response.text


def test_client_disconnect_mid_body_is_logged_not_a_500(model_dir: Path, caplog):

    from emotion.api.app import create_app

    app = create_app()
    messages = iter([{"type": "http.request", "body": b"\xff\xd8\xff" + bytes(1000), "more_body": True},
                     {"type": "http.disconnect"}])
    sent: list[dict] = []

    async def receive() -> dict:
        return next(messages)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "path": "/v1/analyze", "raw_path": b"/v1/analyze", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"image/jpeg"), (b"content-length", b"100000")],
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "scheme": "http"}
    with caplog.at_level(logging.INFO):
        loop = asyncio.new_event_loop()  # not asyncio.run: it would unset the loop Mangum's tests get later
        try:
            loop.run_until_complete(app(scope, receive, send))
        finally:
            loop.close()
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    assert status == 400
    assert "client disconnected" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_request_bodies_count_base64_overhead_behind_api_gateway(model_dir: Path):

    body = b"\xff\xd8\xff" + bytes(4_750_000)  # fits the 6 MB app limit, but not a 6 MB event as base64
    event = load_event("apigw_rest_v1_annotate_jpeg.json", body)
    response = _invoke(event)
    assert response["statusCode"] == 413
    error = json.loads(response["body"])["error"]
    assert error["code"] == "image_too_large" and "POST /v1/jobs" in error["message"]


def test_responses_over_the_lambda_limit_are_a_typed_413(model_dir: Path):

    noise = np.random.default_rng(0).integers(0, 255, (2000, 3000, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", quality=30)  # ~2 MB in; as PNG ~18 MB out
    event = load_event("apigw_rest_v1_annotate_jpeg.json", buf.getvalue())
    event["queryStringParameters"] = {"format": "png"}
    event["multiValueQueryStringParameters"] = {"format": ["png"]}
    response = _invoke(event)
    assert response["statusCode"] == 413, response["statusCode"]
    assert len(response["body"]) < 10_000
    error = json.loads(response["body"])["error"]
    assert error["code"] == "response_too_large" and "format=jpeg" in error["message"]


def test_half_sent_requests_time_out_and_connections_are_capped(model_dir: Path, tmp_path: Path):
    """Over the cap the oldest half-sent connections are shed, so /healthz is answered while the flood is still
    open; the rest are closed at the header timeout."""
    from emotion.api.server import serve_in_subprocess

    env = _env(model_dir, tmp_path, EMOTION_HTTP_HEADER_TIMEOUT_S="3", EMOTION_HTTP_MAX_CONNECTIONS="50")
    with serve_in_subprocess(env) as (base, _):
        host, port = base.split("//")[1].rstrip("/").split(":")
        sockets = []
        for _ in range(60):  # more half-sent requests than the connection cap
            sock = socket.create_connection((host, int(port)))
            sock.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Le")
            sockets.append(sock)
        assert httpx.get(base + "healthz", timeout=10).status_code == 200  # the flood is open: room was made
        time.sleep(4.0)  # past the header timeout: the server has closed them all
        closed = 0
        for sock in sockets:
            sock.settimeout(2)
            try:
                sock.recv(1024)  # b"" (closed by the server) or its refusal: either way not left hanging
                closed += 1
            except ConnectionResetError:
                closed += 1
            except TimeoutError:
                pass
            sock.close()
        assert closed == 60
        assert httpx.get(base + "healthz", timeout=10).status_code == 200


def test_serve_raises_its_open_file_limit_and_answers_under_an_idle_socket_flood(model_dir: Path, tmp_path: Path):
    """Started with a 256 open-file soft limit (a hard limit above it), the server raises the soft limit to the
    hard one, so 1,100 idle half-sent connections fit under its cap and /healthz is answered while they are
    open. (Before: accept() failed with EMFILE and /healthz got no answer until they closed.)"""
    import resource

    from emotion.api.server import serve_in_subprocess

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2600:
        pytest.skip(f"the hard open-file limit ({hard}) leaves no room above the 1,100 test connections")
    env = _env(model_dir, tmp_path, EMOTION_HTTP_HEADER_TIMEOUT_S="60")
    sockets: list[socket.socket] = []
    with serve_in_subprocess(env, open_files=(256, hard)) as (base, proc):
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        line = next(row for row in limits.splitlines() if row.startswith("Max open files")).split()
        assert line[3] == line[4], line  # soft == hard
        host, port = base.split("//")[1].rstrip("/").split(":")
        for _ in range(1100):
            sock = socket.create_connection((host, int(port)))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            sockets.append(sock)
        for _ in range(5):
            assert httpx.get(base + "healthz", timeout=10).status_code == 200
        open_fds = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
        assert open_fds > 1100  # the idle connections are all still held (none shed: they fit)
        for sock in sockets:
            sock.close()


def test_a_stalled_body_is_closed_and_a_slow_steady_one_is_answered(model_dir: Path, tmp_path: Path,
                                                                   scenes: Path):
    """Headers in, then the body stops: the connection is closed once no byte came for the body timeout. A body
    that arrives slowly but keeps coming (each gap shorter than the timeout, the whole longer) is answered."""
    from emotion.api.server import serve_in_subprocess

    jpeg = (scenes / "fr_two_people.jpg").read_bytes()
    head = (b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            b"Content-Length: %d\r\n\r\n" % len(jpeg))
    env = _env(model_dir, tmp_path, EMOTION_HTTP_BODY_TIMEOUT_S="1")
    with serve_in_subprocess(env) as (base, _):
        host, port = base.split("//")[1].rstrip("/").split(":")
        stalled = socket.create_connection((host, int(port)))
        stalled.sendall(head + jpeg[:1000])
        steady = socket.create_connection((host, int(port)))
        steady.sendall(head)
        chunks = np.array_split(np.frombuffer(jpeg, np.uint8), 8)
        for chunk in chunks:  # 8 gaps of 0.4 s: 3.2 s in all, three times the timeout
            time.sleep(0.4)
            steady.sendall(chunk.tobytes())
        steady.settimeout(30)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += steady.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        steady.close()

        stalled.settimeout(5)  # by now 3 s without a body byte: the server has closed it
        with contextlib.suppress(ConnectionResetError):  # closed: b"", or a reset
            assert stalled.recv(1024) == b""
        stalled.close()
        assert httpx.get(base + "healthz", timeout=10).status_code == 200
