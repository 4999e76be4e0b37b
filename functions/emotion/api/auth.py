"""The optional API key of a self-hosted server (behind API Gateway, the gateway checks keys)."""

from __future__ import annotations

import hmac

from fastapi import Security
from fastapi.security import APIKeyHeader

from emotion.api.errors import Unauthorized
from emotion.settings import get_settings

api_key_header = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="Required only when the server sets EMOTION_API_KEY (behind API Gateway, the gateway checks it).",
)


async def require_api_key(key: str | None = Security(api_key_header)) -> None:
    """When ``settings.api_key`` is set, the request must carry it in ``x-api-key`` (constant-time compare).

    ``async`` so FastAPI runs it inline rather than in a worker thread (it only compares two strings)."""
    expected = get_settings().api_key
    if not expected:
        return
    if key is None or not hmac.compare_digest(key.encode("utf-8"), expected.encode("utf-8")):
        raise Unauthorized("missing or wrong x-api-key header")
