"""Decoding: every bad input gets a typed error; odd-but-valid images decode; EXIF orientation applies."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emotion.core.errors import EmotionError
from emotion.core.imageio import decode_image, sniff_format
from tests.corpus import bad_inputs, encode, odd_valid_images, photo

LIMIT = 40_000_000


def test_corpus_has_at_least_twenty_kinds():
    assert len(bad_inputs()) >= 20


@pytest.mark.parametrize("name", sorted(bad_inputs()))
def test_bad_input_gets_a_typed_error(name):
    data, expected = bad_inputs()[name]
    with pytest.raises(EmotionError) as info:
        decode_image(data, max_pixels=LIMIT)
    assert info.value.code == expected, info.value.message
    assert info.value.message  # a sentence for the user, not an empty string
    assert 400 <= info.value.status < 500


@pytest.mark.parametrize("name", sorted(odd_valid_images()))
def test_odd_valid_images_decode_to_bgr(name):
    bgr = decode_image(odd_valid_images()[name], max_pixels=LIMIT)
    assert bgr.dtype == np.uint8 and bgr.shape == (60, 80, 3)


def test_sixteen_bit_keeps_its_range():
    bgr = decode_image(odd_valid_images()["gray16_png"], max_pixels=LIMIT)
    assert bgr.max() > 200 and bgr.min() < 10  # scaled from 16 bits, not clipped or wrapped


def test_transparent_areas_become_white_not_black():
    rgba = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    bgr = decode_image(encode(rgba, "PNG"), max_pixels=LIMIT)
    assert bgr.min() == 255


def test_pixel_limit_is_configurable_and_checked_before_decoding():
    data = encode(photo((300, 200)), "PNG")
    decode_image(data, max_pixels=60_000)
    with pytest.raises(EmotionError) as info:
        decode_image(data, max_pixels=59_999)
    assert info.value.code == "image_too_large" and info.value.status == 413


def test_exif_orientation_is_applied():
    image = photo((120, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    bgr = decode_image(buf.getvalue(), max_pixels=LIMIT)
    assert bgr.shape[:2] == (120, 40)  # displayed upright: tall, not wide


def test_sniffing_ignores_names_and_claims():
    assert sniff_format(encode(photo(), "PNG"))[0] == "PNG"
    assert sniff_format(encode(photo(), "WEBP"))[0] == "WEBP"
    assert sniff_format(b"%PDF-1.7") is None
