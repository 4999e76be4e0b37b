"""Per-face pose (yaw, pitch, roll from the 5 landmarks) and image quality (brightness, sharpness, size).

Pose is read from a YuNet row's landmarks with a generic face (``GENERIC_FACE`` below). Roll is the angle of the
eye line and is exact for the landmarks given; yaw and pitch assume this average face seen without perspective,
so they are approximate (measured in docs/benchmarks.md, "Pose and quality").

Signs (as a viewer of the image sees the face): ``roll`` > 0 the face turned counter-clockwise; ``yaw`` > 0 the
face turned towards the image's right (its nose moves right); ``pitch`` > 0 the face tilted up (chin up). The
three compose as roll . yaw . pitch (a face tilted by ``pitch``, then turned by ``yaw``, then rolled in the
image), the order in which the eye line's angle is exactly the roll; for the generic face seen without
perspective, the formulas below invert that rotation exactly.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from emotion.core.align import ARCFACE_112, similarity_to_template
from emotion.core.results import Pose, Quality

# The generic face, in ArcFace-template units (112 px, eye-centre distance about 35): where the eyes and mouth
# corners sit on an upright frontal face (ARCFACE_112), the nose tip's height between the eye line and the mouth
# as YuNet marks it (median over 1,499 FER+ train faces: 0.57 of the way down; the template's own 0.49 comes from
# another landmark detector and read as 12 degrees of downward pitch on YuNet's landmarks), and a depth towards
# the camera for each point from the usual generic 3-D head model (nose tip 135 units in front of the eyes and 10
# in front of the mouth corners, at an eye-centre half-width of 160).
FRONTAL_NOSE = 0.57
_EYES = (ARCFACE_112[0] + ARCFACE_112[1]) / 2
EYE_DISTANCE = float(ARCFACE_112[1, 0] - ARCFACE_112[0, 0])
MOUTH_DROP = float((ARCFACE_112[3, 1] + ARCFACE_112[4, 1]) / 2 - _EYES[1])
NOSE_DROP = FRONTAL_NOSE * MOUTH_DROP
_MODEL_UNIT = (EYE_DISTANCE / 2) / 160.0
NOSE_DEPTH = 135.0 * _MODEL_UNIT
MOUTH_DEPTH = 10.0 * _MODEL_UNIT
# (x right, y down, z towards the camera) of right eye, left eye, nose, mouth right, mouth left; eye midpoint 0.
GENERIC_FACE = np.array([
    [*(ARCFACE_112[0] - _EYES), 0.0],
    [*(ARCFACE_112[1] - _EYES), 0.0],
    [ARCFACE_112[2, 0] - _EYES[0], NOSE_DROP, NOSE_DEPTH],
    [*(ARCFACE_112[3] - _EYES), MOUTH_DEPTH],
    [*(ARCFACE_112[4] - _EYES), MOUTH_DEPTH],
])

def face_pose(face: np.ndarray) -> Pose:
    """Yaw, pitch and roll in degrees of a YuNet row ``[x, y, w, h, re, le, nose, mr, ml (x, y each), score]``."""
    rex, rey, lex, ley, nx, ny, mrx, mry, mlx, mly = (float(v) for v in face[4:14])
    dx, dy = lex - rex, ley - rey
    eye_distance = math.hypot(dx, dy)
    if eye_distance < 1e-6:
        return Pose(yaw=0.0, pitch=0.0, roll=0.0)
    roll = -math.degrees(math.atan2(dy, dx))  # image y points down: an anticlockwise turn lifts the left eye
    # Coordinates along the eye line (u, to the face's left eye) and down the face (v), from the eye midpoint.
    cx, cy = (rex + lex) / 2, (rey + ley) / 2
    ux, uy = dx / eye_distance, dy / eye_distance

    def along(px: float, py: float) -> tuple[float, float]:
        return (px - cx) * ux + (py - cy) * uy, -(px - cx) * uy + (py - cy) * ux

    nose_u, nose_v = along(nx, ny)
    mouth_u, mouth_v = along((mrx + mlx) / 2, (mry + mly) / 2)
    # Where the nose falls between the eye line and the mouth (the template's: NOSE_DROP / MOUTH_DROP).
    t = nose_v / mouth_v if mouth_v > 1e-6 else NOSE_DROP / MOUTH_DROP
    # Pitch: tilting up lifts the nose tip, which stands in front of the eyes and mouth, towards the eye line:
    # t = (NOSE_DROP cos p - NOSE_DEPTH sin p) / (MOUTH_DROP cos p - MOUTH_DEPTH sin p), solved for p.
    depth = NOSE_DEPTH - t * MOUTH_DEPTH
    pitch = math.atan2(NOSE_DROP - t * MOUTH_DROP, depth)
    # Yaw: a turn moves the nose tip sideways off the face's mid-line (eye midpoint to mouth midpoint) by its
    # depth * sin(yaw) / cos(pitch), while the eye distance shrinks by cos(yaw).
    offset = (nose_u - t * mouth_u) / eye_distance * EYE_DISTANCE
    yaw = math.degrees(math.atan2(offset * math.cos(pitch), depth))
    pitch = math.degrees(pitch)
    return Pose(yaw=round(yaw, 1), pitch=round(pitch, 1), roll=round(roll, 1))


# The face as the brightness and sharpness see it: aligned to the 112 px template, this inner window (the
# face, not the background corners of the warp). Identity linking gates on the same two measures.
INNER = (slice(24, 100), slice(20, 92))

# ``reliable``: round numbers at the knee of the default classifier's accuracy against each measure on the FER+
# train faces its training held out, made dark, blurred and small by known amounts, then checked on FER+
# PublicTest and the SFEW validation films (docs/benchmarks.md, "Pose and quality"; benchmarks/quality_curves.py).
MIN_BRIGHTNESS = 40.0
MIN_SHARPNESS = 10.0
MIN_SIZE = 16


def brightness_sharpness(grey_inner: np.ndarray) -> tuple[float, float]:
    """Mean grey level and variance of the Laplacian of the INNER window of a face aligned to 112x112 (grey)."""
    return float(grey_inner.mean()), float(cv2.Laplacian(grey_inner, cv2.CV_32F).var())


def face_quality(bgr: np.ndarray, face: np.ndarray, scale: float = 1.0) -> Quality:
    """Quality of a YuNet row found on ``bgr``; ``scale``: input pixels per pixel of ``bgr`` (1 / enlargement)."""
    to_inner = similarity_to_template(face[4:14].reshape(5, 2))
    to_inner[:, 2] -= (INNER[1].start, INNER[0].start)  # only the inner window is warped
    size = (INNER[1].stop - INNER[1].start, INNER[0].stop - INNER[0].start)
    inner = cv2.cvtColor(cv2.warpAffine(bgr, to_inner, size), cv2.COLOR_BGR2GRAY)
    brightness, sharpness = brightness_sharpness(inner)
    face_size = int(round(min(float(face[2]), float(face[3])) * scale))
    reliable = brightness >= MIN_BRIGHTNESS and sharpness >= MIN_SHARPNESS and face_size >= MIN_SIZE
    return Quality(brightness=round(brightness, 1), sharpness=round(sharpness, 1), size=face_size, reliable=reliable)
