"""Per-face pose and quality, and no face inside a face, on real images."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from emotion.core import detector as detector_module
from emotion.core.detector import drop_contained
from emotion.core.engine import default_options, get_engine
from emotion.core.facemeasures import GENERIC_FACE, MIN_BRIGHTNESS, MIN_SHARPNESS, MIN_SIZE, face_pose
from emotion.model.crops import engine_input


def _frame(video, index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(video))
    for _ in range(index + 1):  # decoded in order: seeking an H.264 stream may land on another frame
        ok, frame = cap.read()
        assert ok
    cap.release()
    return frame


def _row(points: np.ndarray, score: float = 0.9) -> np.ndarray:
    return np.array([0, 0, 100, 100, *np.asarray(points, dtype=np.float64).ravel(), score])


# ------------------------------------------------------------------------------------------------------ pose
def test_the_generic_face_turned_by_known_angles_reads_back_its_yaw_and_pitch():
    points = GENERIC_FACE
    for yaw, pitch in [(0, 0), (35, 0), (-50, 0), (0, 20), (0, -25), (25, -15)]:
        y, p = math.radians(yaw), math.radians(pitch)
        turn = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
        tilt = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
        pose = face_pose(_row((turn @ tilt @ points.T).T[:, :2] * 4 + 300))
        assert pose.yaw == pytest.approx(yaw, abs=1.0) and pose.pitch == pytest.approx(pitch, abs=1.0)
        assert abs(pose.roll) <= 1.0  # the eye line stays level: the template's eyes differ by 0.2 px


def test_roll_follows_a_real_face_turned_in_the_image(model_dir, scenes):
    engine, options = get_engine(), default_options()
    image = cv2.copyMakeBorder(cv2.imread(str(scenes / "fr_two_people.jpg"))[:, :563], 100, 100, 100, 100,
                               cv2.BORDER_REPLICATE)
    upright = engine.analyze_array(image, options).faces
    assert len(upright) == 1
    h, w = image.shape[:2]
    for degrees in (-20.0, 15.0):  # counter-clockwise as seen: roll grows by the turn
        turned = cv2.warpAffine(image, cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0), (w, h))
        faces = engine.analyze_array(turned, options).faces
        assert len(faces) == 1
        assert faces[0].pose.roll - upright[0].pose.roll == pytest.approx(degrees, abs=3.0)


def test_a_mirrored_face_turns_the_other_way(model_dir, shared_dir):
    # A film still with the head turned well to one side: mirrored, yaw and roll change sign and pitch stays, up
    # to YuNet's landmarks, which are not mirror-exact (docs/benchmarks.md: a few degrees on most faces).
    engine, options = get_engine(), default_options()
    crop = cv2.imread(str(shared_dir / "data" / "sfew_train" / "happiness" / "Bridesmaids_000059880_00000018.png"))
    image = engine_input(crop, 0.5)
    face = engine.analyze_array(image, options).faces[0].pose
    mirrored = engine.analyze_array(cv2.flip(image, 1), options).faces[0].pose
    assert face.yaw < -20 and mirrored.yaw > 20
    assert abs(face.yaw + mirrored.yaw) < 12
    assert abs(face.roll + mirrored.roll) < 5
    assert abs(face.pitch - mirrored.pitch) < 6


# --------------------------------------------------------------------------------------------------- quality
def test_quality_of_real_faces_and_of_the_same_faces_dark_blurred_and_small(model_dir, scenes):
    engine, options = get_engine(), default_options()
    image = cv2.imread(str(scenes / "fr_two_people.jpg"))
    faces = engine.analyze_array(image, options).faces
    assert len(faces) == 2
    for face in faces:
        q = face.quality
        assert q.reliable and q.brightness >= MIN_BRIGHTNESS and q.sharpness >= MIN_SHARPNESS
        assert q.size == min(face.box.width, face.box.height)

    dark = engine.analyze_array((image * 0.12).astype(np.uint8), options).faces
    assert dark and all(f.quality.brightness < MIN_BRIGHTNESS and not f.quality.reliable for f in dark)
    blurred = engine.analyze_array(cv2.GaussianBlur(image, (0, 0), 6), options).faces
    assert blurred and all(f.quality.sharpness < MIN_SHARPNESS and not f.quality.reliable for f in blurred)
    small = cv2.resize(image, None, fx=0.1, fy=0.1, interpolation=cv2.INTER_AREA)
    tiny = engine.analyze_array(small, options).faces
    assert tiny and all(f.quality.size < MIN_SIZE and not f.quality.reliable for f in tiny)
    for before, after in zip(sorted(faces, key=lambda f: f.box.x), sorted(tiny, key=lambda f: f.box.x), strict=True):
        assert after.quality.size == pytest.approx(before.quality.size / 10, abs=3)  # input pixels


def test_an_enlarged_small_image_reports_its_face_size_in_its_own_pixels(model_dir, shared_dir):
    crop = cv2.imread(str(shared_dir / "data" / "fer2013_publictest" / "ferplus_png" / "fer0028638.png"))
    assert crop.shape[:2] == (48, 48)
    faces = get_engine().analyze_array(crop, default_options()).faces
    assert len(faces) == 1 and 30 <= faces[0].quality.size <= 48


# ----------------------------------------------------------------------------------------- face inside a face
def test_drop_contained_keeps_separate_and_partly_overlapping_faces():
    face = [100, 100, 100, 120]
    inner = [120, 110, 50, 60]  # all inside the face
    neighbour = [170, 100, 100, 120]  # overlaps the face by 30 % of its area: another person
    rows = np.array([[*face, *[0] * 10, 0.9], [*neighbour, *[0] * 10, 0.8], [*inner, *[0] * 10, 0.7]],
                    dtype=np.float32)
    assert drop_contained(rows)[:, :4].tolist() == [face, neighbour]
    # A container that is itself unlikely to be a face (score < 0.5) hides nothing under it.
    weak = rows.copy()
    weak[0, 14] = 0.4
    weak[2, 14] = 0.3
    assert len(drop_contained(weak)) == 3


def test_no_second_face_inside_a_face_in_hamilton(model_dir, shared_dir, monkeypatch):
    engine, options = get_engine(), default_options()
    frame = _frame(shared_dir / "data" / "videos" / "fr_short_hamilton_clip.mp4", 153)
    faces = engine.analyze_array(frame, options).faces
    assert len(faces) == 1  # one man on stage
    monkeypatch.setattr(detector_module, "drop_contained", lambda rows: rows)
    assert len(engine.analyze_array(frame, options).faces) == 2  # a box on his eyes and forehead, before


def test_a_face_crop_gives_one_face_and_overlapping_people_stay_two(model_dir, shared_dir, monkeypatch):
    engine, options = get_engine(), default_options()
    crop = engine_input(cv2.imread(str(shared_dir / "data" / "fer2013_publictest" / "ferplus_png" / "fer0030388.png")))
    frame = _frame(shared_dir / "data" / "videos" / "fr_short_hamilton_clip.mp4", 225)
    assert len(engine.analyze_array(crop, options).faces) == 1
    kept = engine.analyze_array(frame, options).faces
    monkeypatch.setattr(detector_module, "drop_contained", lambda rows: rows)
    assert len(engine.analyze_array(crop, options).faces) == 2  # a box round one eye, before
    # Two audience members whose boxes overlap (about 30 % of the smaller one) remain two faces.
    assert len(kept) == len(engine.analyze_array(frame, options).faces) == 7
