"""Pure ASGI middleware: request-body limit (before the body is read in full), request id, access log."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from emotion.api.errors import BodyTooLarge, error_response
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

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        limit = self.limits(scope.get("path", ""))
        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise BodyTooLarge(f"request body is {declared:,} bytes; the limit is {limit:,} bytes")
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(f"request body exceeds the limit of {limit:,} bytes")
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
