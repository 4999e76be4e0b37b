"""``affect_train``: the group split (stratified, no group on both sides, conflicts left out) on the real file list,
and the removal of the mask shortcut on a generated face."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.core.align import ARCFACE_112
from emotion.model.training.affect import (
    apply_mask,
    face_mask,
    fill_background,
    fitted_mask_like,
    mask_at_random,
    mask_like,
    read_rows,
    remove_mask_cue,
    soften,
    split_rows,
    write_split,
)


@pytest.fixture(scope="module")
def file_rows(shared_dir: Path) -> list[dict[str, str]]:
    """The builder's list (``files.csv``: label, group, group_label_conflict of every affect_train image)."""
    return read_rows(shared_dir / "data/affect_train/files.csv")


def test_split_by_group_stratified_without_conflicts(file_rows: list[dict[str, str]]) -> None:
    split = split_rows(file_rows)
    train_groups = {r["group"] for r in split.train}
    val_groups = {r["group"] for r in split.val}
    assert not train_groups & val_groups  # no photo on both sides
    assert all(r["group_label_conflict"] == "0" for r in split.train + split.val)
    conflicts = [r for r in file_rows if r["group_label_conflict"] == "1"]
    assert len(split.left_out) == len(conflicts) == 1702
    assert len(split.train) + len(split.val) + len(split.left_out) == len(file_rows) == 33123
    kept = Counter(r["label"] for r in split.train + split.val)
    val = Counter(r["label"] for r in split.val)
    assert set(val) == set(kept) and len(kept) == 8  # contempt included
    for label, n in kept.items():  # about 10% of every class, a group at most over
        assert 0.1 * n <= val[label] < 0.1 * n + 12, label
    again = split_rows(list(reversed(file_rows)))  # the order of the rows does not matter
    assert {r["group"] for r in again.val} == val_groups


def test_write_split_files(file_rows: list[dict[str, str]], tmp_path: Path) -> None:
    rows = [{**r, "image": f"{r['label']}/{i}.jpg"} for i, r in enumerate(file_rows[:3000])]
    with (tmp_path / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, ["image", "label", "source", "group", "group_label_conflict"],
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    counts = write_split(tmp_path)
    train, val = read_rows(tmp_path / "train.csv"), read_rows(tmp_path / "val.csv")
    assert counts["train"]["rows"] == len(train) and counts["val"]["rows"] == len(val) > 0
    assert not {r["group"] for r in train} & {r["group"] for r in val}
    assert list(train[0]) == ["image", "label", "source", "group", "group_label_conflict"]


def _generated_face(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 112x112 colour 'photo': a textured background, a face-coloured ellipse with dark eyes and mouth; and the
    ellipse as a bool mask."""
    rng = np.random.default_rng(seed)
    photo = rng.integers(40, 255, (112, 112, 3), dtype=np.uint8)
    ellipse = np.zeros((112, 112), np.uint8)
    cv2.ellipse(ellipse, (56, 60), (34, 44), 0, 0, 360, 1, -1)
    photo[ellipse == 1] = (170, 140, 120)
    for centre in ((44, 50), (68, 50)):
        cv2.circle(photo, centre, 4, (5, 5, 5), -1)  # pupils darker than the mask threshold
    cv2.line(photo, (46, 80), (66, 80), (8, 8, 8), 3)
    return photo, ellipse.astype(bool)


def test_mask_shortcut_removal_on_a_generated_face() -> None:
    photo, ellipse = _generated_face(0)
    masked = apply_mask(photo, ellipse)
    assert masked[~ellipse].max() == 0 and np.array_equal(masked[ellipse], photo[ellipse])
    mask = face_mask(masked)  # the hull keeps the dark eyes and mouth inside
    assert (mask & ellipse).sum() / (mask | ellipse).sum() > 0.97 and mask[50, 44] and mask[80, 56]

    donor, _ = _generated_face(1)
    filled = fill_background(masked, mask, donor)
    assert np.array_equal(filled[~mask], donor[~mask]) and np.array_equal(filled[mask], masked[mask])

    # a batch: two masked faces, two unmasked ones; always mask / always fill
    batch = np.stack([masked, masked, photo, donor])
    is_masked = np.array([True, True, False, False])
    rng = np.random.default_rng(0)
    out = remove_mask_cue(batch, is_masked, np.stack([donor]), rng, p_mask=1.0, p_fill=1.0)
    for i in (0, 1):  # masked faces now have a real background
        assert np.array_equal(out[i][~mask], donor[~mask]) and np.array_equal(out[i][mask], masked[mask])
    for i in (2, 3):  # unmasked faces now carry the face-shaped mask: black outside it, untouched inside
        assert out[i][~mask].max() == 0 and np.array_equal(out[i][mask], batch[i][mask])
    untouched = remove_mask_cue(batch, is_masked, np.stack([donor]), rng, p_mask=0.0, p_fill=0.0)
    assert np.array_equal(untouched, batch)
    assert np.array_equal(batch[2], photo)  # the input batch is not changed in place

    # softening: sharpness falls, the picture stays (mean colour kept)
    def sharpness(a: np.ndarray) -> float:
        return float(np.mean([cv2.Laplacian(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for x in a]))

    soft = soften(np.stack([photo, donor]), rng, (0.4, 0.6))
    assert soft.shape == (2, *photo.shape) and sharpness(soft) < 0.8 * sharpness(np.stack([photo, donor]))
    assert abs(float(soft[0].mean()) - float(photo.mean())) < 2

    # faces of the other sources (FER+, films) masked like a masked face at random, so a mask tells no source
    others = np.stack([photo] * 200)
    all_masked = mask_at_random(others, np.stack([masked]), rng, p=1.0)
    assert all_masked[:, ~mask].max() == 0 and np.array_equal(all_masked[:, mask], others[:, mask])
    assert np.array_equal(mask_at_random(others, np.stack([masked]), rng, p=0.0), others)
    some = mask_at_random(others, np.stack([masked]), rng, p=0.3)
    n_masked = sum(int(face[~mask].max() == 0) for face in some)
    assert 30 <= n_masked <= 90, n_masked

    # crop space (the eval's masked contempt crops): a 224 px crop masked like a 200 px masked crop
    big = cv2.resize(photo, (224, 224))
    template = cv2.resize(masked, (200, 200), interpolation=cv2.INTER_NEAREST)
    crop = mask_like(big, template)
    scaled = cv2.resize(ellipse.astype(np.uint8), (224, 224), interpolation=cv2.INTER_NEAREST).astype(bool)
    black = crop.max(axis=2) == 0  # the ellipse, up to resampling at its edge (two resizes)
    assert (black == ~scaled).mean() > 0.97 and crop[scaled].mean() > 100

    # the mask fitted to the face: moved by the similarity between the two faces' landmarks, not scaled to the crop
    template_points = ARCFACE_112 * (200 / 112)
    points = template_points * 0.7 + (40.0, 25.0)  # a smaller face, lower right in its crop
    fitted = fitted_mask_like(big, points, template, template_points)
    moved = cv2.warpAffine(cv2.resize(ellipse.astype(np.uint8), (200, 200), interpolation=cv2.INTER_NEAREST),
                           np.array([[0.7, 0, 40.0], [0, 0.7, 25.0]]), (224, 224),
                           flags=cv2.INTER_NEAREST).astype(bool)
    black = fitted.max(axis=2) == 0
    assert (black == ~moved).mean() > 0.97 and np.array_equal(fitted[moved & ~black], big[moved & ~black])
    assert (black == ~scaled).mean() < 0.85  # mask_like would have left a different region
