"""Draw boxes, landmarks and the dominant emotion on an image, legible at any size."""

from __future__ import annotations

import cv2
import numpy as np

from emotion.core.results import AnalysisResult, Face

# BGR colours per emotion, picked to stay distinct on photos.
COLOURS = {
    "happiness": (80, 200, 60),
    "neutral": (200, 200, 200),
    "surprise": (0, 200, 255),
    "sadness": (220, 120, 40),
    "anger": (40, 40, 230),
    "disgust": (40, 140, 90),
    "fear": (180, 60, 160),
    "contempt": (120, 80, 200),
}


def annotate(bgr: np.ndarray, result: AnalysisResult, labels: list[str] | None = None) -> np.ndarray:
    """A copy of ``bgr`` with each face boxed and labelled ("happiness 91%" or a per-face label)."""
    out = bgr.copy()
    height, width = out.shape[:2]
    # Scale strokes and text with the image so labels stay readable on thumbnails and 4K frames alike.
    unit = max(1.0, max(height, width) / 800.0)
    for i, face in enumerate(result.faces):
        text = labels[i] if labels else _label(face)
        draw_face(out, face.box.x, face.box.y, face.box.width, face.box.height, text,
                  COLOURS.get(face.dominant_emotion, (255, 255, 255)), unit)
        for point in face.landmarks.model_dump().values():
            cv2.circle(out, (int(point[0]), int(point[1])), max(1, int(2 * unit)), (0, 255, 255), -1, cv2.LINE_AA)
    return out


def _label(face: Face) -> str:
    return f"{face.dominant_emotion} {face.emotions[face.dominant_emotion] * 100:.0f}%"


def draw_face(out: np.ndarray, x: int, y: int, w: int, h: int, text: str, colour: tuple[int, int, int],
              unit: float) -> None:
    """One box with a filled label tab above it (or inside, at the top edge)."""
    thickness = max(1, int(round(2 * unit)))
    cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness, cv2.LINE_AA)
    font_scale = 0.5 * unit
    (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    pad = max(2, int(3 * unit))
    top = y - th - baseline - 2 * pad
    if top < 0:
        top = y
    cv2.rectangle(out, (x, top), (x + tw + 2 * pad, top + th + baseline + 2 * pad), colour, -1)
    cv2.putText(out, text, (x + pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), thickness,
                cv2.LINE_AA)
