"""How a labelled face crop becomes an engine input, and which groups are held out; shared by the eval tool
(``emotion eval-classify``) and the training cache (``emotion.model.training.faces``) so both see the same faces.

Torch-free (OpenCV and NumPy only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

# Crops smaller than the classifiers' own input are too small for YuNet's landmarks: such a crop is enlarged
# (bicubic) by the smallest whole factor that brings its short side to UPSCALE_TO. The rule depends only on
# the crop's size, never on the data set: FER's 48 px crops get x6 (FER+ PNGs with MobileFaceNet: x4 72.7%,
# x6 73.7%); SFEW's 143x181 film crops stay as they are (the old x6 for every crop pushed them past the
# ~300 px faces YuNet is made for: 25.1% instead of 43.5%).
UPSCALE_BELOW = 112
UPSCALE_TO = 256
UPSCALE_RULE = f"short side < {UPSCALE_BELOW} px: x ceil({UPSCALE_TO} / short side), bicubic"

VALIDATION_EVERY = 5  # every 5th group (sorted by name) is held out for validation


def validation_groups(values: Sequence[str], every: int = VALIDATION_EVERY) -> set[str]:
    """The held-out groups: the distinct values sorted by name, every ``every``-th from the first.

    SFEW 2.0 train split by ``movie``: 10 of its 50 films (183 of 856 crops) are validation; training leaves
    exactly these out.
    """
    return set(sorted(set(values))[::every])


def upscale_factor(height: int, width: int) -> int:
    """1, or the whole factor that brings a short side under UPSCALE_BELOW up to at least UPSCALE_TO."""
    short = min(height, width)
    return 1 if short >= UPSCALE_BELOW else math.ceil(UPSCALE_TO / max(short, 1))


def engine_input(crop: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """The image sent to the engine: the crop (enlarged if too small), with a black border of ``pad`` x its
    size on every side when ``pad`` > 0 (a face in a photo rather than a face crop)."""
    k = upscale_factor(*crop.shape[:2])
    if k > 1:
        crop = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    if pad > 0:
        h, w = crop.shape[:2]
        py, px = int(round(pad * h)), int(round(pad * w))
        crop = cv2.copyMakeBorder(crop, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    return crop
