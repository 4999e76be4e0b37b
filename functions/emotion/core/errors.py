"""Typed errors. Each carries a stable ``code`` and the HTTP status the API maps it to."""

from __future__ import annotations


class EmotionError(Exception):
    """Base class: a client-facing error with a machine-readable code."""

    code = "error"
    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class EmptyInput(EmotionError):
    code = "empty_input"
    status = 400


class UndecodableImage(EmotionError):
    """Looks like an image format we read, but the bytes do not decode (corrupt, truncated)."""

    code = "undecodable_image"
    status = 400


class UnsupportedMediaType(EmotionError):
    """Not an image format we read (PDF, text, HEIC, ...)."""

    code = "unsupported_media_type"
    status = 415


class ImageTooLarge(EmotionError):
    code = "image_too_large"
    status = 413


class ImageTooSmall(EmotionError):
    code = "image_too_small"
    status = 400


class BadParameter(EmotionError):
    code = "bad_parameter"
    status = 422


class ModelUnavailable(EmotionError):
    """Model files missing or failing verification: a server set-up problem, not the client's."""

    code = "model_unavailable"
    status = 503


class UnsupportedVideo(EmotionError):
    """Not a video we can decode."""

    code = "undecodable_video"
    status = 400


class InputNotFound(EmotionError):
    """A library or CLI caller named an image or video file that does not exist (the HTTP API takes no paths)."""

    code = "input_not_found"
    status = 404
