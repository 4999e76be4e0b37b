"""HTTP-level errors and the handlers that turn every exception into the service's error JSON."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from emotion.core.errors import EmotionError, ImageTooLarge
from emotion.core.results import ErrorResponse

log = logging.getLogger("emotion.api")


class Unauthorized(EmotionError):
    code = "unauthorized"
    status = 401


class BadRequest(EmotionError):
    code = "bad_request"
    status = 400


class BodyTooLarge(ImageTooLarge):
    """The request body exceeds ``max_body_bytes`` (checked before the body is read in full)."""


class ResponseTooLarge(BodyTooLarge):
    """Behind API Gateway: the response would not fit Lambda's payload limit."""

    code = "response_too_large"


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "image_too_large",
    415: "unsupported_media_type",
    422: "bad_parameter",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse.model_validate({"error": {"code": code, "message": message}})
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmotionError)
    async def emotion_error(request: Request, exc: EmotionError) -> JSONResponse:
        message = public_message(exc.message)
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)  # the full text stays in the server's log
            message = _SERVER_MESSAGES.get(exc.code, message)
        return error_response(exc.status, exc.code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def client_disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
        # The client hung up mid-body: nobody reads this answer; a log line, not a 500 and a traceback.
        log.info("client disconnected during %s %s", request.method, request.url.path)
        return error_response(400, "client_disconnected", "the client closed the connection before the body ended")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "bad_parameter", _validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404:
            message = f"no such path: {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")


# Messages of server-side problems the client is shown instead of the logged details.
_SERVER_MESSAGES = {
    "model_unavailable": "the server's models are not installed or fail their checks; the operator must run "
                         "`emotion models fetch` (see the server log)",
}
_OBJECT_REPR = re.compile(r"<[^<>]*\bat 0x[0-9a-fA-F]+>")
_SERVER_PATH = re.compile(r"(?<![\w.:/])(?!/v1/)(?:/[\w.@+-]+){2,}/?")  # not the API's own /v1/... paths


def public_message(message: str) -> str:
    """A message with object reprs (heap addresses) and server file paths taken out."""
    return _SERVER_PATH.sub("<path>", _OBJECT_REPR.sub("<object>", message))


def _validation_message(errors: Iterable[Any]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)[:1000] or "invalid request"
