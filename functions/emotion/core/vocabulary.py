"""The shared emotion vocabulary (FER+ names) and the synonyms accepted wherever labels are read."""

from __future__ import annotations

EMOTIONS: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)

_SYNONYMS = {
    "angry": "anger",
    "happy": "happiness",
    "sad": "sadness",
    "fearful": "fear",
    "scared": "fear",
    "calm": "neutral",
    "surprised": "surprise",
    "disgusted": "disgust",
    "contemptuous": "contempt",
}


def canonical_emotion(label: str) -> str:
    """Map a label or synonym (any case) onto the vocabulary; raise ValueError if unknown."""
    key = label.strip().lower()
    key = _SYNONYMS.get(key, key)
    if key not in EMOTIONS:
        raise ValueError(f"unknown emotion label {label!r}; expected one of {', '.join(EMOTIONS)} or a synonym")
    return key
