"""SFace identity embeddings: the fetch-time folded graph, its verification, the embedder and the face gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from emotion.core.engine import default_options, get_engine
from emotion.core.errors import ModelUnavailable
from emotion.core.identity import DIM, FaceGate, get_embedder, identifiable, identity_model
from emotion.core.model_files import derived_path, derived_sidecar, runnable_model_path
from emotion.model.derived import build_derived


@pytest.fixture(scope="module")
def embedder(model_dir: Path):
    return get_embedder()


@pytest.fixture(scope="module")
def multiface(scenes: Path, model_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    image = cv2.imread(str(scenes / "fp_multiface.jpg"))
    return image, get_engine().detect(image, default_options())


def _frames(clip: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(clip))
    out = {}
    for index in range(max(wanted) + 1):
        ok, frame = cap.read()
        assert ok
        if index in wanted:
            out[index] = frame
    cap.release()
    return out


def test_folded_graph_matches_the_shipped_one(model_dir: Path, embedder, multiface) -> None:
    """The shipped file only fails to load because of its stray inputs; without them it runs (slowly), and
    the folded graph must give the same embeddings on real faces."""
    import onnx

    spec = identity_model()
    shipped = onnx.load(str(model_dir / spec.file))
    used = {name for node in shipped.graph.node for name in node.input}
    initialisers = {t.name for t in shipped.graph.initializer}
    with pytest.raises(Exception, match="(?i)required inputs|missing"):
        ort.InferenceSession(shipped.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"data": np.zeros((1, 3, 112, 112), np.float32)})
    keep = [i for i in shipped.graph.input if i.name in used and i.name not in initialisers]
    del shipped.graph.input[:]
    shipped.graph.input.extend(keep)
    reference = ort.InferenceSession(shipped.SerializeToString(), providers=["CPUExecutionProvider"])

    image, faces = multiface
    from emotion.core.identity import aligned_rgb

    crops = np.stack([aligned_rgb(image, face) for face in faces])
    batch = crops.transpose(0, 3, 1, 2).astype(np.float32)
    expected = np.concatenate([reference.run(None, {"data": batch[i : i + 1]})[0] for i in range(len(batch))])
    folded = ort.InferenceSession(str(derived_path(spec, model_dir)), providers=["CPUExecutionProvider"])
    got = folded.run(None, {"data": batch})[0]  # the folded graph takes a batch
    assert got.shape == (len(faces), DIM)
    assert np.abs(got - expected).max() < 1e-4


def test_embeddings_are_unit_vectors_and_batching_changes_nothing(embedder, multiface) -> None:
    image, faces = multiface
    assert len(faces) == 6
    batched = embedder.embed(image, faces)
    assert batched.shape == (6, DIM) and batched.dtype == np.float32
    assert np.allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    one_by_one = np.concatenate([embedder.embed(image, faces[i : i + 1]) for i in range(len(faces))])
    assert np.abs(batched - one_by_one).max() < 1e-5
    assert embedder.embed(image, faces[:0]).shape == (0, DIM)


def test_same_person_across_a_cut_agrees_different_people_do_not(embedder, multiface, shared_dir: Path) -> None:
    """The Hamilton performer in shot 1 (frames 6, 12) and shot 3 (frames 150, 180): per-track means agree
    above the 0.45 link threshold; the six different people of fp_multiface stay below it."""
    image, faces = multiface
    others = embedder.embed(image, faces)
    similarity = others @ others.T
    np.fill_diagonal(similarity, -1)
    assert similarity.max() < 0.45

    frames = _frames(shared_dir / "data" / "videos" / "fr_short_hamilton_clip.mp4", {6, 12, 150, 180})
    detect = get_engine().detect
    vectors = {}
    for index, frame in frames.items():
        found = detect(frame, default_options())
        biggest = found[int(np.argmax(found[:, 2]))]
        vectors[index] = embedder.embed(frame, biggest[None])[0]
    shot1 = vectors[6] + vectors[12]
    shot3 = vectors[150] + vectors[180]
    cosine = float(shot1 @ shot3 / np.linalg.norm(shot1) / np.linalg.norm(shot3))
    assert cosine > 0.45
    assert max(float(vectors[6] @ v) for v in others) < 0.3  # and he is none of the people in the photo


def test_gate_refuses_small_dark_blurred_and_turned_faces(multiface) -> None:
    image, faces = multiface
    gate = FaceGate()
    face = faces[1]
    quality, crop = identifiable(gate, image, face)
    assert quality > 0 and crop is not None and crop.shape == (112, 112, 3)

    dark = (image * 0.15).astype(np.uint8)
    assert identifiable(gate, dark, face) == (0.0, None)
    blurred = cv2.GaussianBlur(image, (0, 0), 6)
    assert identifiable(gate, blurred, face)[1] is None

    small = cv2.resize(image, None, fx=0.2, fy=0.2, interpolation=cv2.INTER_AREA)
    scaled = face.copy()
    scaled[:14] *= 0.2
    assert gate.geometry(scaled) == 0.0  # eyes a few pixels apart
    assert identifiable(gate, small, scaled) == (0.0, None)

    turned = face.copy()
    eye_distance = float(np.linalg.norm(face[6:8] - face[4:6]))
    turned[8] += 0.6 * eye_distance  # the nose far to one side: a profile
    assert gate.geometry(turned) == 0.0


def test_derived_graph_is_verified_before_loading(model_dir: Path, tmp_path: Path) -> None:
    spec = identity_model()
    shutil.copy(model_dir / spec.file, tmp_path / spec.file)
    target = build_derived(spec, tmp_path)
    assert target is not None and runnable_model_path(spec, tmp_path) == target
    record = json.loads(derived_sidecar(target).read_text())
    assert record["source_sha256"] == spec.sha256 and record["transform"] == "folded"
    # Built again from the same source: the same bytes (the sidecar's sha256 can be trusted across builds).
    assert record["sha256"] == json.loads(derived_sidecar(derived_path(spec, model_dir)).read_text())["sha256"]

    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ModelUnavailable, match="derived"):
        runnable_model_path(spec, tmp_path)
