"""Pure ASGI middleware: request-body limit (before the body is read in full), request id, access log."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from emotion.api.errors import BodyTooLarge, ResponseTooLarge, error_response
from emotion.settings import get_settings

log = logging.getLogger("emotion.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestGuard:
    """Pure ASGI middleware: body-size limit, request id, one access-log line per request (no bodies)."""

    def __init__(self, app: ASGIApp, limits: Callable[[str], int]):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False

        behind_gateway = scope.get("aws.event") is not None
        replaced = False  # a response too large for Lambda was swapped for a 413; drop its body

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start":
                started = True
                if behind_gateway and (too_large := _lambda_response_error(message)) is not None:
                    replaced = True
                    response = error_response(too_large.status, too_large.code, too_large.message)
                    await response(scope, receive, send_wrapper_unguarded)
                    return
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        async def send_wrapper_unguarded(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        limit = self.limits(scope.get("path", ""))
        if behind_gateway:
            limit = min(limit, lambda_body_limit())
        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise BodyTooLarge(f"request body is {declared:,} bytes; the limit is {limit:,} bytes"
                                   + (_GATEWAY_HINT if behind_gateway else ""))
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(f"request body exceeds the limit of {limit:,} bytes"
                                           + (_GATEWAY_HINT if behind_gateway else ""))
                return message

            await self.app(scope, receive_limited, send_wrapper)
        except BodyTooLarge as exc:
            if started:
                raise
            response = error_response(exc.status, exc.code, exc.message, headers={"connection": "close"})
            await response(scope, receive, send_wrapper)
        finally:
            log.info(
                "%s %s %s %.1fms",
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - start) * 1000,
                extra={"request_id": request_id, "status": status},
            )


_GATEWAY_HINT = (" (behind API Gateway the body travels base64-encoded in a 6 MB Lambda event): send a JPEG, "
                 "or create a job (POST /v1/jobs) for larger files")
_EVENT_OVERHEAD = 64_000  # headers, query and the event's own JSON around the body


def lambda_body_limit() -> int:
    """The largest body (decoded bytes) that fits a Lambda event once base64-encoded: 3/4 of the payload."""
    return (get_settings().lambda_payload_bytes - _EVENT_OVERHEAD) * 3 // 4


def _lambda_response_error(start: Message) -> BodyTooLarge | None:
    """A 413 for a response Mangum could not return within Lambda's payload limit (binary bodies are base64)."""
    headers = {k.lower(): v for k, v in start.get("headers", [])}
    try:
        length = int(headers.get(b"content-length", b"0"))
    except ValueError:
        return None
    media = headers.get(b"content-type", b"").decode("latin-1").lower()
    text = media.startswith(("text/", "application/json")) or media.endswith(("+json", "xml"))
    limit = get_settings().lambda_payload_bytes - _EVENT_OVERHEAD
    limit = limit if text else limit * 3 // 4
    if length <= limit:
        return None
    return ResponseTooLarge(
        f"the response would be {length:,} bytes; behind API Gateway responses are limited to {limit:,} bytes "
        "(Lambda's 6 MB payload, base64 for images): ask for JPEG (format=jpeg) or send a smaller image, or "
        "create a job (POST /v1/jobs), whose annotated output is a download link"
    )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _request_id(scope: Scope) -> str:
    context = scope.get("aws.context")
    aws_id = getattr(context, "aws_request_id", None)
    if isinstance(aws_id, str) and aws_id:
        return aws_id
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return uuid.uuid4().hex


def body_limit_for(prefixes: Iterable[tuple[str, int]]) -> Callable[[str], int]:
    """The body limit of a path: the longest matching prefix override, else ``max_body_bytes``."""
    overrides = sorted(prefixes, key=lambda kv: -len(kv[0]))

    def limit(path: str) -> int:
        for prefix, max_bytes in overrides:
            if path.startswith(prefix):
                return max_bytes
        return get_settings().max_body_bytes

    return limit
