"""YuNet face detection through ``cv2.FaceDetectorYN`` (OpenCV DNN reshapes the ONNX to each image size)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np


class YuNetDetector:
    """Faces as YuNet rows ``[x, y, w, h, re_x, re_y, le_x, le_y, n_x, n_y, mr_x, mr_y, ml_x, ml_y, score]``.

    Large images are downscaled to ``max_side`` for detection (YuNet sees faces of about 10-300 px) and
    the rows are mapped back to input pixels.
    """

    def __init__(self, model_path: Path, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000):
        self._net = cv2.FaceDetectorYN.create(str(model_path), "", (320, 320), score_threshold, nms_threshold, top_k)
        self._size: tuple[int, int] = (320, 320)
        self._lock = threading.Lock()  # the cv2 object keeps per-call state: one detection at a time

    def detect(self, bgr: np.ndarray, max_side: int = 0) -> np.ndarray:
        """(N, 15) float32 rows in input-image pixels, highest score first."""
        height, width = bgr.shape[:2]
        scale = 1.0
        if max_side and max(height, width) > max_side:
            scale = max_side / max(height, width)
            bgr = cv2.resize(bgr, (max(1, round(width * scale)), max(1, round(height * scale))),
                             interpolation=cv2.INTER_AREA)
        size = (bgr.shape[1], bgr.shape[0])
        with self._lock:
            if size != self._size:
                self._net.setInputSize(size)
                self._size = size
            _, faces = self._net.detect(bgr)
        if faces is None or len(faces) == 0:
            return np.zeros((0, 15), dtype=np.float32)
        faces = faces.astype(np.float32)
        if scale != 1.0:
            faces[:, :14] /= scale
        return faces[np.argsort(-faces[:, 14])]
