"""Image decoding with guards, checked before any pixel is decoded: format sniffing, pixel and memory
limits from the header, a JPEG scan limit; then a decode straight to 8-bit BGR with EXIF orientation applied.

Memory: JPEG (the common case) is decoded by OpenCV's libjpeg-turbo straight into the BGR output array;
every other format is decoded by Pillow in its native mode and converted to BGR in strips of a few MB, so
no float64, RGBA or second full-size copy of the image is made. :func:`decode_cost` is the estimate that
is checked against ``max_decode_bytes`` first.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from emotion.core.errors import EmptyInput, ImageTooLarge, ImageTooSmall, UndecodableImage, UnsupportedMediaType
from emotion.settings import get_settings

try:  # HEIC/HEIF (the iPhone default) through libheif; without it the service still answers in words
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - pillow-heif is a runtime dependency
    HEIF_SUPPORTED = False

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
# ISO-BMFF major brands of HEIC/HEIF still images (ISO/IEC 23008-12); AVIF ("avif") is not among them.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF")
MIN_SIDE = 10  # YuNet sees nothing smaller than about 10 px

# Why the JPEG scan limit (Settings.jpeg_max_scans) rather than a CPU-time limit: counting markers costs
# microseconds and refuses before any work, the same way in every process, where a time limit needs a
# killable decoder process and still spends its whole budget on every bomb.
# libjpeg/libjpeg-turbo's progressive script writes 10 scans (6 for grey), mozjpeg's optimised scripts
# up to about 20, and a baseline file 1 per component: 100 is far above any real encoder. Every scan is a
# full pass over the image's coefficients, so the limit bounds decode time at about 100 passes (about
# 1.5 s for 36 MP), where a crafted file with thousands of tiny refinement scans costs minutes of CPU.

_STRIP_BYTES = 4 << 20  # rows converted at a time from Pillow's native mode to BGR

# Bytes per pixel Pillow holds for a decoded image of each mode (RGB is stored as 4 bytes).
# GIF frames after the first may turn P into RGB(A) on load, so GIF is counted at 4 (the default).
_MODE_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
# Extra bytes per pixel a decoder holds while decoding: libwebp decodes into its own RGBA canvas (and a
# second one for animation) before Pillow copies it: 15.2 B/px measured in all.
_FORMAT_EXTRA_BYTES = {"WEBP": 9, "HEIF": 1}  # HEIF: 7.1 B/px measured (libheif's RGB output + Pillow's)


def sniff_format(data: bytes) -> tuple[str, str] | None:
    """(format, MIME type) from the magic bytes, or None for anything we do not decode."""
    for magic, offset, fmt, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return fmt, mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP", "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF", "image/heic"
    return None


@dataclass(frozen=True)
class JpegInfo:
    """What the markers of a JPEG stream say, read without decoding: scans, SOF type, components, EOI."""

    scans: int
    progressive: bool
    components: int
    complete: bool  # the stream reaches its EOI marker (else it is truncated)


def jpeg_markers(data: bytes, max_scans: int) -> JpegInfo:
    """Walk a JPEG's marker segments (skipping each scan's entropy-coded data) and count its scans (SOS).

    Stops counting at ``max_scans + 1``. Linear in the file size; no pixel is decoded.
    """
    pos, size = 2, len(data)
    scans = components = 0
    progressive = False
    while pos + 4 <= size and scans <= max_scans:
        if data[pos] != 0xFF:
            return JpegInfo(scans, progressive, components, False)
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return JpegInfo(scans, progressive, components, True)
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM / stray RSTn: no length
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return JpegInfo(scans, progressive, components, False)
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):  # SOFn
            progressive = marker in (0xC2, 0xC6, 0xCA, 0xCE)
            components = data[pos + 9] if pos + 9 < size else 0
        pos += 2 + length
        if marker == 0xDA:  # SOS: entropy-coded data follows, up to the next marker that is not RSTn/stuffing
            scans += 1
            while True:
                pos = data.find(b"\xff", pos)
                if pos < 0 or pos + 1 >= size:
                    return JpegInfo(scans, progressive, components, False)
                following = data[pos + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
                    pos += 1 if following == 0xFF else 2
                    continue
                break
    return JpegInfo(scans, progressive, components, data[-2:] == b"\xff\xd9" and scans <= max_scans)


def decode_cost(fmt: str, mode: str, width: int, height: int, jpeg: JpegInfo | None = None) -> int:
    """Bytes of memory decoding this image to BGR takes at its peak (estimate from the header)."""
    pixels = width * height
    output = 3 * pixels  # the BGR array; an EXIF rotation makes a second one after the decoder's is freed
    if fmt == "JPEG":
        # libjpeg keeps every DCT coefficient of a progressive image (2 bytes per sample per component,
        # chroma at most full resolution); a baseline image is decoded row by row into the output.
        coefficients = 2 * pixels * max(1, jpeg.components if jpeg else 3) if jpeg and jpeg.progressive else 0
        return max(output + coefficients, 2 * output)
    native = (4 if fmt == "GIF" else _MODE_BYTES.get(mode, 4)) * pixels
    return max(native + _FORMAT_EXTRA_BYTES.get(fmt, 0) * pixels + output, 2 * output)


def check_dimensions(width: int, height: int, max_pixels: int, max_side: int) -> None:
    """The pixel and side limits, and the smallest size a face can be found in (typed errors)."""
    if width * height > max_pixels or max(width, height) > max_side:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} pixels "
            f"and {max_side:,} px per side"
        )
    if min(width, height) < MIN_SIDE:
        raise ImageTooSmall(f"image is {width}x{height}; faces need at least {MIN_SIDE} px per side")


def decode_image(data: bytes, max_pixels: int, max_side: int = 20_000, max_decode_bytes: int | None = None,
                 jpeg_max_scans: int | None = None) -> np.ndarray:
    """Decode bytes to a BGR uint8 array, EXIF orientation applied.

    Rejects with a typed error, before decoding any pixel: empty input, formats we do not read, declared
    dimensions over ``max_pixels`` or ``max_side``, an estimated decode memory over ``max_decode_bytes``,
    a JPEG with more than ``jpeg_max_scans`` scans, a truncated JPEG, images under ``MIN_SIDE`` pixels;
    and, while decoding, corrupt or truncated data. The last two limits default to the settings.
    """
    if max_decode_bytes is None or jpeg_max_scans is None:
        settings = get_settings()
        max_decode_bytes = settings.max_decode_bytes if max_decode_bytes is None else max_decode_bytes
        jpeg_max_scans = settings.jpeg_max_scans if jpeg_max_scans is None else jpeg_max_scans
    if not data:
        raise EmptyInput("the request carries no image bytes")
    sniffed = sniff_format(data)
    if sniffed is None:
        raise UnsupportedMediaType(
            "not a supported image: expected JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC (checked by content, not by name)"
        )
    fmt = sniffed[0]
    if fmt == "HEIF" and not HEIF_SUPPORTED:
        raise UnsupportedMediaType("HEIC photos need pillow-heif on the server; send a JPEG or PNG instead")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data), formats=[fmt])
            width, height = img.size  # header only: no pixels decoded yet
            if width < 1 or height < 1:
                raise UndecodableImage(f"{fmt} header declares an empty image ({width}x{height})")
            check_dimensions(width, height, max_pixels, max_side)
            jpeg = _check_jpeg(data, jpeg_max_scans) if fmt == "JPEG" else None
            cost = decode_cost(fmt, img.mode, width, height, jpeg)
            if cost > max_decode_bytes:
                raise ImageTooLarge(
                    f"decoding this {width}x{height} {fmt} ({img.mode}) would take about {cost / 1e6:,.0f} MB; "
                    f"the limit is {max_decode_bytes / 1e6:,.0f} MB: send a smaller or baseline-JPEG image"
                )
            if fmt == "JPEG":
                img.close()
                bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # EXIF orientation applied
                if bgr is None:
                    raise UndecodableImage("JPEG data could not be decoded; the file is corrupt or truncated")
                return bgr
            img.load()
            orientation = _orientation(img)
            bgr = _to_bgr8(img)
            img.close()  # Pillow's copy is freed before the (rare) rotated copy is made
            return _orient(bgr, orientation)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        # The exception's own text can carry object reprs (heap addresses): name its type only.
        raise UndecodableImage(f"{fmt} data could not be decoded ({_reason(exc)}); the file is corrupt or "
                               "truncated") from exc


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return type(exc).__name__ if "<" in text or "0x" in text or not text else text[:200]


def _check_jpeg(data: bytes, max_scans: int) -> JpegInfo:
    info = jpeg_markers(data, max_scans)
    if info.scans > max_scans:
        raise UndecodableImage(
            f"JPEG has more than {max_scans} scans; real encoders write at most a few dozen, and each scan costs "
            "a full decoding pass (re-save the image as a baseline or standard progressive JPEG)"
        )
    if not info.complete or info.scans == 0:
        raise UndecodableImage("JPEG data is truncated (no end-of-image marker after its scans)")
    return info


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
        return value if isinstance(value, int) else 1
    except Exception:  # noqa: BLE001 - unreadable EXIF is ignored, as ImageOps.exif_transpose does
        return 1


def _orient(bgr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2..8) to a decoded array, as ``ImageOps.exif_transpose`` does."""
    if orientation == 2:
        return cv2.flip(bgr, 1)
    if orientation == 3:
        return cv2.rotate(bgr, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(bgr, 0)
    if orientation == 5:
        return np.ascontiguousarray(bgr.transpose(1, 0, 2))
    if orientation == 6:
        return cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return np.ascontiguousarray(bgr[::-1, ::-1].transpose(1, 0, 2))
    if orientation == 8:
        return cv2.rotate(bgr, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return bgr


def _to_bgr8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode (L, LA, P, RGBA, CMYK, I;16, I, F, ...) to a BGR uint8 array, converted in strips."""
    width, height = img.size
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, _STRIP_BYTES // (16 * width))
    high_bit = img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
    scale = 1.0
    if high_bit:
        top = img.getextrema()[1]  # computed by Pillow without a copy
        top_value = 65535.0 if img.mode.startswith("I;16") or float(top) > 255 else 255.0  # type: ignore[arg-type]
        scale = 255.0 / top_value
    alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)
    for y in range(0, height, rows):
        strip = img.crop((0, y, width, min(height, y + rows)))
        if high_bit:
            values = np.asarray(strip, dtype=np.float32) * np.float32(scale)
            gray = np.clip(values, 0, 255).astype(np.uint8)
            out[y : y + gray.shape[0]] = gray[..., None]
            continue
        if alpha:
            # Composite on white so transparent areas do not become black blobs.
            rgba = strip.convert("RGBA")
            strip = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        rgb = np.asarray(strip.convert("RGB"), dtype=np.uint8)
        out[y : y + rgb.shape[0]] = rgb[..., ::-1]
    return out


def encode_image(bgr: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> bytes:
    """Encode a BGR array as JPEG, PNG or WebP bytes."""
    if fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
    elif fmt == "webp":
        ok, buf = cv2.imencode(".webp", bgr, [cv2.IMWRITE_WEBP_QUALITY, quality])
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 only fails on empty arrays
        raise ValueError("image encoding failed")
    return buf.tobytes()
