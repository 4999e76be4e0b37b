"""Facial-emotion recognition: every face in an image or video, with the probability of each emotion.

>>> import emotion                                      # doctest: +SKIP
>>> result = emotion.analyze("photo.jpg")               # doctest: +SKIP
>>> [face.dominant_emotion for face in result.faces]    # doctest: +SKIP

The names below are imported on first use, so ``import emotion`` stays light (no onnxruntime, OpenCV or
pydantic until an analysis needs them).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Analyzer": "emotion.analyzer",
    "analyze": "emotion.analyzer",
    "analyze_video": "emotion.analyzer",
    "Client": "emotion.client",
    "CollectionResult": "emotion.client",
    "CollectionImage": "emotion.client",
    "ServiceError": "emotion.client",
    "AnalysisResult": "emotion.core.results",
    "Face": "emotion.core.results",
    "VideoResult": "emotion.core.video",
    "EmotionError": "emotion.core.errors",
    "EmptyInput": "emotion.core.errors",
    "UndecodableImage": "emotion.core.errors",
    "UnsupportedMediaType": "emotion.core.errors",
    "ImageTooLarge": "emotion.core.errors",
    "ImageTooSmall": "emotion.core.errors",
    "BadParameter": "emotion.core.errors",
    "InputNotFound": "emotion.core.errors",
    "ModelUnavailable": "emotion.core.errors",
    "UnsupportedVideo": "emotion.core.errors",
    "EMOTIONS": "emotion.core.vocabulary",
}

__all__ = ["__version__", *_EXPORTS]

def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'emotion' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
