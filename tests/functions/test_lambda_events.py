"""The Lambda handler (Mangum) fed canonical API Gateway REST v1 and HTTP API v2 events (tests/events/)."""

from __future__ import annotations

import base64
import io
import json
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

EVENTS = Path(__file__).resolve().parents[1] / "events"
BOUNDARY = "----emotionTestBoundary7MA4YWxkTrZu0gW"


@pytest.fixture(scope="module")
def handler(model_dir: Path):
    from emotion.api.lambda_handler import handler

    return handler


@pytest.fixture(scope="module")
def photo(scenes: Path) -> bytes:
    return (scenes / "fr_two_people.jpg").read_bytes()


def context(request_id: str = "5f1e0c2a-9d43-4a57-8a0e-6f3b3c2d1e00") -> types.SimpleNamespace:
    return types.SimpleNamespace(
        function_name="emotion-api",
        function_version="$LATEST",
        memory_limit_in_mb=2048,
        invoked_function_arn="arn:aws:lambda:eu-west-1:123456789012:function:emotion-api",
        aws_request_id=request_id,
        log_group_name="/aws/lambda/emotion-api",
        log_stream_name="2025/11/21/[$LATEST]0123456789abcdef",
        get_remaining_time_in_millis=lambda: 29_000,
    )


def multipart(image: bytes, filename: str = "two people.jpg") -> bytes:
    return (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()


def load_event(name: str, image: bytes | None = None) -> dict:
    event = json.loads((EVENTS / name).read_text())
    if event.get("body") == "__BASE64_MULTIPART_BODY__":
        assert image is not None
        body = multipart(image)
        event["body"] = base64.b64encode(body).decode()
        for headers in (event["headers"], *event.get("multiValueHeaders", {}).values()):
            if isinstance(headers, dict) and headers.get("content-length") == "__CONTENT_LENGTH__":
                headers["content-length"] = str(len(body))
    elif event.get("body") == "__BASE64_IMAGE_BODY__":
        assert image is not None
        event["body"] = base64.b64encode(image).decode()
    return event


def json_body(response: dict) -> dict:
    assert response["isBase64Encoded"] is False
    return json.loads(response["body"])


def header(response: dict, name: str) -> str:
    headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
    for key, values in response.get("multiValueHeaders", {}).items():
        headers.setdefault(key.lower(), values[0])
    return headers[name]


@pytest.fixture
def logs(handler):
    """What the Powertools handler (shared with the emotion.* loggers) writes, as text."""
    from emotion.api.lambda_handler import logger

    stream = io.StringIO()
    log_handler = logger.registered_handler
    previous = log_handler.setStream(stream)
    yield stream
    log_handler.setStream(previous)


def log_records(captured: str) -> list[dict]:
    return [json.loads(line) for line in captured.splitlines() if line.startswith("{")]


def test_event_files_are_canonical_shapes() -> None:
    for path in sorted(EVENTS.glob("apigw_*.json")):
        event = json.loads(path.read_text())
        if path.name.startswith("apigw_rest_v1"):
            assert {"resource", "path", "httpMethod", "headers", "multiValueHeaders", "requestContext",
                    "isBase64Encoded"} <= set(event), path.name
            assert event["requestContext"]["stage"] == "prod"
        else:
            assert event["version"] == "2.0" and event["routeKey"] == "$default", path.name
            assert {"rawPath", "rawQueryString", "headers", "requestContext", "isBase64Encoded"} <= set(event)
            assert event["requestContext"]["http"]["method"] in ("GET", "POST")


@pytest.mark.parametrize("name", ["apigw_rest_v1_analyze_multipart.json", "apigw_http_v2_analyze_multipart.json"])
def test_binary_multipart_upload_returns_json(handler, photo: bytes, name: str, logs) -> None:
    event = load_event(name, photo)
    ctx = context()
    response = handler(event, ctx)
    assert response["statusCode"] == 200, response["body"][:500]
    assert header(response, "content-type") == "application/json"
    body = json_body(response)
    assert len(body["faces"]) == 2
    assert {f["dominant_emotion"] for f in body["faces"]} <= set(body["faces"][0]["emotions"])
    assert header(response, "x-request-id") == ctx.aws_request_id

    out = logs.getvalue()
    records = log_records(out)
    summary = [r for r in records if r.get("message") == "request handled"]
    assert summary, out[-2000:]
    record = summary[-1]
    assert record["correlation_id"] == event["requestContext"]["requestId"]
    assert record["function_request_id"] == ctx.aws_request_id
    assert record["status"] == 200 and record["path"] == "/v1/analyze" and record["method"] == "POST"
    app_lines = [r for r in records if str(r.get("message", "")).startswith("POST /v1/analyze 200")]
    assert app_lines and app_lines[-1]["correlation_id"] == record["correlation_id"]
    assert "engine ready" not in out  # built once, in the init phase, not per request
    # Never the event, the body or the API key in the logs.
    assert event["body"][:200] not in out
    assert "PLACEHOLDER-NOT-A-KEY" not in out
    assert "multipart" not in out


@pytest.mark.parametrize("name", ["apigw_rest_v1_annotate_jpeg.json", "apigw_http_v2_annotate_multipart.json"])
def test_annotate_returns_base64_jpeg(handler, photo: bytes, name: str) -> None:
    response = handler(load_event(name, photo), context())
    assert response["statusCode"] == 200, response["body"][:500]
    assert header(response, "content-type") == "image/jpeg"
    assert response["isBase64Encoded"] is True
    jpeg = base64.b64decode(response["body"])
    assert jpeg[:3] == b"\xff\xd8\xff"
    out = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    src = cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR)
    assert out.shape == src.shape
    assert header(response, "x-faces") == "2"


def test_pdf_is_415_error_json(handler) -> None:
    response = handler(load_event("apigw_rest_v1_analyze_pdf.json"), context())
    assert response["statusCode"] == 415
    assert json_body(response)["error"]["code"] == "unsupported_media_type"


def test_bad_parameter_is_422_error_json(handler, photo: bytes) -> None:
    response = handler(load_event("apigw_rest_v1_analyze_bad_param.json", photo), context())
    assert response["statusCode"] == 422
    error = json_body(response)["error"]
    assert error["code"] == "bad_parameter" and "max_faces" in error["message"]


def test_get_routes(handler) -> None:
    response = handler(load_event("apigw_http_v2_healthz.json"), context())
    assert response["statusCode"] == 200 and json_body(response)["status"] == "ok"
    response = handler(load_event("apigw_http_v2_models.json"), context())
    assert response["statusCode"] == 200 and json_body(response)["models"]


def test_unknown_path_is_404_error_json(handler) -> None:
    event = load_event("apigw_http_v2_healthz.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/v1/nothing"
    response = handler(event, context())
    assert response["statusCode"] == 404
    assert json_body(response)["error"]["code"] == "not_found"


def test_oversized_body_is_413(handler) -> None:
    from emotion.settings import get_settings

    event = load_event("apigw_rest_v1_annotate_jpeg.json", b"\xff\xd8\xff" + b"\0" * get_settings().max_body_bytes)
    response = handler(event, context())
    assert response["statusCode"] == 413
    assert json_body(response)["error"]["code"] == "image_too_large"


def test_handler_is_a_module_level_mangum() -> None:
    from mangum import Mangum

    from emotion.api import lambda_handler

    assert isinstance(lambda_handler.handler, Mangum)
    assert lambda_handler.handler.lifespan == "off"
