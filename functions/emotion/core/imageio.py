"""Image decoding with guards: format sniffing, pixel limits checked from the header, EXIF orientation."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from emotion.core.errors import EmptyInput, ImageTooLarge, ImageTooSmall, UndecodableImage, UnsupportedMediaType

# Pillow's own bomb check is replaced by ours (configurable, and a typed error instead of a warning).
Image.MAX_IMAGE_PIXELS = None

# Magic bytes of the formats we decode → (format name, MIME type).
_SIGNATURES: tuple[tuple[bytes, int, str, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG", "image/png"),
    (b"GIF87a", 0, "GIF", "image/gif"),
    (b"GIF89a", 0, "GIF", "image/gif"),
    (b"BM", 0, "BMP", "image/bmp"),
    (b"II*\x00", 0, "TIFF", "image/tiff"),
    (b"MM\x00*", 0, "TIFF", "image/tiff"),
)
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
MIN_SIDE = 10  # YuNet sees nothing smaller than about 10 px


def sniff_format(data: bytes) -> tuple[str, str] | None:
    """(format, MIME type) from the magic bytes, or None for anything we do not decode."""
    for magic, offset, fmt, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return fmt, mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP", "image/webp"
    return None


def decode_image(data: bytes, max_pixels: int, max_side: int = 20_000) -> np.ndarray:
    """Decode bytes to a BGR uint8 array, EXIF orientation applied.

    Rejects, with a typed error and before decoding pixels where possible: empty input, formats we do not
    read, declared dimensions over ``max_pixels`` or ``max_side``, truncated or corrupt data, images under
    ``MIN_SIDE`` pixels.
    """
    if not data:
        raise EmptyInput("the request carries no image bytes")
    sniffed = sniff_format(data)
    if sniffed is None:
        raise UnsupportedMediaType(
            "not a supported image: expected JPEG, PNG, WebP, GIF, BMP or TIFF (checked by content, not by name)"
        )
    fmt = sniffed[0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size  # header only: no pixels decoded yet
            if width < 1 or height < 1:
                raise UndecodableImage(f"{fmt} header declares an empty image ({width}x{height})")
            if width * height > max_pixels or max(width, height) > max_side:
                raise ImageTooLarge(
                    f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels "
                    f"and {max_side:,} px per side"
                )
            if min(width, height) < MIN_SIDE:
                raise ImageTooSmall(f"image is {width}x{height}; faces need at least {MIN_SIDE} px per side")
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb8(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise UndecodableImage(f"{fmt} data could not be decoded ({exc}); the file is corrupt or truncated") from exc
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to an RGB uint8 array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.stack([gray] * 3, axis=-1))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white so transparent areas do not become black blobs.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


def encode_image(bgr: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode a BGR array as JPEG or PNG bytes."""
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 only fails on empty arrays
        raise ValueError("image encoding failed")
    return buf.tobytes()
