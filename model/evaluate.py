"""Accuracy tools: classifier accuracy on labelled face crops, detector AP50 against ground-truth boxes."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np

from emotion.core.align import ARCFACE_112
from emotion.core.detector import YuNetDetector
from emotion.core.engine import get_engine, load_detector
from emotion.core.runtime import resolve_providers
from emotion.core.vocabulary import EMOTIONS, canonical_emotion
from emotion.settings import get_settings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
CROP_UPSCALE = 6  # 48 px FER crops are too small for YuNet's landmarks (FER+ PNGs: x4 72.7%, x6 73.7%)
CROP_SCORE = 0.3  # a face is known to be there: take YuNet's landmarks even when it is unsure
CROP_PAD = 0.25  # YuNet needs some context around a face that fills the frame


def labelled_images(root: Path, limit: int = 0) -> list[tuple[Path, str]]:
    """(path, canonical label) for DIR/<label>/*; folder names may be vocabulary words or synonyms."""
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = canonical_emotion(folder.name)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items += [(p, label) for p in (files[:limit] if limit else files)]
    return items


def crop_face_row(crop: np.ndarray, detector: YuNetDetector | None) -> tuple[np.ndarray, np.ndarray, bool]:
    """(image, YuNet-style row, aligned?) for a face crop: landmarks from YuNet if it finds the face,
    else the whole crop with template landmarks (alignment then reduces to a plain resize)."""
    if detector is not None:
        up = cv2.resize(crop, None, fx=CROP_UPSCALE, fy=CROP_UPSCALE, interpolation=cv2.INTER_CUBIC)
        h, w = up.shape[:2]
        pad = int(CROP_PAD * max(h, w))
        padded = cv2.copyMakeBorder(up, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        faces = detector.detect(padded)
        if len(faces):
            row = faces[0].copy()
            row[[0, 4, 6, 8, 10, 12]] -= pad
            row[[1, 5, 7, 9, 11, 13]] -= pad
            return up, row, True
    h, w = crop.shape[:2]
    points = (ARCFACE_112 * [w / 112.0, h / 112.0]).ravel()
    return crop, np.array([0, 0, w, h, *points, 1.0], dtype=np.float32), False


def classification_report(truth: list[str], pred: list[str], labels: list[str]) -> dict:
    """n, accuracy, macro_f1 and per-class recall/precision over ``labels``, plus the confusion matrix."""
    confusion: dict[str, Counter] = defaultdict(Counter)
    for t, p in zip(truth, pred, strict=True):
        confusion[t][p] += 1
    per_class = {}
    f1s = []
    for label in labels:
        tp = confusion[label][label]
        n_true = sum(confusion[label].values())
        n_pred = sum(confusion[t][label] for t in confusion)
        recall = tp / n_true if n_true else 0.0
        precision = tp / n_pred if n_pred else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if n_true:
            f1s.append(f1)
        per_class[label] = {"recall": round(recall, 4), "precision": round(precision, 4), "n": n_true}
    correct = sum(t == p for t, p in zip(truth, pred, strict=True))
    return {
        "n": len(truth),
        "accuracy": round(correct / len(truth), 4) if truth else 0.0,
        "macro_f1": round(float(np.mean(f1s)), 4) if f1s else 0.0,
        "per_class": per_class,
        "confusion": {t: dict(confusion[t]) for t in labels if confusion[t]},
    }


def evaluate_classifier(root: Path, classifier: str | None = None, limit: int = 0, align: str = "auto") -> dict:
    """Accuracy of a classifier on DIR/<label>/* face crops (one face per image)."""
    engine = get_engine(classifier)
    model = engine.classifier
    settings = get_settings()
    detector = None
    if align == "auto":
        detector = load_detector(CROP_SCORE, settings.nms_threshold, resolve_providers(settings.providers),
                                 settings.intra_op_threads)
    truth, pred = [], []
    skipped: Counter = Counter()
    aligned = 0
    for path, label in labelled_images(root, limit):
        if label not in model.labels:
            skipped[f"label {label} not in the classifier"] += 1
            continue
        crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if crop is None:
            skipped["unreadable"] += 1
            continue
        image, row, found = crop_face_row(crop, detector)
        aligned += found
        probs = model.classify(image, row[None, :])[0]
        truth.append(label)
        pred.append(model.labels[int(np.argmax(probs))])
    report = classification_report(truth, pred, [c for c in EMOTIONS if c in model.labels])
    report.update(
        classifier=model.name,
        skipped=dict(skipped),
        face_input={"landmarks_from_yunet": aligned, "whole_crop": len(truth) - aligned},
    )
    return report


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    return inter / (box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter + 1e-9)


def read_ground_truth(csv_path: Path) -> dict[str, list[tuple[list[float], bool]]]:
    """image → [(x, y, w, h), ignored?]; rows with invalid=1 are ignored (neither hit nor miss)."""
    truth: dict[str, list[tuple[list[float], bool]]] = defaultdict(list)
    with csv_path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            box = [float(row[k]) for k in ("x", "y", "w", "h")]
            truth[row["image"]].append((box, str(row.get("invalid", "0")).strip() == "1"))
    return truth


def evaluate_detector(
    images_dir: Path, gt_csv: Path, max_side: int | None = None, iou: float = 0.5, score_floor: float = 0.05
) -> dict:
    """AP at IoU 0.5 (all-point interpolation), and recall/precision at the service's score threshold."""
    settings = get_settings()
    detector = load_detector(score_floor, settings.nms_threshold, resolve_providers(settings.providers),
                             settings.intra_op_threads)
    side = settings.detect_max_side if max_side is None else max_side
    truth = read_ground_truth(gt_csv)
    scored: list[tuple[float, bool]] = []  # (score, true positive?) over all images
    n_faces = 0
    for image_name, faces in sorted(truth.items()):
        path = images_dir / image_name
        if not path.is_file():  # CSV paths may be relative to the CSV's folder (images/x.jpg)
            path = images_dir / Path(image_name).name
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(path)
        gt = np.array([b for b, _ in faces], dtype=np.float64).reshape(-1, 4)
        ignored = np.array([ig for _, ig in faces], dtype=bool)
        n_faces += int((~ignored).sum())
        matched = np.zeros(len(gt), dtype=bool)
        for det in detector.detect(bgr, side):  # highest score first
            overlaps = _iou(det[:4].astype(np.float64), gt) if len(gt) else np.zeros(0)
            candidates = np.where((overlaps >= iou) & ~matched)[0]
            if len(candidates):
                best = candidates[np.argmax(overlaps[candidates])]
                matched[best] = True
                if ignored[best]:
                    continue
                scored.append((float(det[14]), True))
            elif len(gt) and (overlaps >= iou).any() and ignored[np.argmax(overlaps)]:
                continue
            else:
                scored.append((float(det[14]), False))
    scored.sort(key=lambda s: -s[0])
    hits = np.array([tp for _, tp in scored], dtype=bool)
    tp_cum = np.cumsum(hits)
    fp_cum = np.cumsum(~hits)
    recall = tp_cum / max(n_faces, 1)
    precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
    # All-point interpolated AP (VOC 2010+): precision envelope integrated over recall.
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    ap = float(np.sum((mrec[1:] - mrec[:-1]) * mpre[1:]))
    at_threshold = np.array([s >= settings.score_threshold for s, _ in scored], dtype=bool)
    tp_at = int(hits[at_threshold].sum())
    n_at = int(at_threshold.sum())
    return {
        "n_images": len(truth),
        "n_faces": n_faces,
        "ap50": round(ap * 100, 2),
        "recall50": round(100 * tp_at / max(n_faces, 1), 2),
        "precision50": round(100 * tp_at / max(n_at, 1), 2),
        "score_threshold": settings.score_threshold,
        "detect_max_side": side,
    }
