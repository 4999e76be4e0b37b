"""Data preparation: FER+ vote files and ImageFolder trees -> uint8 arrays in memory (torch-free).

A :class:`FaceSet` holds ``images`` uint8 [N,48,48], ``targets`` float32 [N,8] (a distribution over the
vocabulary: vote distribution or one-hot) and ``labels`` int64 [N] (majority class, -1 when there is none).
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from emotion.model.training import INPUT_SIZE, VOCABULARY, canonical_label

FERPLUS_COLUMNS = (*VOCABULARY, "unknown", "NF")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".pgm"}


@dataclass
class FaceSet:
    """Decoded faces with soft targets and hard labels."""

    images: np.ndarray  # uint8 [N, 48, 48]
    targets: np.ndarray  # float32 [N, 8], rows sum to 1
    labels: np.ndarray  # int64 [N], -1 = no majority
    names: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, idx: np.ndarray) -> FaceSet:
        """Rows ``idx`` as a new set."""
        return FaceSet(self.images[idx], self.targets[idx], self.labels[idx], [self.names[i] for i in idx])


def shared_dir() -> Path:
    """``$EMOTION_SHARED_DIR`` or ``<repo>/../shared``."""
    env = os.environ.get("EMOTION_SHARED_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared"


def expand_path(p: str) -> Path:
    """Expand ``${SHARED}``, environment variables and ``~``."""
    return Path(os.path.expanduser(os.path.expandvars(p.replace("${SHARED}", str(shared_dir())))))


def ferplus_majority(votes: np.ndarray) -> int:
    """FER+ majority rule (microsoft/FERPlus ``_process_data``, majority mode).

    ``votes`` has the 10 columns of ``label.csv`` (8 emotions, unknown, NF). Votes of 1 are dropped; the
    winner needs more than half of the remaining votes; unknown / NF / no majority give -1.
    """
    v = np.where(votes <= 1, 0, votes).astype(np.float64)
    total = v.sum()
    if total <= 0:
        return -1
    k = int(np.argmax(v))
    if v[k] > 0.5 * total and k < len(VOCABULARY):
        return k
    return -1


def ferplus_distribution(votes: np.ndarray) -> np.ndarray | None:
    """FER+ "probability" targets: votes of 1 dropped, normalised over the 8 emotions.

    Returns ``None`` (exclude the image) when the strongest column after dropping is unknown or NF, or no
    emotion votes remain.
    """
    v = np.where(votes <= 1, 0, votes).astype(np.float64)
    if v.sum() <= 0 or int(np.argmax(v)) >= len(VOCABULARY):
        return None
    e = v[: len(VOCABULARY)]
    if e.sum() <= 0:
        return None
    return (e / e.sum()).astype(np.float32)


def _read_gray48(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot decode {path}")
    if img.shape != (INPUT_SIZE, INPUT_SIZE):
        img = cv2.resize(img, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
    return img


def _cache_path(cache_dir: str | None, key: str) -> Path | None:
    if not cache_dir:
        return None
    h = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(cache_dir) / f"faces_{h}.npz"


def load_ferplus(
    folder: str | Path, mode: str = "probability", limit: int | None = None, cache_dir: str | None = None
) -> FaceSet:
    """Load a FER+ folder (``label.csv`` without header + PNGs).

    ``mode="probability"``: targets are vote distributions; images whose vote is unknown/NF are dropped.
    ``mode="majority"``: only images with a FER+ majority are kept; targets are one-hot.
    ``labels`` always holds the majority class (-1 if none).
    """
    folder = Path(folder)
    rows: list[tuple[str, np.ndarray]] = []
    with open(folder / "label.csv", newline="") as f:
        for rec in csv.reader(f):
            if not rec or rec[0] == "image" or not rec[0].strip():
                continue
            rows.append((rec[0].strip(), np.array([float(x) for x in rec[2:12]])))
    names: list[str] = []
    targets: list[np.ndarray] = []
    labels: list[int] = []
    for name, votes in rows:
        if not (folder / name).exists():
            continue
        maj = ferplus_majority(votes)
        if mode == "majority":
            if maj < 0:
                continue
            t = np.zeros(len(VOCABULARY), np.float32)
            t[maj] = 1.0
        else:
            dist = ferplus_distribution(votes)
            if dist is None:
                continue
            t = dist
        names.append(name)
        targets.append(t)
        labels.append(maj)
        if limit is not None and len(names) >= limit:
            break
    images = _load_images([folder / n for n in names], cache_dir, f"ferplus|{folder.resolve()}|{mode}|{limit}")
    return FaceSet(images, np.stack(targets), np.asarray(labels, np.int64), names)


def load_imagefolder(folder: str | Path, limit: int | None = None, cache_dir: str | None = None) -> FaceSet:
    """Load ``DIR/<label>/*`` (labels by vocabulary name or synonym; unknown folder names are skipped)."""
    folder = Path(folder)
    paths: list[Path] = []
    labels: list[int] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        lab = canonical_label(sub.name)
        if lab is None:
            continue
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() in IMAGE_EXTS:
                paths.append(f)
                labels.append(VOCABULARY.index(lab))
    if limit is not None:
        paths, labels = paths[:limit], labels[:limit]
    if not paths:
        raise ValueError(f"no labelled images under {folder}")
    images = _load_images(paths, cache_dir, f"imagefolder|{folder.resolve()}|{limit}")
    lab_arr = np.asarray(labels, np.int64)
    targets = np.eye(len(VOCABULARY), dtype=np.float32)[lab_arr]
    return FaceSet(images, targets, lab_arr, [str(p.relative_to(folder)) for p in paths])


def _load_images(paths: list[Path], cache_dir: str | None, key: str) -> np.ndarray:
    cp = _cache_path(cache_dir, key + f"|{len(paths)}")
    if cp is not None and cp.exists():
        with np.load(cp) as z:
            if z["images"].shape[0] == len(paths):
                return z["images"]
    images = np.empty((len(paths), INPUT_SIZE, INPUT_SIZE), np.uint8)
    for i, p in enumerate(paths):
        images[i] = _read_gray48(p)
    if cp is not None:
        cp.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cp, images=images)
    return images


def load_set(
    folder: str | Path, fmt: str, mode: str = "probability", limit: int | None = None, cache_dir: str | None = None
) -> FaceSet:
    """Dispatch on ``fmt`` (``ferplus`` or ``imagefolder``)."""
    if fmt == "ferplus":
        return load_ferplus(folder, mode=mode, limit=limit, cache_dir=cache_dir)
    return load_imagefolder(folder, limit=limit, cache_dir=cache_dir)
