"""The whole engine on real photos: every face found, result JSON per DESIGN.md, annotation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from emotion.core.annotate import annotate
from emotion.core.engine import analyze, default_options
from emotion.core.errors import BadParameter
from emotion.core.imageio import decode_image


def test_both_faces_in_two_people(model_dir, scenes):
    result = analyze((scenes / "fr_two_people.jpg").read_bytes())
    assert result.image.width == 1126 and result.image.height == 661
    assert len(result.faces) == 2
    xs = sorted(face.box.x for face in result.faces)
    assert xs[0] < 563 < xs[1]  # one person each side
    for face in result.faces:
        assert abs(sum(face.emotions.values()) - 1.0) <= 4e-4  # 7-8 values rounded to 4 decimals
        assert all(round(p, 4) == p for p in face.emotions.values())
        assert face.dominant_emotion == max(face.emotions, key=face.emotions.get)
        assert face.box.width > 100 and face.confidence > 0.6
        assert face.box.x <= face.landmarks.nose[0] <= face.box.x + face.box.width
    assert set(result.timings_ms) == {"decode", "detect", "classify", "total"}
    assert result.models.detector == "yunet-2023mar"


def test_every_face_in_multiface(model_dir, scenes):
    # Six people, all facing the camera (checked by eye on the annotated output).
    result = analyze((scenes / "fp_multiface.jpg").read_bytes())
    assert len(result.faces) == 6
    assert sum(face.dominant_emotion == "happiness" for face in result.faces) >= 4


def test_min_face_and_max_faces(model_dir, scenes):
    data = (scenes / "fp_multiface.jpg").read_bytes()
    assert len(analyze(data, max_faces=2).faces) == 2
    assert len(analyze(data, min_face=500).faces) == 0
    with pytest.raises(BadParameter):
        analyze(data, max_faces=0)
    with pytest.raises(BadParameter):
        default_options(score_threshold=1.5)


def test_rotated_exif_photo_gives_boxes_in_upright_pixels(model_dir, scenes):
    upright = Image.open(scenes / "fr_two_people.jpg")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways stores
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif, quality=92)
    result = analyze(buf.getvalue())
    assert (result.image.width, result.image.height) == (1126, 661)
    assert len(result.faces) == 2


def test_grayscale_photo_works(model_dir, scenes):
    buf = io.BytesIO()
    Image.open(scenes / "fr_two_people.jpg").convert("L").save(buf, "PNG")
    faces = analyze(buf.getvalue()).faces
    # Both people, confidently; in grey YuNet also scores one patch of the shirt at 0.61 (just over 0.6).
    assert len([face for face in faces if face.confidence > 0.8]) == 2


@pytest.mark.parametrize("scale", [0.25, 1.0, 3.0])
def test_annotation_is_drawn_at_any_size(model_dir, scenes, scale):
    data = (scenes / "fr_two_people.jpg").read_bytes()
    bgr = decode_image(data, 100_000_000)
    if scale != 1.0:
        bgr = np.ascontiguousarray(
            np.asarray(Image.fromarray(bgr).resize((int(1126 * scale), int(661 * scale)))))
    from emotion.core.engine import get_engine

    result = get_engine().analyze_array(bgr, default_options())
    out = annotate(bgr, result)
    assert out.shape == bgr.shape and not np.array_equal(out, bgr)
    box = result.faces[0].box
    # The box outline is drawn in the face's colour on the box edge.
    assert not np.array_equal(out[box.y + box.height // 2, box.x], bgr[box.y + box.height // 2, box.x])
