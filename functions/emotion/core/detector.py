"""YuNet face detection on onnxruntime at each image's own size, with YuNet's anchor-free decoding.

onnxruntime ran YuNet about twice as fast as ``cv2.FaceDetectorYN`` here with the same boxes (max
difference 1e-4 px on the scene photos; see the note in the README), so the engine uses this class.
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort

STRIDES = (8, 16, 32)
# The columns of a row holding x and y coordinates: the box's corner and the five landmarks.
X_COLUMNS = [0, 4, 6, 8, 10, 12]
Y_COLUMNS = [1, 5, 7, 9, 11, 13]
# A detection is dropped when more than CONTAINED of its box lies inside a higher-scoring kept box that is itself
# likely a face (score >= CONTAINER_SCORE). YuNet sometimes adds a smaller box on part of a face (eyes and nose)
# whose IoU with the face's own box is low enough to pass suppression by IoU, and it became a second face with its
# own emotions (3 of 275 Hamilton frames: 63-71 % inside). Chosen on WIDER val (docs/benchmarks.md): at 0.5 / any
# container, AP50 fell by 0.1; large low-scoring boxes over a crowd would hide the real small faces under them.
CONTAINED = 0.6
CONTAINER_SCORE = 0.5

def working_size(bgr: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The image downscaled (area averaging) to ``max_side`` if it is larger (0: no limit), and the scale used."""
    height, width = bgr.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return bgr, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA), scale


def to_input_pixels(faces: np.ndarray, scale: float) -> np.ndarray:
    """Rows found on a copy of an image resized by ``scale`` (:func:`working_size`, ``align.enlarged``), in the
    image's own pixels."""
    if scale != 1.0:
        faces[:, :14] /= scale
    return faces


def drop_contained(faces: np.ndarray, share: float = CONTAINED, container_score: float = CONTAINER_SCORE) -> np.ndarray:
    """Rows sorted by score, less each row whose box lies more than ``share`` inside a higher-scoring kept row
    that scores at least ``container_score``."""
    x0, y0 = faces[:, 0], faces[:, 1]
    x1, y1 = x0 + faces[:, 2], y0 + faces[:, 3]
    area = np.maximum(faces[:, 2] * faces[:, 3], 1e-9)
    containers: list[int] = []  # kept rows that may hide others
    kept: list[int] = []
    for i in range(len(faces)):
        if containers:
            k = np.asarray(containers)
            inter = (np.clip(np.minimum(x1[i], x1[k]) - np.maximum(x0[i], x0[k]), 0, None)
                     * np.clip(np.minimum(y1[i], y1[k]) - np.maximum(y0[i], y0[k]), 0, None))
            if float(inter.max()) > share * float(area[i]):
                continue
        kept.append(i)
        if faces[i, 14] >= container_score:
            containers.append(i)
    return faces[kept]

class YuNetDetector:
    """Faces as YuNet rows ``[x, y, w, h, re_x, re_y, le_x, le_y, n_x, n_y, mr_x, mr_y, ml_x, ml_y, score]``.

    Large images are downscaled to ``max_side`` for detection (YuNet sees faces of about 10-300 px) and
    the rows are mapped back to input pixels. The session must accept any input height and width (the
    fetch step derives such a graph from the fixed-size upstream file).
    """

    def __init__(self, session: ort.InferenceSession, score_threshold: float = 0.6, nms_threshold: float = 0.3,
                 top_k: int = 5000):
        self.session = session
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._input = session.get_inputs()[0].name
        self._outputs = [o.name for o in session.get_outputs()]

    def detect(self, bgr: np.ndarray, max_side: int = 0) -> np.ndarray:
        """(N, 15) float32 rows in input-image pixels, highest score first."""
        small, scale = working_size(bgr, max_side)
        return to_input_pixels(self._detect(small), scale)

    def _detect(self, bgr: np.ndarray) -> np.ndarray:
        height, width = bgr.shape[:2]
        # The network downsamples by 32: pad bottom/right to a multiple of it, as OpenCV's wrapper does.
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        padded = cv2.copyMakeBorder(bgr, 0, padded_h - height, 0, padded_w - width, cv2.BORDER_CONSTANT, value=0)
        blob = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32)
        outputs = dict(zip(self._outputs, self.session.run(None, {self._input: blob}), strict=True))
        rows = [self._decode(outputs, stride, padded_w // stride) for stride in STRIDES]
        return self.suppress(np.concatenate(rows) if rows else np.zeros((0, 15), np.float32))

    def suppress(self, faces: np.ndarray) -> np.ndarray:
        """Non-maximum suppression of overlapping rows; the survivors highest score first."""
        if len(faces) == 0:
            return np.zeros((0, 15), dtype=np.float32)
        keep = cv2.dnn.NMSBoxes(faces[:, :4].tolist(), faces[:, 14].tolist(), self.score_threshold,
                                self.nms_threshold, top_k=self.top_k)
        faces = faces[np.asarray(keep, dtype=np.int64).ravel()]
        return drop_contained(faces[np.argsort(-faces[:, 14], kind="stable")])

    def detect_rotated(self, bgr: np.ndarray, degrees: float, max_side: int = 0) -> np.ndarray:
        """:meth:`detect` on the image turned ``degrees`` counter-clockwise (on a canvas grown to hold all of it),
        the rows mapped back to the input's pixels: the landmarks exactly, the box kept upright and the face's
        size, centred where the turned box's centre falls. The turn also shrinks the canvas to ``max_side``, so
        it is one warp of the detector's working copy, never of a large original."""
        small, working_scale = working_size(bgr, max_side)
        height, width = small.shape[:2]
        cos, sin = abs(np.cos(np.radians(degrees))), abs(np.sin(np.radians(degrees)))
        grown_w, grown_h = height * sin + width * cos, height * cos + width * sin
        scale = min(1.0, max_side / max(grown_w, grown_h)) if max_side else 1.0
        canvas_w, canvas_h = max(1, round(grown_w * scale)), max(1, round(grown_h * scale))
        turn = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, scale)
        turn[:, 2] += (canvas_w - width) / 2, (canvas_h - height) / 2
        faces = self._detect(cv2.warpAffine(small, turn, (canvas_w, canvas_h)))
        back = cv2.invertAffineTransform(turn)

        def unturn(points: np.ndarray) -> np.ndarray:  # (..., 2) canvas pixels -> working-copy pixels
            return points @ back[:, :2].T + back[:, 2]

        faces[:, 4:14] = unturn(faces[:, 4:14].reshape(-1, 5, 2)).reshape(-1, 10)
        size = faces[:, 2:4] / scale
        faces[:, :2] = unturn(faces[:, :2] + faces[:, 2:4] / 2) - size / 2
        faces[:, 2:4] = size
        return to_input_pixels(faces, working_scale)

    def detect_framed(self, bgr: np.ndarray, pad: float, max_side: int = 0) -> np.ndarray:
        """:meth:`detect` on the image inside a black frame of ``pad`` x its size on every side, the rows mapped
        back to the input's pixels (boxes and landmarks may then reach past its edges). A face that fills a
        tight crop edge to edge has no context around it, and YuNet often misses it there. The framed image is
        detected at the input's own longest side (or ``max_side`` if smaller), so this costs about one
        :meth:`detect` of the input."""
        height, width = bgr.shape[:2]
        top, left = round(pad * height), round(pad * width)
        framed = cv2.copyMakeBorder(bgr, top, top, left, left, cv2.BORDER_CONSTANT, value=0)
        faces = self.detect(framed, min(max_side, max(height, width)) if max_side else max(height, width))
        faces[:, X_COLUMNS] -= left
        faces[:, Y_COLUMNS] -= top
        return faces

    def _decode(self, outputs: dict[str, np.ndarray], stride: int, cols: int) -> np.ndarray:
        """Anchor-free decoding of one stride: score = sqrt(cls * obj), box centre offsets, log sizes."""
        cls = np.clip(outputs[f"cls_{stride}"][0, :, 0], 0, 1)
        obj = np.clip(outputs[f"obj_{stride}"][0, :, 0], 0, 1)
        scores = np.sqrt(cls * obj)
        keep = np.nonzero(scores >= self.score_threshold)[0]
        col = (keep % cols).astype(np.float32)[:, None]
        row = (keep // cols).astype(np.float32)[:, None]
        box = outputs[f"bbox_{stride}"][0, keep]
        kps = outputs[f"kps_{stride}"][0, keep]
        centre_x = (col[:, 0] + box[:, 0]) * stride
        centre_y = (row[:, 0] + box[:, 1]) * stride
        w = np.exp(box[:, 2]) * stride
        h = np.exp(box[:, 3]) * stride
        points = np.empty_like(kps)
        points[:, 0::2] = (kps[:, 0::2] + col) * stride
        points[:, 1::2] = (kps[:, 1::2] + row) * stride
        return np.column_stack([centre_x - w / 2, centre_y - h / 2, w, h, points, scores[keep]]).astype(np.float32)
