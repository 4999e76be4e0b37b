"""Model wrappers on the real ONNX files: detector fidelity, classifier batching and probabilities."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion.core.engine import get_engine
from emotion.core.manifest import load_manifest
from emotion.core.model_files import verified_model_path
from emotion.core.vocabulary import EMOTIONS


@pytest.fixture(scope="module")
def two_people(scenes):
    return cv2.imread(str(scenes / "fr_two_people.jpg"))


def test_yunet_on_onnxruntime_matches_opencv_wrapper(model_dir, scenes):
    """Our decoding of the raw YuNet outputs gives OpenCV's FaceDetectorYN boxes and landmarks."""
    engine = get_engine()
    spec = load_manifest().get("yunet")
    for name in ("fr_two_people.jpg", "fp_multiface.jpg", "fa_bbt3.jpg"):
        image = cv2.imread(str(scenes / name))
        ours = engine.detector.detect(image)
        reference = cv2.FaceDetectorYN.create(str(verified_model_path(spec, model_dir)), "",
                                              (image.shape[1], image.shape[0]), 0.6, 0.3, 5000)
        _, theirs = reference.detect(image)
        theirs = theirs[np.argsort(-theirs[:, 14])]
        assert ours.shape == theirs.shape
        assert np.abs(ours - theirs).max() < 0.05


def test_detector_downscales_and_maps_back(model_dir, two_people):
    engine = get_engine()
    full = engine.detector.detect(two_people)
    small = engine.detector.detect(two_people, max_side=640)
    assert len(full) == len(small) == 2
    assert np.abs(full[:, :4] - small[:, :4]).max() < 12  # same faces, in input pixels


@pytest.mark.parametrize("name", ["mobilefacenet", "mini_xception"])
def test_classifier_batch_equals_one_by_one(model_dir, two_people, name):
    engine = get_engine(name)
    faces = engine.detector.detect(two_people)
    batch = engine.classifier.classify(two_people, faces)
    single = np.concatenate([engine.classifier.classify(two_people, f[None]) for f in faces])
    assert batch.shape == (2, 7)
    assert np.allclose(batch, single, atol=1e-5)
    assert np.allclose(batch.sum(axis=1), 1.0)
    assert set(engine.classifier.labels) <= set(EMOTIONS) and "contempt" not in engine.classifier.labels


def test_mobilefacenet_reads_a_smile(model_dir, two_people):
    engine = get_engine("mobilefacenet")
    faces = engine.detector.detect(two_people)
    left = faces[np.argmin(faces[:, 0])]
    probs = engine.classifier.classify(two_people, left[None])[0]
    assert engine.classifier.labels[int(np.argmax(probs))] == "happiness"


def test_no_faces_classifies_nothing(model_dir):
    engine = get_engine()
    blank = np.full((200, 300, 3), 127, np.uint8)
    assert len(engine.detector.detect(blank)) == 0
    assert engine.classifier.classify(blank, np.zeros((0, 15), np.float32)).shape == (0, len(engine.classifier.labels))


def test_engines_are_kept_per_classifier_and_thread_count() -> None:
    from emotion.settings import get_settings

    default = get_settings().intra_op_threads
    assert get_engine() is get_engine(threads=default) is get_engine(get_settings().classifier, threads=default)
    single = get_engine(threads=1 if default != 1 else 2)  # the video pipeline's single-threaded sessions
    assert single is not get_engine() and single is get_engine(threads=1 if default != 1 else 2)


def test_the_default_classifier_is_the_manifests_and_the_others_stay_selectable(model_dir, two_people, monkeypatch):
    from emotion.settings import Settings

    manifest = load_manifest()
    assert Settings().classifier == manifest.default_classifier == "mobilefacenet8"
    monkeypatch.setenv("EMOTION_CLASSIFIER", "ferplus")
    assert Settings().classifier == "ferplus"
    default = get_engine()
    assert list(default.classifier.labels) == list(EMOTIONS)  # all 8, contempt included
    faces = default.detector.detect(two_people)
    for name in manifest.names("classifier"):
        probs = get_engine(name).classifier.classify(two_people, faces)
        assert probs.shape == (2, len(manifest.get(name).labels)) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_the_in_the_wild_classifier_is_selectable_with_its_fp32_form_and_its_terms(model_dir, two_people):
    manifest = load_manifest()
    wild = manifest.get("mobilefacenet8_wild")
    assert "mobilefacenet8_wild" in manifest.names("classifier") and manifest.default_classifier != wild.name
    assert list(wild.labels) == list(EMOTIONS) and wild.precision == "int8" and wild.output == "logits"
    assert wild.preprocessing == manifest.get("mobilefacenet8").preprocessing  # same network and input
    assert wild.fp32_form == "mobilefacenet8_wild_fp32"
    assert manifest.get("mobilefacenet8_wild_fp32").form_of == wild.name
    assert "AffectNet" in wild.licence and "research use only" in wild.licence
    engine = get_engine("mobilefacenet8_wild")
    probs = engine.classifier.classify(two_people, engine.detector.detect(two_people))
    assert probs.shape == (2, 8) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_no_shipped_classifier_calls_the_faces_of_ordinary_photos_contempt(model_dir, scenes):
    """A shortcut guard: in training data where only the contempt faces keep their own photo's background, a network
    can learn "a whole, seamless photo means contempt". The faces of the scene photos (35 faces of people talking,
    smiling, posing) are nearly all not contempt; a candidate trained that way called 21 of them contempt."""
    manifest = load_manifest()
    paths = sorted(scenes.glob("*.jpg"))
    images = [cv2.imread(str(p)) for p in paths]
    for name in manifest.names("classifier"):
        if "contempt" not in manifest.get(name).labels:
            continue
        engine = get_engine(name)
        labels = list(engine.classifier.labels)
        calls = [labels[int(i)] for image in images for i in
                 engine.classifier.classify(image, engine.detector.detect(image)).argmax(1)]
        assert len(calls) >= 30 and calls.count("contempt") <= 3, (name, calls.count("contempt"), len(calls))
