"""Face alignment and cropping for the classifiers, and the enlargement of images too small for them."""

from __future__ import annotations

import math

import cv2
import numpy as np

# An image smaller than the classifiers' own input is too small for YuNet's landmarks (a 48 px FER crop as it
# is: 420 of FER+ PublicTest's 3,191 without a face). Such an image is enlarged (bicubic) by the smallest whole
# factor that brings its short side to UPSCALE_TO before detection and alignment, and what is found is reported
# in its own pixels. The rule depends only on the image's size, never on a data set: FER's 48 px crops get x6
# (FER+ PublicTest with MobileFaceNet: x4 72.7%, x6 73.7%); SFEW's 143x181 film crops stay as they are.
UPSCALE_BELOW = 112
UPSCALE_TO = 256
UPSCALE_MAX_SIDE = 4096  # a long thin strip (10 x 20,000 px) is not enlarged into a memory bomb
UPSCALE_RULE = (f"short side < {UPSCALE_BELOW} px: x ceil({UPSCALE_TO} / short side), bicubic, "
                f"long side kept <= {UPSCALE_MAX_SIDE} px")


def upscale_factor(height: int, width: int) -> int:
    """1, or the whole factor that brings a short side under UPSCALE_BELOW up to at least UPSCALE_TO, as far as
    the long side stays within UPSCALE_MAX_SIDE."""
    short, long = min(height, width), max(height, width)
    if short >= UPSCALE_BELOW:
        return 1
    return max(1, min(math.ceil(UPSCALE_TO / max(short, 1)), UPSCALE_MAX_SIDE // long))


def enlarged(bgr: np.ndarray) -> tuple[np.ndarray, int]:
    """The image enlarged by :func:`upscale_factor` (itself when that is 1), and the factor."""
    factor = upscale_factor(*bgr.shape[:2])
    if factor == 1:
        return bgr, 1
    return cv2.resize(bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC), factor

# ArcFace 112x112 template for the 5 YuNet landmarks (right eye, left eye, nose, mouth right, mouth left):
# the one the OpenCV-zoo MobileFaceNet FER model was trained with (facial_fer_model.py).
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def similarity_to_template(landmarks: np.ndarray, template: np.ndarray = ARCFACE_112) -> np.ndarray:
    """2x3 matrix mapping image landmarks onto the template (4-DOF non-reflective similarity).

    Fitted by least squares from template to landmarks and then inverted, the way upstream does it;
    ``cv2.estimateAffinePartial2D`` gives different (robust-fit) results and is deliberately not used.
    """
    x, y = template[:, 0], template[:, 1]
    ones, zeros = np.ones_like(x), np.zeros_like(x)
    # u = a*x + b*y + tx ; v = -b*x + a*y + ty
    design = np.vstack([np.column_stack([x, y, ones, zeros]), np.column_stack([y, -x, zeros, ones])])
    target = np.concatenate([landmarks[:, 0], landmarks[:, 1]]).astype(np.float64)
    (a, b, tx, ty), *_ = np.linalg.lstsq(design, target, rcond=None)
    template_to_image = np.array([[a, b, tx], [-b, a, ty]], dtype=np.float64)
    return cv2.invertAffineTransform(template_to_image)


def align_face(bgr: np.ndarray, landmarks: np.ndarray, size: int = 112) -> np.ndarray:
    """The face warped onto the 112x112 template (BGR uint8)."""
    return cv2.warpAffine(bgr, similarity_to_template(landmarks), (size, size))


def crop_box(image: np.ndarray, box: np.ndarray, margin: float) -> np.ndarray:
    """The box (x, y, w, h) grown by ``margin`` of its size on each side, clipped to the image."""
    x, y, w, h = (float(v) for v in box[:4])
    x0 = int(round(max(0.0, x - margin * w)))
    y0 = int(round(max(0.0, y - margin * h)))
    x1 = int(round(min(image.shape[1], x + w + margin * w)))
    y1 = int(round(min(image.shape[0], y + h + margin * h)))
    if x1 <= x0 or y1 <= y0:  # degenerate box: fall back to the whole image rather than an empty crop
        return image
    return image[y0:y1, x0:x1]


def square_crop(image: np.ndarray, box: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The square of side ``scale * max(w, h)`` centred on the box, edges replicated outside the image.

    FER2013/FER+ crops are squares about as tall as a YuNet box and centred on it (measured on PublicTest).
    """
    x, y, w, h = (float(v) for v in box[:4])
    side = max(1, int(round(scale * max(w, h, 1.0))))
    x0 = int(round(x + w / 2 - side / 2))
    y0 = int(round(y + h / 2 - side / 2))
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]])  # integer translation: an exact copy of the pixels
    return cv2.warpAffine(image, shift, (side, side), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
