"""Reference implementation of the ``crop_gray48_ferplus`` preprocessing (torch-free: numpy + OpenCV).

FER2013 / FER+ crops are square, about as tall as a YuNet face box and centred on it: on 389 PublicTest crops
(upscaled x3 into a gray canvas) YuNet's box measured median 0.82 x 1.02 of the crop side (w x h), centred
within 1-2% of the side. So the crop is the square of side ``BOX_SCALE * max(w, h)`` around the box centre.
"""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 48
BOX_SCALE = 1.0


def square_crop(image: np.ndarray, box: np.ndarray | list[float], scale: float = BOX_SCALE) -> np.ndarray:
    """Square of side ``scale * max(w, h)`` centred on the box (x, y, w, h); edges replicated outside the image."""
    x, y, w, h = (float(v) for v in box[:4])
    side = max(1, int(round(scale * max(w, h, 1.0))))
    x0 = int(round(x + w / 2 - side / 2))
    y0 = int(round(y + h / 2 - side / 2))
    # an integer translation: an exact copy inside the image, replicated edges outside it
    m = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])
    return cv2.warpAffine(image, m, (side, side), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def crop_gray48_ferplus(bgr: np.ndarray, box: np.ndarray | list[float]) -> np.ndarray:
    """One face -> float32 [1, 48, 48] in [0, 1] (stack to [N, 1, 48, 48] for the network)."""
    crop = square_crop(bgr, box)
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    interp = cv2.INTER_AREA if gray.shape[0] > SIZE else cv2.INTER_LINEAR
    small = cv2.resize(gray, (SIZE, SIZE), interpolation=interp)
    return (small.astype(np.float32) / 255.0)[None]
