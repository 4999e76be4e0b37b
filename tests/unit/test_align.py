"""The least-squares similarity alignment (not estimateAffinePartial2D's robust fit)."""

from __future__ import annotations

import numpy as np

from emotion.core.align import ARCFACE_112, crop_box, similarity_to_template


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_exact_similarity_is_recovered():
    angle, scale, shift = np.deg2rad(17.0), 2.3, np.array([140.0, 61.0])
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_112 @ rotation.T + shift
    matrix = similarity_to_template(landmarks)
    assert np.allclose(_apply(matrix, landmarks), ARCFACE_112, atol=1e-9)


def test_noisy_landmarks_match_the_closed_form_least_squares_fit():
    rng = np.random.default_rng(3)
    landmarks = ARCFACE_112 * 1.7 + [30, 50] + rng.normal(0, 2.0, ARCFACE_112.shape)
    # Closed form of min sum |s R t + T - p|^2 over similarities mapping template t onto landmarks p.
    t = ARCFACE_112 - ARCFACE_112.mean(0)
    p = landmarks - landmarks.mean(0)
    denom = (t**2).sum()
    a = (t[:, 0] * p[:, 0] + t[:, 1] * p[:, 1]).sum() / denom
    b = (t[:, 1] * p[:, 0] - t[:, 0] * p[:, 1]).sum() / denom
    forward = np.array([[a, b], [-b, a]])
    offset = landmarks.mean(0) - ARCFACE_112.mean(0) @ forward.T
    expected_inverse = np.linalg.inv(forward)
    matrix = similarity_to_template(landmarks)
    assert np.allclose(matrix[:, :2], expected_inverse, atol=1e-9)
    assert np.allclose(matrix[:, 2], -expected_inverse @ offset, atol=1e-7)


def test_crop_box_clips_and_never_returns_empty():
    image = np.zeros((100, 80, 3), np.uint8)
    assert crop_box(image, np.array([70, 90, 30, 30]), 0.1).shape[:2] == (13, 13)  # grown by 3 px, clipped at 80x100
    assert crop_box(image, np.array([500, 500, 10, 10]), 0.1).shape == image.shape
