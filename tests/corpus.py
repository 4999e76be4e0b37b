"""Generated input corpora: bad files that must each get a typed error, and odd-but-valid images."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_declared_size(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height but carries only a token of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def photo(size: tuple[int, int] = (64, 48)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def bad_inputs() -> dict[str, tuple[bytes, str]]:
    """name → (bytes, expected error code). At least 20 kinds of bad input."""
    jpeg = encode(photo(), "JPEG")
    png = encode(photo(), "PNG")
    gif = encode(photo().convert("P"), "GIF")
    bmp = encode(photo(), "BMP")
    tiff = encode(photo(), "TIFF")
    webp = encode(photo(), "WEBP")
    rng = np.random.default_rng(1)
    corrupt_png = bytearray(png)
    corrupt_png[40:60] = b"\x00" * 20  # inside IDAT: CRC and zlib stream now wrong
    return {
        "empty": (b"", "empty_input"),
        "text": (b"hello, this is not an image\n" * 10, "unsupported_media_type"),
        "pdf": (b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n", "unsupported_media_type"),
        "html": (b"<!doctype html><html><body>nope</body></html>", "unsupported_media_type"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "unsupported_media_type"),
        "zip": (b"PK\x03\x04" + bytes(60), "unsupported_media_type"),
        # A HEIC header with no image in it: read as HEIC (pillow-heif), so it is a broken HEIC, not a wrong type.
        "heic_header_only": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), "undecodable_image"),
        "random_bytes": (rng.integers(1, 255, 4096, dtype=np.uint8).tobytes(), "unsupported_media_type"),
        "json": (b'{"image": "http://169.254.169.254/latest/meta-data"}', "unsupported_media_type"),
        "jpeg_truncated": (jpeg[: len(jpeg) // 2], "undecodable_image"),
        "jpeg_magic_only": (b"\xff\xd8\xff", "undecodable_image"),
        "png_truncated": (png[: len(png) // 2], "undecodable_image"),
        "png_corrupt_idat": (bytes(corrupt_png), "undecodable_image"),
        "gif_truncated": (gif[:20], "undecodable_image"),
        "bmp_truncated": (bmp[:40], "undecodable_image"),
        "tiff_truncated": (tiff[:30], "undecodable_image"),
        "webp_truncated": (webp[:24], "undecodable_image"),
        "png_1x1": (encode(Image.new("RGB", (1, 1)), "PNG"), "image_too_small"),
        "jpeg_5x200": (encode(Image.new("RGB", (5, 200)), "JPEG"), "image_too_small"),
        "png_bomb_declared_100k_square": (png_with_declared_size(100_000, 100_000), "image_too_large"),
        "png_bomb_long_side": (png_with_declared_size(1_000_000, 20), "image_too_large"),
        "png_zero_size": (png_with_declared_size(0, 0), "undecodable_image"),
    }


def odd_valid_images() -> dict[str, bytes]:
    """Valid images in modes and formats that must decode to BGR uint8."""
    base = photo((80, 60))
    sixteen = Image.fromarray(np.arange(80 * 60, dtype=np.uint16).reshape(60, 80) * 13)  # mode I;16
    return {
        "gray_png": encode(base.convert("L"), "PNG"),
        "rgba_png": encode(base.convert("RGBA"), "PNG"),
        "la_png": encode(base.convert("LA"), "PNG"),
        "palette_gif": encode(base.convert("P"), "GIF"),
        "cmyk_jpeg": encode(base.convert("CMYK"), "JPEG"),
        "gray16_png": encode(sixteen, "PNG"),
        "bmp": encode(base, "BMP"),
        "tiff": encode(base, "TIFF"),
        "webp": encode(base, "WEBP"),
    }
