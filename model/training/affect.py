"""``affect_train`` (colour in-the-wild faces, ``../shared/data/README.md`` section 7): its group split, the face
cache the fine-tuning recipe reads, and the removal of its mask shortcut.

``python -m emotion.model.training.affect split DATA`` writes ``DATA/train.csv`` and ``DATA/val.csv`` (the
builder's columns) from ``DATA/labels.csv``; ``... faces DATA --out FACES`` caches ``affect_train.npz`` and
``affect_val.npz`` (aligned as :mod:`emotion.model.training.faces` aligns every other set);
``... masked-contempt DATA --out DIR`` writes the validation contempt crops masked the way the other classes are
(``DIR/contempt/*.jpg``, for ``emotion eval-classify DIR``), for the shortcut check.

**Split.** Near-duplicate copies of one photo share a ``group``; a group never sits on both sides. Rows of groups
whose copies are filed under different classes (``group_label_conflict`` = 1) are left out of both sides. Per
class, the groups are ordered by a hash of their name and taken into validation until they hold ``fraction`` of
the class's rows, so the split is stratified by class and the same on every machine.

**The mask shortcut.** Every effectnet crop is black outside a face-shaped mask; every contempt crop has its
background. :func:`remove_mask_cue` takes the cue away at random: a contempt face gets the mask of a random
effectnet face (:func:`face_mask`), and an effectnet face gets a real background outside its own mask (the
pixels of another, unmasked face).

Torch-free (OpenCV and NumPy only).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emotion.model.training import VOCABULARY

COLUMNS = ["image", "label", "source", "group", "group_label_conflict"]
VAL_FRACTION = 0.1
SPLIT_SEED = "affect-v1"
MASK_THRESHOLD = 12  # a pixel brighter than this in any channel is inside the mask (JPEG noise stays below it)
UNMASKED_SOURCE = "contempt"
MASK_TEMPLATE_TRIES = 10  # effectnet crops drawn as a mask template until YuNet finds the face in one


@dataclass
class Split:
    train: list[dict[str, str]]
    val: list[dict[str, str]]
    left_out: list[dict[str, str]]  # rows of groups with a label conflict


def read_rows(labels_csv: Path) -> list[dict[str, str]]:
    with labels_csv.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _order(group: str, seed: str) -> str:
    return hashlib.sha1(f"{seed}|{group}".encode()).hexdigest()


def split_rows(rows: list[dict[str, str]], fraction: float = VAL_FRACTION, seed: str = SPLIT_SEED) -> Split:
    """Training and validation rows by ``group``, stratified by class; conflicting groups left out."""
    left_out = [r for r in rows if r["group_label_conflict"].strip() == "1"]
    conflicted = {r["group"] for r in left_out}
    kept = [r for r in rows if r["group"] not in conflicted]
    by_group: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in kept:
        by_group[r["group"]].append(r)
    groups_of_class: dict[str, list[str]] = defaultdict(list)
    for group, members in by_group.items():
        labels = {m["label"] for m in members}
        if len(labels) != 1:  # the builder flags these; never split a group whatever its flag says
            left_out += members
            conflicted.add(group)
            continue
        groups_of_class[labels.pop()].append(group)
    val_groups: set[str] = set()
    for groups in groups_of_class.values():
        want = fraction * sum(len(by_group[g]) for g in groups)
        taken = 0
        for g in sorted(groups, key=lambda g: _order(g, seed)):
            if taken >= want:
                break
            val_groups.add(g)
            taken += len(by_group[g])
    train = [r for r in kept if r["group"] not in val_groups and r["group"] not in conflicted]
    val = [r for r in kept if r["group"] in val_groups]
    return Split(train, val, left_out)


def write_split(data_dir: Path, fraction: float = VAL_FRACTION) -> dict[str, Any]:
    """``train.csv`` and ``val.csv`` beside ``labels.csv``; returns the counts."""
    split = split_rows(read_rows(data_dir / "labels.csv"), fraction)
    for name, rows in (("train", split.train), ("val", split.val)):
        with (data_dir / f"{name}.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    return {name: {"rows": len(rows), "groups": len({r["group"] for r in rows}),
                   "per_class": {c: sum(r["label"] == c for r in rows) for c in VOCABULARY}}
            for name, rows in (("train", split.train), ("val", split.val), ("left_out", split.left_out))}


# --- the mask shortcut -----------------------------------------------------------------------------------------


def face_mask(image: np.ndarray, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """The face-shaped mask of a masked crop (bool [H,W]): the convex hull of its pixels brighter than
    ``threshold``, so dark pupils, brows and hair inside the face stay inside."""
    bright = (image.max(axis=2) if image.ndim == 3 else image) > threshold
    mask = np.zeros(bright.shape, np.uint8)
    points = cv2.findNonZero(bright.astype(np.uint8))
    if points is not None and len(points) >= 3:
        cv2.fillConvexPoly(mask, cv2.convexHull(points), 1)
    return mask.astype(bool)


def apply_mask(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` black outside ``mask``."""
    return np.where(mask[..., None] if image.ndim == 3 else mask, image, 0).astype(image.dtype)


def fill_background(image: np.ndarray, mask: np.ndarray, donor: np.ndarray) -> np.ndarray:
    """``image`` inside ``mask``, ``donor``'s pixels (a real background) outside it."""
    return np.where(mask[..., None] if image.ndim == 3 else mask, image, donor).astype(image.dtype)


def mask_at_random(images: np.ndarray, templates: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """Each aligned face of ``images`` [N,H,W,3], with probability ``p``, black outside the face-shaped mask of a
    random masked face of ``templates`` [M,H,W,3]."""
    out = images.copy()
    if not len(templates):
        return out
    for i in np.flatnonzero(rng.random(len(out)) < p):
        out[i] = apply_mask(out[i], face_mask(templates[rng.integers(len(templates))]))
    return out


def soften(images: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float]) -> np.ndarray:
    """Each face blurred (Gaussian, sigma drawn from ``sigma``): the contempt crops are sharper than the effectnet
    crops (median Laplacian variance of the aligned faces 755 against 519), a cue a network can learn; a sigma of
    0.2-0.6 brings them to the effectnet crops' range."""
    return np.stack([cv2.GaussianBlur(x, (0, 0), float(rng.uniform(*sigma))) for x in images]) if len(images) \
        else images.copy()


def remove_mask_cue(images: np.ndarray, masked: np.ndarray, donors: np.ndarray, rng: np.random.Generator,
                    p_mask: float = 0.5, p_fill: float = 0.5) -> np.ndarray:
    """Aligned uint8 faces [N,H,W,3]; ``masked`` (bool [N]) marks the masked ones. Each unmasked face is masked with
    probability ``p_mask`` (the mask of a random masked face of the batch); each masked face gets, with probability
    ``p_fill``, the pixels of a random unmasked ``donors`` face outside its own mask."""
    out = images.copy()
    unmasked = ~masked
    out[unmasked] = mask_at_random(images[unmasked], images[masked], rng, p_mask)
    if len(donors):
        for i in np.flatnonzero(masked & (rng.random(len(out)) < p_fill)):
            out[i] = fill_background(out[i], face_mask(out[i]), donors[rng.integers(len(donors))])
    return out


def mask_like(crop: np.ndarray, masked_crop: np.ndarray) -> np.ndarray:
    """An unmasked crop masked with the face-shaped mask of a masked crop, scaled to its size."""
    h, w = crop.shape[:2]
    mask = cv2.resize(face_mask(masked_crop).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
    return apply_mask(crop, mask.astype(bool))


def fitted_mask_like(crop: np.ndarray, points: np.ndarray, masked_crop: np.ndarray,
                     masked_points: np.ndarray) -> np.ndarray:
    """An unmasked crop masked with the face-shaped mask of a masked crop, moved onto its face by the similarity
    that takes the masked crop's 5 landmarks (``masked_points``) onto the crop's (``points``): the mask hugs the
    face as the effectnet masks do, where :func:`mask_like` (scaled to the crop) leaves more cheek and forehead."""
    from emotion.core.align import similarity_to_template

    to_template = similarity_to_template(masked_points)
    from_template = cv2.invertAffineTransform(similarity_to_template(points))
    moved = np.hstack([from_template[:, :2] @ to_template[:, :2],
                       (from_template[:, :2] @ to_template[:, 2] + from_template[:, 2])[:, None]])
    h, w = crop.shape[:2]
    mask = cv2.warpAffine(face_mask(masked_crop).astype(np.uint8), moved, (w, h), flags=cv2.INTER_NEAREST)
    return apply_mask(crop, mask.astype(bool))


def masked_contempt_crops(data_dir: Path, split: str, seed: int = 0) -> Iterator[tuple[dict[str, str], np.ndarray]]:
    """Each contempt crop of ``split`` (``train`` / ``val``) with its row, masked whole (before any detection) like a
    random effectnet crop of the same split, that crop's mask fitted to the face by the landmarks of both
    (:func:`fitted_mask_like`): how the effectnet crops themselves were masked. Where YuNet finds no face in the
    contempt crop, the mask is scaled to the crop (:func:`mask_like`); a template without a found face is redrawn."""
    from emotion.core.engine import load_detector
    from emotion.model.training.faces import FIND_SCORE, crop_landmarks
    from emotion.settings import get_settings

    detector = load_detector(FIND_SCORE, get_settings().nms_threshold, ["CPUExecutionProvider"], 1)
    rows = read_rows(data_dir / f"{split}.csv")
    masked = [r for r in rows if r["source"] != UNMASKED_SOURCE]
    rng = np.random.default_rng(seed)

    def read(row: dict[str, str]) -> np.ndarray:
        image = cv2.imread(str(data_dir / row["image"]), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot decode {row['image']}")
        return image

    for r in rows:
        if r["source"] != UNMASKED_SOURCE:
            continue
        crop = read(r)
        points = crop_landmarks(crop, detector)
        for _ in range(MASK_TEMPLATE_TRIES):
            template = read(masked[rng.integers(len(masked))])
            template_points = crop_landmarks(template, detector) if points is not None else None
            if template_points is not None or points is None:
                break
        if points is None or template_points is None:
            yield r, mask_like(crop, template)
        else:
            yield r, fitted_mask_like(crop, points, template, template_points)


def write_masked_contempt(data_dir: Path, out: Path, seed: int = 0) -> dict[str, Any]:
    """The validation contempt crops, each masked like a random effectnet validation crop, as ``out/contempt``."""
    (out / "contempt").mkdir(parents=True, exist_ok=True)
    n = 0
    for r, image in masked_contempt_crops(data_dir, "val", seed):
        cv2.imwrite(str(out / "contempt" / Path(r["image"]).name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        n += 1
    return {"contempt_crops": n, "out": str(out)}


# --- the face cache --------------------------------------------------------------------------------------------


def build_faces(data_dir: Path, out_dir: Path) -> list[dict[str, Any]]:
    """``affect_train.npz`` / ``affect_val.npz`` in ``out_dir``, in the layout of
    :func:`emotion.model.training.faces.build_set` plus ``masked`` (uint8 [N]: an effectnet crop); ``teacher`` is
    zeros (these faces are not distilled)."""
    from emotion.core.engine import load_detector
    from emotion.model.training.faces import FIND_SCORE, align_crop
    from emotion.settings import get_settings

    if not (data_dir / "train.csv").exists():
        write_split(data_dir)
    settings = get_settings()
    detector = load_detector(FIND_SCORE, settings.nms_threshold, ["CPUExecutionProvider"], 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    infos = []
    for name in ("val", "train"):
        rows = read_rows(data_dir / f"{name}.csv")
        images = np.empty((len(rows), 112, 112, 3), np.uint8)
        found = np.zeros(len(rows), np.uint8)
        for i, r in enumerate(rows):
            bgr = cv2.imread(str(data_dir / r["image"]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise ValueError(f"cannot decode {r['image']}")
            images[i], found[i] = align_crop(bgr, detector)
            if i % 2000 == 0:
                print(f"[affect] {name}: {i}/{len(rows)}", flush=True)
        labels = np.array([VOCABULARY.index(r["label"]) for r in rows], np.int64)
        np.savez(out_dir / f"affect_{name}.npz", images=images,
                 targets=np.eye(len(VOCABULARY), dtype=np.float32)[labels], labels=labels,
                 teacher=np.zeros((len(rows), 7), np.float32), found=found,
                 groups=np.array([r["group"] for r in rows]), names=np.array([r["image"] for r in rows]),
                 masked=np.array([r["source"] != UNMASKED_SOURCE for r in rows], np.uint8))
        infos.append({"set": f"affect_{name}", "n": len(rows), "found": int(found.sum())})
        print(f"[affect] {json.dumps(infos[-1])}", flush=True)
    return infos


def build_masked_contempt_faces(data_dir: Path, out_dir: Path, seed: int = 1) -> dict[str, Any]:
    """``affect_train_masked_contempt.npz`` in ``out_dir``: the training contempt crops masked whole
    (:func:`masked_contempt_crops`), then detected and aligned as serving would; ``index`` gives each face's row in
    ``affect_train.npz`` (the same order as ``train.csv``)."""
    from emotion.core.engine import load_detector
    from emotion.model.training.faces import FIND_SCORE, align_crop
    from emotion.settings import get_settings

    settings = get_settings()
    detector = load_detector(FIND_SCORE, settings.nms_threshold, ["CPUExecutionProvider"], 1)
    row_of = {r["image"]: i for i, r in enumerate(read_rows(data_dir / "train.csv"))}
    images, found, index = [], [], []
    for r, crop in masked_contempt_crops(data_dir, "train", seed):
        face, ok = align_crop(crop, detector)
        images.append(face)
        found.append(ok)
        index.append(row_of[r["image"]])
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / "affect_train_masked_contempt.npz", images=np.stack(images), index=np.array(index, np.int64),
             found=np.array(found, np.uint8))
    return {"set": "affect_train_masked_contempt", "n": len(images), "found": int(sum(found))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="affect", description="affect_train: split, face cache, masked contempt.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("split", help="write DATA/train.csv and DATA/val.csv")
    p.add_argument("data")
    p.add_argument("--fraction", type=float, default=VAL_FRACTION)
    p = sub.add_parser("faces", help="cache aligned faces of both sides")
    p.add_argument("data")
    p.add_argument("--out", default="/tmp/emotion_faces")
    p = sub.add_parser("masked-contempt", help="the validation contempt crops, masked, as OUT/contempt/*.jpg")
    p.add_argument("data")
    p.add_argument("--out", required=True)
    p = sub.add_parser("masked-contempt-faces", help="cache the training contempt crops masked whole, aligned")
    p.add_argument("data")
    p.add_argument("--out", default="/tmp/emotion_faces")
    a = ap.parse_args(argv)
    data = Path(a.data)
    if a.cmd == "split":
        result: Any = write_split(data, a.fraction)
    elif a.cmd == "faces":
        result = build_faces(data, Path(a.out))
    elif a.cmd == "masked-contempt-faces":
        result = build_masked_contempt_faces(data, Path(a.out))
    else:
        result = write_masked_contempt(data, Path(a.out))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
