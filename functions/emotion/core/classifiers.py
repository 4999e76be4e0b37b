"""Emotion classifiers: one class per preprocessing scheme, labels mapped onto the shared vocabulary."""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np
import onnxruntime as ort

from emotion.core.align import align_face, crop_box, square_crop
from emotion.core.manifest import ModelSpec
from emotion.core.vocabulary import canonical_emotion


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _interpolation(image: np.ndarray, size: int) -> int:
    """Area averaging when shrinking (no aliasing from large face boxes), bilinear when enlarging."""
    return cv2.INTER_AREA if min(image.shape[:2]) > size else cv2.INTER_LINEAR


class EmotionClassifier(ABC):
    """preprocess (faces → batch) / infer (one session.run) / postprocess (→ probabilities)."""

    # Larger batches were no faster per face (MobileFaceNet: 5.7-9.5 ms/face at 48 vs 4.2-6.2 in chunks of 8)
    # and their activations grew a video worker's peak RSS to 600 MB.
    max_batch = 8

    def __init__(self, spec: ModelSpec, session: ort.InferenceSession):
        self.spec = spec
        self.session = session
        self.labels = [canonical_emotion(label) for label in spec.labels]
        model_input = session.get_inputs()[0]
        self._input_name = model_input.name
        # The staged MobileFaceNet has batch fixed at 1; a graph with a symbolic batch takes all faces at once.
        self._fixed_batch = isinstance(model_input.shape[0], int)

    @property
    def name(self) -> str:
        return self.spec.name

    @abstractmethod
    def preprocess_face(self, bgr: np.ndarray, face: np.ndarray) -> np.ndarray:
        """One face (a YuNet row: box, 5 landmarks, score) → one network input without the batch axis."""

    def preprocess(self, bgr: np.ndarray, faces: np.ndarray) -> np.ndarray:
        return np.stack([self.preprocess_face(bgr, face) for face in faces]).astype(np.float32, copy=False)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """One session.run per chunk of at most ``max_batch`` faces (1 for a fixed-batch graph)."""
        step = 1 if self._fixed_batch else self.max_batch
        parts = [self.session.run(None, {self._input_name: batch[i : i + step]})[0] for i in range(0, len(batch), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        raw = raw.astype(np.float64).reshape(len(raw), -1)[:, : len(self.labels)]
        probs = softmax(raw) if self.spec.output == "logits" else raw / raw.sum(axis=1, keepdims=True)
        return probs

    def classify(self, bgr: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(N, len(labels)) probabilities for the N faces, all in one batch."""
        if len(faces) == 0:
            return np.zeros((0, len(self.labels)))
        return self.postprocess(self.infer(self.preprocess(bgr, faces)))


class AlignedRGB112(EmotionClassifier):
    """OpenCV-zoo MobileFaceNet: 5-point similarity alignment to 112x112, RGB, [-1, 1], NCHW."""

    def preprocess_face(self, bgr: np.ndarray, face: np.ndarray) -> np.ndarray:
        aligned = align_face(bgr, face[4:14].reshape(5, 2))
        rgb = cv2.cvtColor(aligned, cv2.COLOR_BGR2RGB).astype(np.float32)
        return ((rgb / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


class CropGray(EmotionClassifier):
    """Grayscale box crop with a margin, resized, scaled to [-1, 1] (mini-Xception: 64x64 NHWC)."""

    size = 64
    margin = 0.1  # YuNet boxes are tighter than the Haar boxes upstream expanded by (20, 40) px
    channels_last = True

    def preprocess_face(self, bgr: np.ndarray, face: np.ndarray) -> np.ndarray:
        crop = crop_box(bgr, face[:4], self.margin)
        gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        resized = cv2.resize(gray, (self.size, self.size), interpolation=_interpolation(gray, self.size))
        resized = resized.astype(np.float32)
        scaled = (resized / 255.0 - 0.5) * 2.0
        return scaled[:, :, None] if self.channels_last else scaled[None, :, :]


def square_gray48(bgr: np.ndarray, box: np.ndarray) -> np.ndarray:
    """``crop_gray48_ferplus``: square grey crop around the box, 48x48, [0, 1], shape [1, 48, 48]."""
    gray = cv2.cvtColor(square_crop(bgr, np.asarray(box, dtype=np.float64)), cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, (48, 48), interpolation=_interpolation(gray, 48))
    return (small.astype(np.float32) / 255.0)[None]


class SquareGray48(EmotionClassifier):
    """Our FER+ model (model/MODEL_CARD_ferplus.md): see :func:`square_gray48`."""

    def preprocess_face(self, bgr: np.ndarray, face: np.ndarray) -> np.ndarray:
        return square_gray48(bgr, face[:4])


PREPROCESSORS: dict[str, type[EmotionClassifier]] = {
    "align112_rgb_pm1": AlignedRGB112,
    "crop_gray64_pm1": CropGray,
    "crop_gray48_ferplus": SquareGray48,
}


def classifier_for(spec: ModelSpec, session: ort.InferenceSession) -> EmotionClassifier:
    try:
        cls = PREPROCESSORS[spec.preprocessing]
    except KeyError as exc:
        raise ValueError(f"model {spec.name}: unknown preprocessing {spec.preprocessing!r}") from exc
    return cls(spec, session)
