"""A corpus of bad files (generated here) through the HTTP API: every one is a 4xx with error JSON, never a 5xx."""

from __future__ import annotations

import base64
import gzip
import io
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from emotion.api.app import create_app


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(width: int, height: int, idat: bytes | None = None, depth: int = 8, colour: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    if idat is None:
        raw = b"".join(b"\0" + b"\x80" * (3 * width) for _ in range(height))
        idat = zlib.compress(raw)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _jpeg(width: int, height: int) -> bytes:
    img = np.full((height, width, 3), 128, np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _jpeg_with_declared_size(jpeg: bytes, width: int, height: int) -> bytes:
    """Rewrite the SOF0 frame header's dimensions (a bomb: tiny file, absurd declared size)."""
    i = jpeg.index(b"\xff\xc0")
    return jpeg[: i + 5] + struct.pack(">HH", height, width) + jpeg[i + 9 :]


def build_corpus(photo: bytes) -> dict[str, tuple[bytes, set[int]]]:
    """name → (bytes, allowed statuses). Every status is a 4xx."""
    rng = np.random.default_rng(1234)
    bad_400_415 = {400, 415}
    zip_buf = io.BytesIO()
    with zipfile.ZipFile(zip_buf, "w") as zf:
        zf.writestr("photo.jpg", photo[:1000])
    real_png = cv2.imencode(".png", cv2.imdecode(np.frombuffer(photo, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
    small_jpeg = _jpeg(64, 48)
    corpus: dict[str, tuple[bytes, set[int]]] = {
        "empty": (b"", {400}),
        "text": (b"hello, this is not a photo\n" * 20, {415}),
        "utf16_text": ("not a photo".encode("utf-16"), {415}),
        "json": (b'{"image": "https://example.com/face.jpg"}', {415}),
        "server_path": (b"/etc/passwd", {415}),
        "url": (b"http://169.254.169.254/latest/meta-data/", {415}),
        "pdf": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF", {415}),
        "html": (b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", {415}),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><circle r="40"/></svg>', {415}),
        "zip": (zip_buf.getvalue(), {415}),
        "gzip_jpeg": (gzip.compress(photo[:5000]), {415}),
        "random_bytes": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), {415}),
        "base64_jpeg_text": (base64.b64encode(photo[:3000]), {415}),
        "data_url": (b"data:image/jpeg;base64," + base64.b64encode(photo[:3000]), {415}),
        "heic_like": (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 200, {400}),  # HEIC is read: a broken one
        "avif_like": (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf" + b"\0" * 200, {415}),
        "mp4": (b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41" + b"\0" * 500, {415}),
        "elf": (b"\x7fELF\x02\x01\x01" + b"\0" * 400, {415}),
        "psd": (b"8BPS\0\x01" + b"\0" * 300, {415}),
        "ico": (b"\0\0\x01\0\x01\0\x10\x10" + b"\0" * 300, {415}),
        "truncated_jpeg": (photo[: len(photo) // 3], {400}),
        "jpeg_header_only": (b"\xff\xd8\xff\xe0\0\x10JFIF\0", {400}),
        "jpeg_garbage_after_soi": (b"\xff\xd8\xff" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(), {400}),
        "truncated_png": (real_png[:40], {400}),
        "png_half_data": (real_png[: len(real_png) // 2], {400}),
        "png_corrupt_idat": (_png(64, 64, idat=b"\x78\x9c" + b"\xde\xad\xbe\xef" * 50), {400}),
        "png_zero_size": (_png(0, 0, idat=zlib.compress(b"")), {400}),
        "png_1x1": (_png(1, 1), {400}),
        "png_5x200": (_png(5, 200), {400}),
        "jpeg_1x1": (_jpeg(1, 1), {400}),
        "png_bomb_header": (_png(100_000, 100_000, idat=zlib.compress(b"\0" * 1000)), {413}),
        "png_wide_bomb": (_png(1_000_000, 1, idat=zlib.compress(b"\0" * 1000)), {413}),
        "jpeg_bomb_header": (_jpeg_with_declared_size(small_jpeg, 65_000, 65_000), {413}),
        "gif_broken": (b"GIF89a\x40\x00\x40\x00" + rng.integers(0, 256, 300, dtype=np.uint8).tobytes(), bad_400_415),
        "gif_bomb": (b"GIF89a\xff\xff\xff\xff\x00\x00\x00" + b"\0" * 100, {400, 413}),
        "bmp_broken": (b"BM" + b"\xff" * 60, {400}),
        "bmp_bomb": (b"BM" + struct.pack("<IHHI", 1000, 0, 0, 54) + struct.pack("<IiiHH", 40, 60_000, 60_000, 1, 24)
                     + b"\0" * 100, {400, 413}),
        "tiff_broken_le": (b"II*\x00\x08\x00\x00\x00" + b"\xff" * 100, {400}),
        "tiff_broken_be": (b"MM\x00*\x00\x00\x00\x08" + b"\x00\x01\x01\x00", {400}),
        "webp_broken": (b"RIFF\x40\x00\x00\x00WEBPVP8 " + b"\x00" * 40, {400}),
    }
    return corpus


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="module")
def photo(scenes: Path) -> bytes:
    return (scenes / "fr_two_people.jpg").read_bytes()


CORPUS_NAMES = list(build_corpus(_jpeg(64, 48)).keys())


def test_corpus_is_large_enough() -> None:
    assert len(CORPUS_NAMES) >= 20


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_bad_file_is_4xx(client: TestClient, photo: bytes, name: str) -> None:
    data, allowed = build_corpus(photo)[name]
    attempts = [
        ("analyze raw", lambda: client.post("/v1/analyze", content=data, headers={"content-type": "image/jpeg"})),
        ("analyze multipart", lambda: client.post("/v1/analyze", files={"image": (f"{name}.jpg", data, "image/jpeg")})),
        ("annotate raw", lambda: client.post("/v1/annotate", content=data, headers={"content-type": "image/png"})),
    ]
    for how, send in attempts:
        response = send()
        assert 400 <= response.status_code < 500, f"{name} via {how}: {response.status_code} {response.text[:300]}"
        assert response.status_code in allowed, f"{name} via {how}: {response.status_code} {response.text[:300]}"
        error = response.json()["error"]
        assert error["code"] and error["message"], (name, how)


def test_service_still_answers_after_the_corpus(client: TestClient, photo: bytes) -> None:
    response = client.post("/v1/analyze", content=photo, headers={"content-type": "image/jpeg"})
    assert response.status_code == 200
    assert len(response.json()["faces"]) == 2
