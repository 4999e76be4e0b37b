"""How a labelled face crop becomes an engine input, and which groups are held out; shared by the eval tool
(``emotion eval-classify``) and the training cache (``emotion.model.training.faces``) so both see the same faces.

Torch-free (OpenCV and NumPy only).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from emotion.core.align import UPSCALE_RULE, enlarged, upscale_factor

__all__ = ["UPSCALE_RULE", "engine_input", "upscale_factor", "validation_groups"]

VALIDATION_EVERY = 5  # every 5th group (sorted by name) is held out for validation


def validation_groups(values: Sequence[str], every: int = VALIDATION_EVERY) -> set[str]:
    """The held-out groups: the distinct values sorted by name, every ``every``-th from the first.

    SFEW 2.0 train split by ``movie``: 10 of its 50 films (183 of 856 crops) are validation; training leaves
    exactly these out.
    """
    return set(sorted(set(values))[::every])


def engine_input(crop: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """The image sent to the engine: the crop enlarged as the engine enlarges small images
    (:func:`emotion.core.align.enlarged`; the engine then leaves it as it is), with a black border of ``pad`` x
    its size on every side when ``pad`` > 0 (a face in a photo rather than a face crop: the border goes round the
    enlarged crop, so the face is as large as when sent alone)."""
    crop, _ = enlarged(crop)
    if pad > 0:
        h, w = crop.shape[:2]
        py, px = int(round(pad * h)), int(round(pad * w))
        crop = cv2.copyMakeBorder(crop, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return crop
