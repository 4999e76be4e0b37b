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


def test_a_face_tilted_past_the_detector_is_found_by_the_rotated_retry(model_dir, scenes):
    import dataclasses

    import cv2

    from emotion.core.engine import get_engine

    engine, options = get_engine(), default_options()
    assert options.rotated_retry  # on for images by default (settings.rotated_retry)
    left = cv2.copyMakeBorder(cv2.imread(str(scenes / "fr_two_people.jpg"))[:, :563], 0, 0, 100, 100,
                              cv2.BORDER_REPLICATE)  # room for the turned face
    upright = engine.analyze_array(left, options).faces
    assert len(upright) == 1
    no_retry = dataclasses.replace(options, rotated_retry=False)
    assert engine.detect(left, options).tolist() == engine.detect(left, no_retry).tolist()  # found: no retry

    h, w = left.shape[:2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 75, 1.0)  # a head at 75 degrees: beyond YuNet alone
    tilted = cv2.warpAffine(left, turn, (w, h))
    assert engine.analyze_array(tilted, no_retry).faces == []
    found = engine.analyze_array(tilted, options).faces
    assert len(found) == 1
    # Landmarks come back in the tilted image's pixels, near where the upright face's landmarks turn to (YuNet's
    # own landmarks on a face turned 45 degrees differ by up to a third of the eye distance).
    eyes = np.hypot(*np.subtract(upright[0].landmarks.left_eye, upright[0].landmarks.right_eye))
    for name in ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left"):
        expected = turn @ np.array([*getattr(upright[0].landmarks, name), 1.0])
        assert np.hypot(*(np.array(getattr(found[0].landmarks, name)) - expected)) < 0.4 * eyes, name
    box = found[0].box  # upright, about the face's size, around its nose
    assert box.x <= found[0].landmarks.nose[0] <= box.x + box.width
    assert box.y <= found[0].landmarks.nose[1] <= box.y + box.height
    assert 0.7 < box.width / upright[0].box.width < 1.5

    assert engine.analyze_array(np.full((480, 640, 3), 128, np.uint8), options).faces == []


def test_retries_on_a_large_image_run_on_the_working_copy_and_map_back(model_dir, scenes):
    """A tilted face in an image larger than the detection size: the turned retry warps the downscaled working
    copy (one warp also shrinking the turned canvas), and the rows come back in the large image's pixels."""
    import cv2

    from emotion.core.engine import get_engine

    engine, options = get_engine(), default_options()
    left = cv2.copyMakeBorder(cv2.imread(str(scenes / "fr_two_people.jpg"))[:, :563], 0, 0, 100, 100,
                              cv2.BORDER_REPLICATE)
    h, w = left.shape[:2]
    tilted = cv2.warpAffine(left, cv2.getRotationMatrix2D((w / 2, h / 2), 75, 1.0), (w, h))
    small = engine.detect(tilted, options)
    factor = 2.5
    large = cv2.resize(tilted, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
    assert max(large.shape[:2]) > options.max_side
    found = engine.detect(large, options)
    assert len(small) == len(found) == 1
    face_w = small[0, 2]
    # The large image is detected at 1024 px, the small one at its own 763 px: YuNet's rows differ a little.
    assert np.abs(found[0, :14] / factor - small[0, :14]).max() < 0.15 * face_w


def test_a_small_image_is_enlarged_and_answered_in_its_own_pixels(model_dir, shared_dir):
    """A 48 px FER crop sent as it is: the engine enlarges it (x6, bicubic) before detection and alignment, so
    its answer is the enlarged crop's answer, with the box and landmarks in the 48 px image's pixels."""
    import dataclasses

    import cv2

    from emotion.core.align import enlarged
    from emotion.core.engine import get_engine

    engine, options = get_engine(), default_options()
    crop = cv2.imread(str(shared_dir / "data/ferplus_train/fer0000000.png"))
    assert crop.shape[:2] == (48, 48)
    big, factor = enlarged(crop)
    assert factor == 6 and big.shape[:2] == (288, 288)
    small_result, big_result = engine.analyze_array(crop, options), engine.analyze_array(big, options)
    assert len(small_result.faces) == len(big_result.faces) == 1
    face, reference = small_result.faces[0], big_result.faces[0]
    assert small_result.image.width == 48 and face.emotions == reference.emotions
    for name in ("right_eye", "left_eye", "nose", "mouth_right", "mouth_left"):
        assert np.allclose(getattr(face.landmarks, name), np.divide(getattr(reference.landmarks, name), 6),
                           atol=0.06), name
    assert face.box.x >= 0 and face.box.x + face.box.width <= 48 and 20 <= face.box.width <= 48
    # min_face counts the pixels of the image sent, not of its enlarged copy
    assert len(engine.analyze_array(crop, dataclasses.replace(options, min_face=20)).faces) == 1
    assert engine.analyze_array(crop, dataclasses.replace(options, min_face=49)).faces == []
    assert options.enlarge_small  # on by default (settings.enlarge_small_images); off: the crop as it is
    work, _, factor = engine.detect_enlarged(crop, dataclasses.replace(options, enlarge_small=False))
    assert factor == 1 and work is crop
    many = engine.analyze_arrays([crop, big], options)  # the batched path enlarges the same way
    assert [r.faces[0].emotions for r in many] == [face.emotions, reference.emotions]
    assert many[0].faces[0].landmarks == face.landmarks


def test_framed_detection_maps_rows_back_to_the_input(model_dir, scenes):
    """The same face found inside a black frame comes back at the input's pixels. The frame shifts the face on
    YuNet's 32 px grid, which moves its box and landmarks by up to 12 px here (150 px face); a frame left
    unsubtracted (282 / 330 px) or subtracted on the wrong axis (48 px off) is far outside that."""
    import cv2

    from emotion.core.engine import get_engine

    detector = get_engine().detector
    left = cv2.imread(str(scenes / "fr_two_people.jpg"))[:, :563].copy()  # 661 x 563: framed at 0.5, no resize
    reference = detector.detect(left)
    rows = detector.detect_framed(left, 0.5)
    assert len(rows) == len(reference) == 1
    assert np.abs(rows[0, :14] - reference[0, :14]).max() < 0.1 * reference[0, 2]
    assert abs(rows[0, 14] - reference[0, 14]) < 0.02


def test_a_tight_crop_missed_upright_and_turned_is_found_framed(model_dir, shared_dir):
    """A FER+ train crop (enlarged as the eval tool does) whose face fills it edge to edge: YuNet finds nothing
    upright or turned 30 degrees, and the face inside a black frame."""
    import dataclasses

    import cv2

    from emotion.core.engine import RETRY_DEGREES, get_engine
    from emotion.model.crops import engine_input

    engine, options = get_engine(), default_options()
    crop = engine_input(cv2.imread(str(shared_dir / "data/ferplus_train/fer0017218.png")))
    assert len(engine.detect(crop, dataclasses.replace(options, rotated_retry=False))) == 0
    for degrees in RETRY_DEGREES:
        turned = engine.detector.detect_rotated(crop, degrees, options.max_side)
        assert not (turned[:, 14] >= options.score_threshold).any()
    faces = engine.analyze_array(crop, options).faces
    assert len(faces) == 1
    eyes = (faces[0].landmarks.right_eye, faces[0].landmarks.left_eye)
    assert all(0 <= x < crop.shape[1] and 0 <= y < crop.shape[0] for x, y in eyes)  # in the crop, not the frame
    assert eyes[0][0] < eyes[1][0]  # the subject's right eye on the image's left


def test_rotated_detection_maps_rows_back_exactly(model_dir, scenes):
    """Turning a quarter-turned image back by -90 degrees restores the original pixels, so the rows must be the
    original image's rows carried through the quarter turn."""
    import cv2

    from emotion.core.engine import get_engine

    detector = get_engine().detector
    left = cv2.imread(str(scenes / "fr_two_people.jpg"))[:, :563].copy()
    reference = detector.detect(left)
    quarter = np.ascontiguousarray(np.rot90(left))  # counter-clockwise: (x, y) -> (y, w - 1 - x)
    rows = detector.detect_rotated(quarter, -90)
    assert len(rows) == len(reference) == 1
    points = reference[0, 4:14].reshape(5, 2)
    expected = np.column_stack([points[:, 1], left.shape[1] - 1 - points[:, 0]])
    assert np.abs(rows[0, 4:14].reshape(5, 2) - expected).max() < 2.0
    centre = reference[0, :2] + reference[0, 2:4] / 2
    got_centre = rows[0, :2] + rows[0, 2:4] / 2
    assert np.abs(got_centre - [centre[1], left.shape[1] - 1 - centre[0]]).max() < 2.0
    assert abs(rows[0, 14] - reference[0, 14]) < 0.01
