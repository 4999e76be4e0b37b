"""Aligned 112x112 faces for the MobileFaceNet recipe, computed once and cached, with the teacher's logits.

``python -m emotion.model.training.faces --out /tmp/emotion_faces`` writes one ``.npz`` per set:

* ``ferplus_train`` / ``ferplus_holdout``: FER+ train (vote distributions); every 20th image (by file name) is
  held out for checkpoint choice and temperature calibration, never trained on.
* ``sfew_train`` / ``sfew_val``: SFEW 2.0 train split by film (:func:`emotion.model.crops.validation_groups`).
* ``ferplus_publictest``: FER+ PublicTest majority labels, the dev set; only ever evaluated.

Each face goes through the engine's own steps (:func:`emotion.model.crops.engine_input`, YuNet, the
least-squares similarity to the ArcFace template), so training sees what serving sees. The crop is placed in a
black frame of 0.5 x its size before detection, because YuNet misses many crops that fill the whole image; a
face YuNet still misses is aligned by the template (the whole crop as the face) and flagged ``found = 0``.

Arrays: ``images`` uint8 [N,112,112,3] RGB; ``targets`` float32 [N,8] (vocabulary order); ``labels`` int64 [N]
(-1: no majority); ``teacher`` float32 [N,7] (the int8 ONNX model's logits, upstream order); ``found`` uint8 [N];
``groups`` str [N] (film, or ``""``).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emotion.core.align import ARCFACE_112, align_face, upscale_factor
from emotion.core.detector import YuNetDetector
from emotion.core.engine import load_detector
from emotion.core.manifest import load_manifest
from emotion.core.model_files import runnable_model_path
from emotion.core.runtime import create_session
from emotion.model.crops import engine_input, validation_groups
from emotion.model.training import VOCABULARY
from emotion.model.training.data import expand_path, ferplus_distribution, ferplus_majority
from emotion.settings import get_settings

WIDER_MIN_WIDTH = 20.0  # px in the 416 px dev photos: smaller faces say little of an expression
FIND_SCORE = 0.3  # a face is known to be in the crop: accept YuNet's landmarks when it is unsure
FRAME_PAD = 0.5
HOLDOUT_EVERY = 20
TEACHER = "mobilefacenet"


def align_crop(bgr: np.ndarray, detector: YuNetDetector) -> tuple[np.ndarray, bool]:
    """(aligned RGB uint8 112x112x3, found by YuNet?) for one face crop."""
    image = engine_input(bgr, FRAME_PAD)
    faces = detector.detect(image)
    if len(faces):
        points = faces[0][4:14].reshape(5, 2)
    else:  # the whole crop, inside its frame, is the face
        h, w = engine_input(bgr).shape[:2]
        oy, ox = (image.shape[0] - h) / 2, (image.shape[1] - w) / 2
        points = ARCFACE_112 * [w / 112.0, h / 112.0] + [ox, oy]
    aligned = align_face(image, points)
    return cv2.cvtColor(aligned, cv2.COLOR_BGR2RGB), bool(len(faces))


def crop_landmarks(bgr: np.ndarray, detector: YuNetDetector) -> np.ndarray | None:
    """YuNet's 5 landmarks (5x2, in the crop's pixels) of the face in a face crop, found as :func:`align_crop`
    finds it (the crop enlarged and framed); None when YuNet finds no face."""
    faces = detector.detect(engine_input(bgr, FRAME_PAD))
    if not len(faces):
        return None
    factor = upscale_factor(*bgr.shape[:2])
    h, w = bgr.shape[0] * factor, bgr.shape[1] * factor
    frame = np.array([int(round(FRAME_PAD * w)), int(round(FRAME_PAD * h))], np.float64)
    return (faces[0][4:14].reshape(5, 2).astype(np.float64) - frame) / factor


def to_network(images: np.ndarray) -> np.ndarray:
    """uint8 RGB [N,112,112,3] -> float32 [N,3,112,112] in [-1, 1] (``align112_rgb_pm1``)."""
    return (images.astype(np.float32).transpose(0, 3, 1, 2) / 255.0 - 0.5) / 0.5


def teacher_logits(images: np.ndarray, threads: int = 1) -> np.ndarray:
    """The shipped MobileFaceNet's 7 logits (upstream order) through onnxruntime."""
    settings = get_settings()
    spec = load_manifest().get(TEACHER)
    sess = create_session(runnable_model_path(spec, settings.model_dir), ["CPUExecutionProvider"], threads)
    name = sess.get_inputs()[0].name
    step = 1 if isinstance(sess.get_inputs()[0].shape[0], int) else 32
    out = [sess.run(None, {name: to_network(images[i : i + step])})[0] for i in range(0, len(images), step)]
    return np.concatenate(out).astype(np.float32)


def _ferplus_rows(folder: Path, majority_only: bool) -> list[tuple[str, np.ndarray, int]]:
    rows = []
    with open(folder / "label.csv", newline="") as fh:
        for rec in csv.reader(fh):
            if not rec or not rec[0].strip() or not (folder / rec[0].strip()).exists():
                continue
            votes = np.array([float(x) for x in rec[2:12]])
            maj = ferplus_majority(votes)
            dist = ferplus_distribution(votes)
            if majority_only:
                if maj < 0:
                    continue
                dist = np.eye(len(VOCABULARY), dtype=np.float32)[maj]
            if dist is None:
                continue
            rows.append((rec[0].strip(), dist, maj))
    return sorted(rows, key=lambda r: r[0])


def build_set(paths: list[Path], targets: np.ndarray, labels: np.ndarray, groups: list[str], out: Path,
              detector: YuNetDetector, log: str) -> dict[str, Any]:
    t0 = time.time()
    images = np.empty((len(paths), 112, 112, 3), np.uint8)
    found = np.zeros(len(paths), np.uint8)
    for i, p in enumerate(paths):
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode {p}")
        images[i], found[i] = align_crop(bgr, detector)
        if i % 2000 == 0:
            print(f"[faces] {log}: {i}/{len(paths)} ({time.time() - t0:.0f}s)", flush=True)
    teacher = teacher_logits(images)
    np.savez(out, images=images, targets=targets.astype(np.float32), labels=labels.astype(np.int64),
             teacher=teacher, found=found, groups=np.array(groups), names=np.array([str(p) for p in paths]))
    info = {"set": log, "n": len(paths), "found": int(found.sum()), "seconds": round(time.time() - t0, 1)}
    print(f"[faces] {json.dumps(info)}", flush=True)
    return info


def build_wider(images_dir: Path, out: Path, min_width: float = WIDER_MIN_WIDTH, limit: int = 0) -> dict[str, Any]:
    """``out`` (the layout of :func:`build_set`, ``labels`` -1): every face the service finds (its detector and
    score threshold) at least ``min_width`` px wide in the WIDER dev photos, aligned from the whole photo. Unmasked
    colour faces of people at events, nearly none of them contempt: the check that a contempt prior chosen on the
    validation sets (FER+ crops, film stills, masked web crops) does not call ordinary photos contempt."""
    t0 = time.time()
    settings = get_settings()
    detector = load_detector(settings.score_threshold, settings.nms_threshold, ["CPUExecutionProvider"], 1)
    faces, names = [], []
    for path in sorted(images_dir.glob("*.jpg"))[: limit or None]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"cannot decode {path}")
        for row in detector.detect(bgr):
            if row[2] >= min_width:
                faces.append(cv2.cvtColor(align_face(bgr, row[4:14].reshape(5, 2)), cv2.COLOR_BGR2RGB))
                names.append(path.name)
    images = np.stack(faces) if faces else np.empty((0, 112, 112, 3), np.uint8)
    n = len(images)
    np.savez(out, images=images, targets=np.zeros((n, len(VOCABULARY)), np.float32), labels=np.full(n, -1, np.int64),
             teacher=np.zeros((n, 7), np.float32), found=np.ones(n, np.uint8), groups=np.array(names),
             names=np.array(names))
    info = {"set": out.stem, "n": n, "photos": len(set(names)), "seconds": round(time.time() - t0, 1)}
    print(f"[faces] {json.dumps(info)}", flush=True)
    return info


def build_all(out_dir: Path, only: list[str] | None = None, limit: int = 0) -> list[dict[str, Any]]:
    """Write every set (or ``only`` these) to ``out_dir``; ``limit`` > 0 keeps the first N of each (tests)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = get_settings()
    detector = load_detector(FIND_SCORE, settings.nms_threshold, ["CPUExecutionProvider"], 1)
    shared = expand_path("${SHARED}/data")
    eye = np.eye(len(VOCABULARY), dtype=np.float32)
    jobs: dict[str, tuple[list[Path], np.ndarray, np.ndarray, list[str]]] = {}

    def ferplus(folder: Path, majority: bool, keep: Callable[[int], bool]) -> tuple[Any, ...]:
        rows = [r for i, r in enumerate(_ferplus_rows(folder, majority)) if keep(i)]
        rows = rows[:limit] if limit else rows
        return ([folder / n for n, _, _ in rows], np.stack([d for _, d, _ in rows]),
                np.array([m for _, _, m in rows]), [""] * len(rows))

    wanted = only or ["sfew_val", "sfew_train", "ferplus_holdout", "ferplus_train", "ferplus_publictest", "wider_faces"]
    if "ferplus_train" in wanted:
        jobs["ferplus_train"] = ferplus(shared / "ferplus_train", False, lambda i: i % HOLDOUT_EVERY != 0)
    if "ferplus_holdout" in wanted:
        jobs["ferplus_holdout"] = ferplus(shared / "ferplus_train", False, lambda i: i % HOLDOUT_EVERY == 0)
    if "ferplus_publictest" in wanted:
        jobs["ferplus_publictest"] = ferplus(shared / "fer2013_publictest" / "ferplus_png", True, lambda i: True)
    sfew = shared / "sfew_train"
    with open(sfew / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    val_films = validation_groups([r["movie"] for r in rows])
    for name, is_val in (("sfew_train", False), ("sfew_val", True)):
        if name not in wanted:
            continue
        sel = [r for r in rows if (r["movie"] in val_films) == is_val]
        sel = sel[:limit] if limit else sel
        lab = np.array([VOCABULARY.index(r["label"]) for r in sel])
        jobs[name] = ([sfew / r["image"] for r in sel], eye[lab], lab, [r["movie"] for r in sel])
    infos = [build_set(*jobs[n], out_dir / f"{n}.npz", detector, n) for n in wanted if n in jobs]
    if "wider_faces" in wanted:
        infos.append(build_wider(shared / "detection" / "wider_val_416_dev" / "images", out_dir / "wider_faces.npz",
                                 limit=limit))
    return infos


def load_faces(path: str | Path) -> dict[str, np.ndarray]:
    """A cached set as a dict of arrays."""
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="faces", description="Cache aligned 112x112 faces and teacher logits.")
    ap.add_argument("--out", default="/tmp/emotion_faces")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args(argv)
    print(json.dumps(build_all(Path(a.out), a.only, a.limit), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
