"""Decode budget: bombs that fit every size limit are refused before decoding or decoded in bounded memory.

Each bomb is generated here in a few lines. Memory is measured in a child process (peak RSS, Linux VmHWM,
reset just before the decode), so one test's bomb cannot hide behind another's peak; time is bounded by
the child's timeout.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emotion.core.errors import EmotionError
from emotion.core.imageio import decode_cost, decode_image, jpeg_markers

MP40 = (6000, 6600)  # 39.6 MP: just under the default max_pixels (40 MP)
LIMIT = 40_000_000
SHARED = Path("/work/shared")


def _scan_bomb(side: int = 6000, copies: int = 2000) -> bytes:
    """A progressive JPEG whose smallest AC refinement scan is repeated ``copies`` times (~260 kB)."""
    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, "JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA] + [len(data) - 2]
    scans = [data[a:b] for a, b in zip(starts, starts[1:], strict=False)]
    refinements = [s for s in scans if s[4 + 2 * s[4] + 3] >> 4 and s[4 + 2 * s[4] + 1] > 0]  # Ah > 0, Ss > 0
    return data[:-2] + min(refinements, key=len) * copies + data[-2:]


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


BOMBS = {
    # tiny files that declare ~40 MP; the old decoder made float64 / RGBA copies of the full image
    "png16": lambda: _save(Image.fromarray(np.zeros(MP40[::-1], np.uint16)), "PNG", compress_level=9),
    "float_tiff": lambda: _save(Image.new("F", MP40), "TIFF", compression="tiff_adobe_deflate"),
    "rgba_png": lambda: _save(Image.new("RGBA", MP40, (0, 0, 0, 0)), "PNG", compress_level=9),
    "progressive_jpeg": lambda: _save(Image.new("RGB", MP40, (120, 90, 60)), "JPEG", progressive=True),
    "webp": lambda: _save(Image.new("RGB", MP40, (120, 90, 60)), "WEBP", lossless=True, method=0),
    "heic": lambda: _save(Image.new("RGB", MP40, (120, 90, 60)), "HEIF", quality=10),  # pillow-heif (imageio)
}

_CHILD = r"""
import json, sys, time
from emotion.core.imageio import decode_image
data = open(sys.argv[1], "rb").read()
def rss(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field)) * 1024
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS
base, start = rss("VmRSS"), time.process_time()
try:
    out = decode_image(data, max_pixels=40_000_000)
    outcome = list(out.shape)
except Exception as exc:
    outcome = getattr(exc, "code", type(exc).__name__)
print(json.dumps({"peak": rss("VmHWM") - base, "cpu": time.process_time() - start, "outcome": outcome}))
"""


def _decode_in_child(data: bytes, tmp_path: Path, timeout: float = 20.0) -> dict:
    path = tmp_path / "bomb"
    path.write_bytes(data)
    done = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                          timeout=timeout, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_jpeg_scan_bomb_is_refused_from_its_markers_before_decoding():
    data = _scan_bomb()
    assert len(data) < 300_000
    assert jpeg_markers(data, 100).scans == 101  # counting stops past the limit
    start = time.perf_counter()
    with pytest.raises(EmotionError) as info:
        decode_image(data, max_pixels=LIMIT)
    assert time.perf_counter() - start < 0.5  # the old decoder spent ~25 CPU-seconds on this file
    assert info.value.code == "undecodable_image" and "scans" in info.value.message


def test_real_progressive_and_baseline_jpegs_are_within_the_scan_limit():
    photo = Image.new("RGB", (640, 480), (10, 200, 30))
    for options in ({}, {"progressive": True}, {"progressive": True, "optimize": True}):
        data = _save(photo, "JPEG", **options)
        info = jpeg_markers(data, 100)
        assert info.complete and 1 <= info.scans <= 20
        assert decode_image(data, max_pixels=LIMIT).shape == (480, 640, 3)
    shared = sorted((SHARED / "data").rglob("*.jpg"))[:200] if SHARED.is_dir() else []
    for path in shared:
        assert jpeg_markers(path.read_bytes(), 100).scans <= 20, path.name


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_tiny_pixel_bombs_cost_at_most_their_estimate(name, tmp_path):
    data = BOMBS[name]()
    assert len(data) < 300_000, len(data)
    result = _decode_in_child(data, tmp_path)
    with Image.open(io.BytesIO(data)) as img:
        estimate = decode_cost(img.format or "", img.mode, *img.size,
                               jpeg_markers(data, 100) if img.format == "JPEG" else None)
    if estimate > 512_000_000:  # the default max_decode_bytes: refused from the header
        assert result["outcome"] == "image_too_large"
        assert result["peak"] < 20_000_000
    else:  # decoded to 8-bit BGR with no float64 / RGBA full copies: the old decoder took 0.5-1.2 GB here
        assert result["outcome"] == [MP40[1], MP40[0], 3]
        assert result["peak"] <= estimate * 1.1, (result, estimate)
        assert result["peak"] < 400_000_000
    assert result["cpu"] < 5


def test_decode_memory_limit_is_configurable():
    data = _save(Image.new("RGB", (1000, 1000), (1, 2, 3)), "PNG")
    assert decode_image(data, max_pixels=LIMIT, max_decode_bytes=7_000_000).shape == (1000, 1000, 3)
    with pytest.raises(EmotionError) as info:
        decode_image(data, max_pixels=LIMIT, max_decode_bytes=6_999_999)
    assert info.value.code == "image_too_large" and info.value.status == 413 and "MB" in info.value.message


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_on_the_array_matches_pillow(orientation):
    from PIL import ImageOps

    rng = np.random.default_rng(orientation)
    image = Image.fromarray(rng.integers(0, 255, (30, 50, 3), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(image, "PNG", exif=exif)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))[..., ::-1]
    assert np.array_equal(decode_image(data, max_pixels=LIMIT), expected)


def test_messages_carry_no_object_reprs():
    with pytest.raises(EmotionError) as info:
        decode_image(b"\x89PNG\r\n\x1a\n" + bytes(40), max_pixels=LIMIT)
    assert "0x" not in info.value.message and "<" not in info.value.message
