"""Reading the image of a request: multipart field ``image`` or a raw ``image/*`` body, in memory."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from emotion.api.errors import BadRequest
from emotion.core.errors import BadParameter, EmotionError, UnsupportedMediaType


class _InMemoryMultiPartParser(MultiPartParser):
    # Bodies are capped by RequestGuard, so file parts can stay in memory: images never touch the disk.
    spool_max_size = 1 << 40


async def read_image(request: Request) -> bytes:
    """The image bytes from a multipart field ``image`` or from a raw ``image/*`` body."""
    content_type = request.headers.get("content-type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "multipart/form-data":
        parser = _InMemoryMultiPartParser(request.headers, request.stream(), max_files=4, max_fields=16)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise BadRequest(f"malformed multipart body: {exc.message}") from exc
        try:
            field = form.get("image")
            if field is None:
                raise _missing_image()
            if isinstance(field, UploadFile):
                return await field.read()
            return field.encode("utf-8")
        finally:
            await form.close()
    if mime in ("", "application/octet-stream") or mime.startswith("image/"):
        return await request.body()
    raise UnsupportedMediaType(
        f"content type {mime!r} is not accepted: send the image as multipart field 'image' or as the raw body "
        "with an image/* content type"
    )


def _missing_image() -> EmotionError:
    return BadParameter("the multipart body has no field 'image': send the photo as form field 'image'")
