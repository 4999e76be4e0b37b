"""Turning what a library caller passes (a path, encoded bytes, a numpy array, a PIL image) into BGR pixels.

Every kind meets the same guards as an upload: the pixel and side limits, the minimum size, and typed errors
that say what to pass instead. Paths are read from the local disk only; URLs are never fetched.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import cv2
import numpy as np

from emotion.core.errors import BadParameter, EmptyInput, InputNotFound
from emotion.core.imageio import check_dimensions, decode_image

if TYPE_CHECKING:
    from PIL import Image

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, np.ndarray, "Image.Image"]


def load_image(image: ImageInput, *, rgb: bool = False, max_pixels: int, max_side: int) -> np.ndarray:
    """A BGR uint8 array from ``image``.

    ``image``: a path (``str`` or ``os.PathLike``), encoded bytes (JPEG, PNG, WebP, GIF, BMP, TIFF), a numpy
    array in OpenCV's BGR order (``rgb=True`` for RGB/RGBA arrays; grey ``HxW`` and BGRA arrays are accepted)
    or a ``PIL.Image.Image`` (EXIF orientation applied, as for files).
    """
    if isinstance(image, np.ndarray):
        return _from_array(image, rgb, max_pixels, max_side)
    if isinstance(image, bytes | bytearray | memoryview):
        return decode_image(bytes(image), max_pixels=max_pixels, max_side=max_side)
    if isinstance(image, str | os.PathLike):
        return decode_image(read_file(image), max_pixels=max_pixels, max_side=max_side)
    if type(image).__module__.startswith("PIL."):
        return _from_pil(image, max_pixels, max_side)
    raise BadParameter(
        f"cannot read an image from a {type(image).__name__}: pass a file path, encoded image bytes, a numpy "
        "array (BGR, or rgb=True) or a PIL image"
    )


def read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a local image or video file, with typed errors for what is not one."""
    text = os.fspath(path)
    if isinstance(text, str) and text.lower().startswith(("http://", "https://", "s3://")):
        raise BadParameter(f"{text!r} is a URL; URLs are never fetched: download the file and pass its path")
    file = Path(text)
    if file.is_dir():
        raise BadParameter(f"{file} is a folder, not an image file (the `emotion analyze` command searches folders)")
    try:
        return file.read_bytes()
    except FileNotFoundError:
        raise InputNotFound(f"no such file: {file}") from None
    except OSError as exc:
        raise BadParameter(f"cannot read {file}: {exc.strerror or exc}") from None


def _from_array(array: np.ndarray, rgb: bool, max_pixels: int, max_side: int) -> np.ndarray:
    if array.size == 0:
        raise EmptyInput(f"the image array is empty (shape {array.shape})")
    if array.dtype != np.uint8:
        raise BadParameter(
            f"image arrays must be uint8 (0-255), not {array.dtype}; e.g. (a * 255).clip(0, 255).astype('uint8') "
            "for floats in [0, 1]"
        )
    channels = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else 0)
    if channels not in (1, 3, 4):
        raise BadParameter(f"image arrays must be HxW, HxWx1, HxWx3 or HxWx4; got shape {array.shape}")
    check_dimensions(array.shape[1], array.shape[0], max_pixels, max_side)
    if channels == 1:
        return cv2.cvtColor(array.reshape(array.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_RGBA2BGR if rgb else cv2.COLOR_BGRA2BGR)
    return cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if rgb else np.ascontiguousarray(array)


def _from_pil(img: Any, max_pixels: int, max_side: int) -> np.ndarray:
    from PIL import Image, ImageOps

    check_dimensions(img.width, img.height, max_pixels, max_side)
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        raise BadParameter(f"PIL images in mode {img.mode} are not 8-bit; convert them first, e.g. img.convert('L')")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Transparent areas on white, as for decoded files, rather than black blobs.
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return cv2.cvtColor(np.asarray(img.convert("RGB"), dtype=np.uint8), cv2.COLOR_RGB2BGR)
