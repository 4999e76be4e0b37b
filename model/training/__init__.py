"""Training tooling for the project's own FER+ emotion classifier.

Torch is imported only by the training / export modules (``net``, ``augment``, ``train``, ``export``);
``onnx_meta`` and ``data`` stay torch-free. Nothing under ``functions/`` imports this package.

Entry points::

    python -m model.training.train CONFIG.json
    python -m model.training.export --checkpoint RUN/best.pt --out model/ferplus.onnx
"""

VOCABULARY: tuple[str, ...] = (
    "neutral",
    "happiness",
    "surprise",
    "sadness",
    "anger",
    "disgust",
    "fear",
    "contempt",
)
"""FER+ emotion vocabulary, in the FER+ vote-column order (= the model's output order)."""

SYNONYMS: dict[str, str] = {
    "angry": "anger",
    "happy": "happiness",
    "sad": "sadness",
    "fearful": "fear",
    "scared": "fear",
    "surprised": "surprise",
    "disgusted": "disgust",
    "contemptuous": "contempt",
    "calm": "neutral",
}

PREPROCESSING_NAME = "crop_gray48_ferplus"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SIZE = 48


def canonical_label(name: str) -> str | None:
    """Map a label or synonym (case-insensitive) onto the vocabulary; ``None`` if unknown."""
    key = name.strip().lower()
    if key in VOCABULARY:
        return key
    return SYNONYMS.get(key)
