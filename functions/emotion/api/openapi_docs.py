"""OpenAPI fragments shared by the routes: documented error responses and the image request body."""

from __future__ import annotations

from typing import Any

from emotion.core.results import ErrorResponse


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error_doc("Missing or wrong `x-api-key` (only when the server sets EMOTION_API_KEY)"),
    422: _error_doc("A query parameter or form field is invalid"),
}
IMAGE_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error_doc("Empty body, malformed multipart, corrupt/truncated image, or image too small"),
    **ERROR_RESPONSES,
    413: _error_doc("Body over the size limit, or declared image dimensions over the pixel limit"),
    415: _error_doc("Not an image format the service reads (checked by content, not by name)"),
    503: _error_doc("Models are missing or fail verification on the server"),
}

_BINARY = {"type": "string", "format": "binary"}
IMAGE_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The image: multipart field `image`, or the raw bytes with an `image/*` (or "
            "`application/octet-stream`) content type. The format is sniffed from the bytes: JPEG, PNG, "
            "WebP, GIF, BMP or TIFF."
        ),
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {**_BINARY, "description": "the image file"}},
                }
            },
            "image/jpeg": {"schema": _BINARY},
            "image/png": {"schema": _BINARY},
            "image/webp": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}
