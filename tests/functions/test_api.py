"""The FastAPI app through Starlette's TestClient: inputs, limits, errors, auth, annotate, models, OpenAPI."""

from __future__ import annotations

import asyncio
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from emotion.api import auth as auth_module
from emotion.api import routes as routes_module
from emotion.api.app import create_app
from emotion.settings import get_settings


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:  # runs the lifespan: the engine is warm before the first test
        yield c


@pytest.fixture(scope="module")
def two_people(scenes: Path) -> bytes:
    return (scenes / "fr_two_people.jpg").read_bytes()


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Change EMOTION_* env for one test; settings are rebuilt before and after."""
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def error_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]


def png_header(width: int, height: int) -> bytes:
    """A PNG signature + IHDR (valid CRC) declaring absurd dimensions, + one empty IDAT + IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------- input
def test_analyze_multipart_finds_two_faces(client: TestClient, two_people: bytes) -> None:
    r = client.post("/v1/analyze", files={"image": ("two.jpg", two_people, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["faces"]) == 2
    height, width = cv2.imdecode(np.frombuffer(two_people, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    assert body["image"] == {"width": width, "height": height}
    for face in body["faces"]:
        assert abs(sum(face["emotions"].values()) - 1.0) < 1e-3
        assert face["dominant_emotion"] == max(face["emotions"], key=face["emotions"].get)
        box = face["box"]
        assert 0 <= box["x"] < width and 0 <= box["y"] < height and box["width"] > 10
        assert set(face["pose"]) == {"yaw", "pitch", "roll"} and all(abs(v) < 90 for v in face["pose"].values())
        assert face["quality"]["reliable"] is True and face["quality"]["size"] == min(box["width"], box["height"])
    assert set(body["timings_ms"]) >= {"decode", "detect", "classify", "total"}
    assert body["models"]["detector"] and body["models"]["classifier"]
    assert r.headers["x-request-id"]


def test_analyze_raw_body(client: TestClient, two_people: bytes) -> None:
    r = client.post("/v1/analyze", content=two_people, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    assert len(r.json()["faces"]) == 2
    r = client.post("/v1/analyze", content=two_people, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200 and len(r.json()["faces"]) == 2


def test_png_sent_as_jpeg_works(client: TestClient, two_people: bytes) -> None:
    bgr = cv2.imdecode(np.frombuffer(two_people, np.uint8), cv2.IMREAD_COLOR)
    png = cv2.imencode(".png", bgr)[1].tobytes()
    r = client.post("/v1/analyze", content=png, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    assert len(r.json()["faces"]) == 2
    r = client.post("/v1/analyze", files={"image": ("photo.jpg", png, "image/jpeg")})
    assert r.status_code == 200 and len(r.json()["faces"]) == 2


def test_pdf_sent_as_jpeg_is_415(client: TestClient) -> None:
    pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    r = client.post("/v1/analyze", content=pdf, headers={"content-type": "image/jpeg"})
    assert r.status_code == 415
    assert error_of(r)["code"] == "unsupported_media_type"
    r = client.post("/v1/analyze", files={"image": ("scan.jpg", pdf, "image/jpeg")})
    assert r.status_code == 415


def test_non_image_content_type_is_415(client: TestClient, two_people: bytes) -> None:
    r = client.post("/v1/analyze", content=b'{"url": "http://169.254.169.254/"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 415
    assert error_of(r)["code"] == "unsupported_media_type"


@pytest.mark.parametrize("how", ["raw", "multipart", "no-content-type"])
def test_empty_body_is_400(client: TestClient, how: str) -> None:
    if how == "raw":
        r = client.post("/v1/analyze", content=b"", headers={"content-type": "image/jpeg"})
    elif how == "multipart":
        r = client.post("/v1/analyze", files={"image": ("empty.jpg", b"", "image/jpeg")})
    else:
        r = client.post("/v1/analyze")
    assert r.status_code == 400, r.text
    assert error_of(r)["code"] == "empty_input"


def test_multipart_without_image_field_is_422(client: TestClient, two_people: bytes) -> None:
    r = client.post("/v1/analyze", files={"photo": ("two.jpg", two_people, "image/jpeg")})
    assert r.status_code == 422
    assert error_of(r)["code"] == "bad_parameter"
    assert "image" in error_of(r)["message"]


def test_malformed_multipart_is_400(client: TestClient) -> None:
    r = client.post("/v1/analyze", content=b"--x\r\nnonsense", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400
    assert error_of(r)["code"] == "bad_request"


def test_oversized_body_is_413_from_the_header(client: TestClient) -> None:
    limit = get_settings().max_body_bytes
    r = client.post("/v1/analyze", content=b"\xff\xd8\xff" + b"\0" * limit, headers={"content-type": "image/jpeg"})
    assert r.status_code == 413
    assert error_of(r)["code"] == "image_too_large"


def test_oversized_streamed_body_is_413(settings_env: pytest.MonkeyPatch, client: TestClient) -> None:
    settings_env.setenv("EMOTION_MAX_BODY_BYTES", "100000")
    chunks_sent = 0

    def body() -> Iterator[bytes]:  # no content-length: chunked transfer
        nonlocal chunks_sent
        for _ in range(50):
            chunks_sent += 1
            yield b"\xff" * 10_000

    r = client.post("/v1/analyze", content=body(), headers={"content-type": "image/jpeg"})
    assert r.status_code == 413
    assert error_of(r)["code"] == "image_too_large"


def test_default_body_limit_fits_lambda() -> None:
    assert get_settings().max_body_bytes <= 6_000_000


def test_huge_declared_dimensions_are_413(client: TestClient) -> None:
    r = client.post("/v1/analyze", content=png_header(100_000, 100_000), headers={"content-type": "image/png"})
    assert r.status_code == 413
    assert error_of(r)["code"] == "image_too_large"


def test_large_multipart_upload_stays_in_memory(
    client: TestClient, two_people: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multipart image over Starlette's 1 MB spool threshold is never rolled over to a temporary file."""
    bgr = cv2.imdecode(np.frombuffer(two_people, np.uint8), cv2.IMREAD_COLOR)
    big = cv2.imencode(".png", cv2.resize(bgr, None, fx=1.6, fy=1.6))[1].tobytes()
    assert 1_100_000 < len(big) < get_settings().max_body_bytes - 10_000

    def no_disk(self) -> None:  # pragma: no cover - fails the test when reached
        raise AssertionError("upload spooled to disk")

    monkeypatch.setattr(tempfile.SpooledTemporaryFile, "rollover", no_disk)
    r = client.post("/v1/analyze", files={"image": ("big.png", big, "image/png")})
    assert r.status_code == 200, r.text
    assert len(r.json()["faces"]) == 2


@pytest.mark.parametrize(
    "query",
    ["min_face=-1", "min_face=abc", "max_faces=0", "max_faces=100000", "classifier=nope", "min_face=1.5"],
)
def test_bad_parameters_are_422(client: TestClient, two_people: bytes, query: str) -> None:
    r = client.post(f"/v1/analyze?{query}", content=two_people, headers={"content-type": "image/jpeg"})
    assert r.status_code == 422, r.text
    assert error_of(r)["code"] == "bad_parameter"
    assert query.split("=")[0] in error_of(r)["message"]


def test_parameters_apply(client: TestClient, two_people: bytes) -> None:
    r = client.post("/v1/analyze?max_faces=1", content=two_people, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and len(r.json()["faces"]) == 1
    r = client.post("/v1/analyze?min_face=5000", content=two_people, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["faces"] == []
    r = client.post("/v1/analyze?classifier=mini_xception", content=two_people, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["faces"]) == 2
    assert "xception" in body["models"]["classifier"]


# ------------------------------------------------------------------------------------------- annotate
def test_annotate_jpeg_and_png(client: TestClient, two_people: bytes) -> None:
    src = cv2.imdecode(np.frombuffer(two_people, np.uint8), cv2.IMREAD_COLOR)
    r = client.post("/v1/annotate", files={"image": ("two.jpg", two_people, "image/jpeg")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"
    assert r.headers["x-faces"] == "2"
    out = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == src.shape
    assert np.abs(out.astype(int) - src.astype(int)).mean() > 0.5  # boxes were drawn

    for query, accept in (("?format=png", "*/*"), ("", "image/png"), ("", "image/png, image/jpeg;q=0.5")):
        r = client.post(f"/v1/annotate{query}", content=two_people, headers={"accept": accept})
        assert r.status_code == 200
        assert r.headers["content-type"] == "image/png"
        assert r.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == src.shape


def test_annotate_errors_are_json(client: TestClient) -> None:
    r = client.post("/v1/annotate", content=b"hello, world", headers={"content-type": "image/jpeg"})
    assert r.status_code == 415
    assert r.headers["content-type"] == "application/json"
    assert error_of(r)["code"] == "unsupported_media_type"
    r = client.post("/v1/annotate?format=gif", content=b"\xff\xd8\xff")
    assert r.status_code == 422


def test_annotate_decodes_once(client: TestClient, two_people: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = routes_module.decode_image

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(routes_module, "decode_image", counting)
    import emotion.core.engine as engine_module

    monkeypatch.setattr(engine_module, "decode_image", counting)
    assert client.post("/v1/annotate", content=two_people).status_code == 200
    assert len(calls) == 1


# ------------------------------------------------------------------------------- models, health, misc
def test_models(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    names = {m["name"]: m for m in body["models"]}
    assert body["classifier"] in names and body["detector"] in names
    default = names[body["classifier"]]
    assert default["default"] and default["available"] and default["role"] == "classifier"
    assert default["labels"] and default["licence"] and default["version"]
    assert names[body["detector"]]["role"] == "detector"
    # the form that runs on this CPU, and the CPU itself (int8 speed depends on its instruction sets)
    assert body["classifier_precision"] == default["precision"] == "int8"  # auto: every CPU that runs CI has AVX2
    assert body["cpu"]["cores"] >= 1 and "avx2" in body["cpu"]["instruction_sets"]
    assert names["mobilefacenet8_fp32"]["form_of"] == "mobilefacenet8"
    assert names["mobilefacenet8_fp32"]["precision"] == "fp32"


def test_healthz(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["engine_loaded"] is True  # the lifespan warmed the engine
    assert r.json()["classifier_precision"] == "int8" and r.json()["classifier"].endswith("-int8")
    assert r.json()["cpu"]["model"]


def test_precision_setting_runs_the_fp32_form_and_every_result_says_so(
        client: TestClient, two_people: bytes, settings_env: pytest.MonkeyPatch) -> None:
    from emotion.core.engine import clear_engines

    settings_env.setenv("EMOTION_CLASSIFIER_PRECISION", "fp32")
    clear_engines()
    try:
        body = client.post("/v1/analyze", content=two_people).json()
        assert body["models"]["classifier_precision"] == "fp32"
        assert body["models"]["classifier"] == "mobilefacenet8-ferplus-sfew-v4.2-fp32" and len(body["faces"]) == 2
        assert client.get("/healthz").json()["classifier_precision"] == "fp32"
        assert client.get("/v1/models").json()["classifier_precision"] == "fp32"
        # a classifier with one form runs that form whatever is asked
        settings_env.setenv("EMOTION_CLASSIFIER_PRECISION", "int8")
        from emotion.settings import get_settings
        get_settings.cache_clear()
        clear_engines()
        body = client.post("/v1/analyze?classifier=ferplus", content=two_people).json()
        assert body["models"]["classifier_precision"] == "fp32"
        settings_env.setenv("EMOTION_CLASSIFIER_PRECISION", "fastest")
        get_settings.cache_clear()
        with pytest.raises(ValueError, match="classifier_precision"):
            get_settings()
    finally:
        settings_env.undo()
        from emotion.settings import get_settings
        get_settings.cache_clear()
        clear_engines()


def test_404_405_are_error_json(client: TestClient) -> None:
    r = client.get("/v2/nothing")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = client.get("/v1/analyze")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]
    r = client.get("/static/missing.js")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


def test_request_id_is_echoed_when_sane(client: TestClient) -> None:
    assert client.get("/healthz", headers={"x-request-id": "abc-123"}).headers["x-request-id"] == "abc-123"
    assert client.get("/healthz", headers={"x-request-id": "bad id\x7f"}).headers["x-request-id"] != "bad id\x7f"


def test_page_and_static_are_served(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert '<section id="video-jobs"></section>' in html
    assert '<script src="static/jobs.js" defer></script>' in html
    assert "http://" not in html and "https://" not in html  # nothing external loads
    assert "default-src 'self'" in r.headers["content-security-policy"]
    for asset in ("static/app.js", "static/style.css"):
        r = client.get(f"/{asset}")
        assert r.status_code == 200, asset
        assert "http://" not in r.text and "https://" not in r.text and "@import" not in r.text


# ---------------------------------------------------------------------------------------------- auth
def test_api_key_required_when_configured(
    settings_env: pytest.MonkeyPatch, client: TestClient, two_people: bytes
) -> None:
    settings_env.setenv("EMOTION_API_KEY", "s3cret-key")
    assert client.get("/healthz").status_code == 200  # stays open
    assert client.get("/").status_code == 200
    for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": ""}, {"x-api-key": "s3cret-key "}):
        r = client.get("/v1/models", headers=headers)
        assert r.status_code == 401, headers
        assert error_of(r)["code"] == "unauthorized"
        r = client.post("/v1/analyze", content=two_people, headers=headers)
        assert r.status_code == 401
    assert client.get("/v1/models", headers={"x-api-key": "s3cret-key"}).status_code == 200
    r = client.post("/v1/analyze", content=two_people, headers={"x-api-key": "s3cret-key"})
    assert r.status_code == 200 and len(r.json()["faces"]) == 2


PAGE_PATHS = ("/", "/static/app.js", "/static/jobs.js", "/docs", "/docs/swagger-ui.css", "/openapi.json")


def test_page_and_docs_public_with_a_key_unless_switched_off(settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("EMOTION_API_KEY", "s3cret-key")
    get_settings.cache_clear()
    with TestClient(create_app()) as c:  # public page (the default): no key needed for the page or the docs
        for path in PAGE_PATHS:
            assert c.get(path).status_code == 200, path
        assert c.get("/v1/models").status_code == 401
    settings_env.setenv("EMOTION_PUBLIC_PAGE", "false")
    get_settings.cache_clear()
    with TestClient(create_app()) as c:  # switched off: they need the key like the API
        for path in PAGE_PATHS:
            r = c.get(path)
            assert r.status_code == 401 and error_of(r)["code"] == "unauthorized", path
            assert c.get(path, headers={"x-api-key": "s3cret-key"}).status_code == 200, path
        assert c.get("/healthz").status_code == 200
        assert c.get("/static/missing.js", headers={"x-api-key": "s3cret-key"}).status_code == 404


def test_api_key_compare_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real = auth_module.hmac.compare_digest

    def spy(a, b):
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_module.hmac, "compare_digest", spy)
    monkeypatch.setenv("EMOTION_API_KEY", "k")
    get_settings.cache_clear()
    try:
        with pytest.raises(auth_module.Unauthorized):
            asyncio.run(auth_module.require_api_key("x"))
        asyncio.run(auth_module.require_api_key("k"))
    finally:
        monkeypatch.delenv("EMOTION_API_KEY")
        get_settings.cache_clear()
    assert len(seen) == 2


# --------------------------------------------------------------------------------------------- openapi
def test_openapi_documents_results_and_errors(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    assert {"AnalysisResult", "ErrorResponse", "ModelsResponse", "Health"} <= set(schemas)
    assert "HTTPValidationError" not in schemas  # 422 uses the service's own error model
    analyze = spec["paths"]["/v1/analyze"]["post"]
    assert analyze["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/AnalysisResult")
    for status in ("400", "401", "413", "415", "422", "503"):
        ref = analyze["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorResponse"), status
    assert {"multipart/form-data", "image/jpeg", "image/png"} <= set(analyze["requestBody"]["content"])
    annotate = spec["paths"]["/v1/annotate"]["post"]
    assert {"image/jpeg", "image/png"} <= set(annotate["responses"]["200"]["content"])
    assert spec["paths"]["/v1/models"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("/ModelsResponse")
    assert "/healthz" in spec["paths"]
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------------------------- jobs routes
def test_jobs_routes_are_behind_the_key_and_uploads_have_their_own_limit(
    monkeypatch: pytest.MonkeyPatch, model_dir: Path
) -> None:
    monkeypatch.setenv("EMOTION_API_KEY", "k")
    get_settings.cache_clear()
    try:
        with TestClient(create_app()) as c:
            missing = "0" * 32
            assert c.get(f"/v1/jobs/{missing}").status_code == 401  # behind the API key
            assert c.get(f"/v1/jobs/{missing}", headers={"x-api-key": "k"}).status_code == 404
            big = b"\0" * 7_000_000
            # The upload stand-in is public (its policy is signed) and allowed past the 6 MB default.
            r = c.post("/v1/uploads", content=big, headers={"content-type": "application/octet-stream"})
            assert r.status_code != 413 and r.status_code < 500, r.text
            assert c.post("/v1/analyze", content=big, headers={"x-api-key": "k"}).status_code == 413
    finally:
        monkeypatch.delenv("EMOTION_API_KEY")
        get_settings.cache_clear()
