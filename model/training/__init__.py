"""Training tooling for the project's own FER+ emotion classifier.

Torch is imported only by the training / export modules (``net``, ``augment``, ``train``, ``export``);
``onnx_meta`` and ``data`` stay torch-free. Nothing under ``functions/`` imports this package.

Entry points::

    python -m emotion.model.training.train CONFIG.json
    python -m emotion.model.training.export --checkpoint RUN/best.pt --out model/ferplus.onnx
"""

from emotion.core.vocabulary import EMOTIONS, canonical_emotion

VOCABULARY = EMOTIONS  # FER+ vote-column order = the model's output order

PREPROCESSING_NAME = "crop_gray48_ferplus"
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
INPUT_SIZE = 48


def canonical_label(name: str) -> str | None:
    """Map a label or synonym (case-insensitive) onto the vocabulary; ``None`` if unknown."""
    try:
        return canonical_emotion(name)
    except ValueError:
        return None
