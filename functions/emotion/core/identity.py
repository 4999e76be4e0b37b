"""Face identity embeddings (SFace): which faces in a video belong to the same person.

SFace (OpenCV zoo, ``face_recognition_sface_2021dec_int8bq.onnx``; MANIFEST section 4) maps a face aligned
to the same 5-point 112x112 ArcFace template the expression model uses (:mod:`emotion.core.align`) to a
128-d vector; two faces of one person have a high cosine. The graph takes **RGB, raw 0-255** (it computes
(x - 127.5) / 128 itself). The shipped file does not load in onnxruntime, so the engine runs a derived graph
built at fetch time (``emotion.model.derived``: stray inputs dropped, blocked int8 weights folded to fp32,
PRelu rewritten exactly).

:func:`identifiable` is the gate that decides which faces are worth embedding: small, dark, blurred or turned
faces give embeddings that match anybody, so they are not used to link tracks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import onnxruntime as ort

from emotion.core.align import align_face
from emotion.core.errors import ModelUnavailable
from emotion.core.facemeasures import INNER, brightness_sharpness
from emotion.core.manifest import ModelSpec, load_manifest
from emotion.core.model_files import runnable_model_path
from emotion.core.runtime import create_session, resolve_providers
from emotion.settings import get_settings

DIM = 128


@dataclass(frozen=True)
class FaceGate:
    """Which faces are identifiable. Defaults set from the faces of the dev clips: the blurred crest of
    fp_video scores sharpness 3-4, its real faces 12-120; Hamilton's audience in the dark has luminance 9-40."""

    min_eye_distance: float = 14.0  # px between the eye landmarks; SFace's template has 35
    min_score: float = 0.75  # detector score
    max_yaw: float = 0.35  # sideways nose offset from the eye midpoint / eye distance: 0 frontal, ~1 in profile
    min_luminance: float = 45.0  # mean grey level of the aligned face: dark audience faces match anybody
    min_sharpness: float = 10.0  # variance of the Laplacian of the aligned face: blur

    def geometry(self, face: np.ndarray) -> float:
        """0 when the detection's size, score or pose rule it out, else a quality in (0, 1] to rank faces."""
        right_eye, left_eye, nose = face[4:6], face[6:8], face[8:10]
        eye_distance = float(np.linalg.norm(left_eye - right_eye))
        if eye_distance < self.min_eye_distance or float(face[14]) < self.min_score:
            return 0.0
        # The nose sits below the eye midpoint on a frontal face; only its sideways offset measures yaw.
        axis = (left_eye - right_eye) / eye_distance
        yaw = abs(float(np.dot(nose - (left_eye + right_eye) / 2, axis))) / eye_distance
        if yaw > self.max_yaw:
            return 0.0
        size = min(1.0, eye_distance / 35.0)
        return float(face[14]) * size * (1.0 - yaw)

    def pixels(self, aligned_rgb: np.ndarray) -> bool:
        """The aligned face is bright and sharp enough to identify."""
        brightness, sharpness = brightness_sharpness(cv2.cvtColor(aligned_rgb, cv2.COLOR_RGB2GRAY)[INNER])
        return brightness >= self.min_luminance and sharpness >= self.min_sharpness


def identifiable(gate: FaceGate, bgr: np.ndarray, face: np.ndarray) -> tuple[float, np.ndarray | None]:
    """(quality, aligned RGB 112x112 uint8) of a face worth embedding, else (0, None)."""
    quality = gate.geometry(face)
    if quality <= 0:
        return 0.0, None
    aligned = aligned_rgb(bgr, face)
    return (quality, aligned) if gate.pixels(aligned) else (0.0, None)


def aligned_rgb(bgr: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The face warped onto the 112x112 template, RGB uint8 (what :meth:`FaceEmbedder.embed_aligned` takes)."""
    return cv2.cvtColor(align_face(bgr, face[4:14].reshape(5, 2)), cv2.COLOR_BGR2RGB)


class FaceEmbedder:
    """SFace on one onnxruntime session: aligned faces → L2-normalised 128-d embeddings, batched."""

    max_batch = 8  # as for the classifiers: larger batches were no faster per face and cost memory

    def __init__(self, spec: ModelSpec, session: ort.InferenceSession):
        self.spec = spec
        self.session = session
        self._input = session.get_inputs()[0].name

    @property
    def version(self) -> str:
        return self.spec.version

    def embed_aligned(self, faces: np.ndarray) -> np.ndarray:
        """(N, 112, 112, 3) RGB uint8 → (N, 128) float32 unit vectors."""
        if len(faces) == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        batch = np.ascontiguousarray(faces.transpose(0, 3, 1, 2), dtype=np.float32)  # raw 0..255, NCHW
        parts = [self.session.run(None, {self._input: batch[i : i + self.max_batch]})[0]
                 for i in range(0, len(batch), self.max_batch)]
        return normalise(np.concatenate(parts).reshape(len(batch), -1))

    def embed(self, bgr: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """Embeddings of YuNet rows ``faces`` (N, 15) on one BGR image."""
        if len(faces) == 0:
            return np.zeros((0, DIM), dtype=np.float32)
        return self.embed_aligned(np.stack([aligned_rgb(bgr, face) for face in faces]))


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def identity_model() -> ModelSpec:
    names = load_manifest().names("identity")
    if not names:
        raise ModelUnavailable("the manifest has no identity model")
    return load_manifest().get(names[0])


def get_embedder(threads: int | None = None) -> FaceEmbedder:
    """The process's SFace embedder (built once per thread count), verified like the other models."""
    settings = get_settings()
    return _embedder_for(settings.intra_op_threads if threads is None else threads)


@lru_cache(maxsize=2)
def _embedder_for(threads: int) -> FaceEmbedder:
    settings = get_settings()
    spec = identity_model()
    session = create_session(runnable_model_path(spec, settings.model_dir), resolve_providers(settings.providers),
                             threads)
    return FaceEmbedder(spec, session)
