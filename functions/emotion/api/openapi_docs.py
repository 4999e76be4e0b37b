"""OpenAPI fragments shared by the routes: documented error responses and the image request body."""

from __future__ import annotations

from typing import Any

from emotion.core.results import ErrorResponse


def _error_doc(description: str, code: str, message: str) -> dict[str, Any]:
    """A documented error status: the error schema and an example body the service really sends."""
    example = {"error": {"code": code, "message": message}}
    return {"model": ErrorResponse, "description": description, "content": {"application/json": {"example": example}}}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error_doc("Missing or wrong `x-api-key` (only when the server sets EMOTION_API_KEY)",
                    "unauthorized", "missing or wrong x-api-key header"),
    422: _error_doc("A query parameter or form field is invalid", "bad_parameter",
                    "query.max_faces: Input should be greater than or equal to 1"),
    429: _error_doc("Too many requests at once: the gateway's throttling or the server's concurrency limit; "
                    "retry after a moment", "too_many_requests", "the server is busy; retry in a moment"),
}
NOT_FOUND_RESPONSE: dict[int | str, dict[str, Any]] = {
    404: _error_doc("No job with this id (or it has expired)", "job_not_found",
                    "no job 0123456789abcdef0123456789abcdef"),
}
IMAGE_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error_doc("Empty body, malformed multipart, corrupt/truncated image, or image too small",
                    "undecodable_image", "JPEG data could not be decoded; the file is corrupt or truncated"),
    **ERROR_RESPONSES,
    413: _error_doc("Body over the size limit, or declared image dimensions over the pixel limit",
                    "image_too_large", "request body is 27,262,976 bytes; the limit is 6,291,456 bytes"),
    415: _error_doc("Not an image format the service reads (checked by content, not by name)",
                    "unsupported_media_type", "not a supported image: expected JPEG, PNG, WebP, GIF, BMP, TIFF "
                    "or HEIC (checked by content, not by name)"),
    503: _error_doc("Models are missing or fail verification on the server", "model_unavailable",
                    "model mobilefacenet fails its sha256 check; run `emotion models fetch` again"),
}

# A real answer of /v1/analyze (fr_two_people.jpg, default classifier).
ANALYSIS_EXAMPLE: dict[str, Any] = {
    "image": {"width": 1126, "height": 661},
    "faces": [
        {"box": {"x": 233, "y": 17, "width": 152, "height": 206}, "confidence": 0.9426,
         "landmarks": {"right_eye": [287.5, 97.1], "left_eye": [358.7, 96.6], "nose": [330.4, 138.9],
                       "mouth_right": [289.5, 166.2], "mouth_left": [352.4, 166.6]},
         "pose": {"yaw": 16.7, "pitch": -5.8, "roll": 0.4},
         "quality": {"brightness": 110.4, "sharpness": 594.4, "size": 152, "reliable": True},
         "emotions": {"happiness": 0.9879, "neutral": 0.0112, "disgust": 0.0008, "anger": 0.0, "sadness": 0.0,
                      "surprise": 0.0, "fear": 0.0},
         "dominant_emotion": "happiness"},
        {"box": {"x": 790, "y": 44, "width": 149, "height": 207}, "confidence": 0.9388,
         "landmarks": {"right_eye": [844.3, 124.3], "left_eye": [910.1, 132.5], "nose": [878.5, 172.6],
                       "mouth_right": [838.0, 194.9], "mouth_left": [892.8, 203.1]},
         "pose": {"yaw": 17.8, "pitch": -6.7, "roll": -7.1},
         "quality": {"brightness": 107.3, "sharpness": 507.6, "size": 149, "reliable": True},
         "emotions": {"neutral": 0.9626, "happiness": 0.0345, "sadness": 0.002, "disgust": 0.0008, "anger": 0.0001,
                      "surprise": 0.0, "fear": 0.0},
         "dominant_emotion": "neutral"},
    ],
    "models": {"detector": "yunet-2023mar", "classifier": "mobilefacenet8-ferplus-sfew-v4.2-int8",
               "classifier_precision": "int8"},
    "timings_ms": {"decode": 12.12, "detect": 51.0, "classify": 11.11, "total": 74.46},
}

# GET /v1/jobs/{id} of a photo job that has finished (the embedded server's presigned-GET stand-in URL).
JOB_STATUS_EXAMPLE: dict[str, Any] = {
    "job_id": "0123456789abcdef0123456789abcdef", "status": "succeeded", "progress": 1.0,
    "created_at": "2026-01-01T12:00:00.000Z", "updated_at": "2026-01-01T12:00:01.250Z", "kind": "image",
    "filename": "fr_two_people.jpg", "result": {"kind": "image", **ANALYSIS_EXAMPLE}, "result_url": None,
    "annotated_url": "http://127.0.0.1:8000/v1/files/results/jobs/0123456789abcdef0123456789abcdef/annotated.jpg"
                     "?expires=1767272400&signature=...",
    "error": None,
}


def example_response(example: dict[str, Any], description: str = "Successful Response") -> dict[int | str, Any]:
    """The 200 entry of ``responses=`` with a JSON example (the schema still comes from ``response_model``)."""
    return {200: {"description": description, "content": {"application/json": {"example": example}}}}

_BINARY = {"type": "string", "format": "binary"}
IMAGE_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The image: multipart field `image`, or the raw bytes with an `image/*` (or "
            "`application/octet-stream`) content type. The format is sniffed from the bytes: JPEG, PNG, "
            "WebP, GIF, BMP, TIFF or HEIC."
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
            "image/heic": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}
