"""Accuracy tools: classifier accuracy on labelled face crops, detector AP50 against ground-truth boxes."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emotion.core.align import ARCFACE_112
from emotion.core.classifiers import classifier_for
from emotion.core.engine import Engine, default_options, get_engine, load_detector
from emotion.core.errors import ModelUnavailable
from emotion.core.model_files import check_metadata
from emotion.core.runtime import create_session, resolve_providers
from emotion.core.vocabulary import EMOTIONS, canonical_emotion
from emotion.model.crops import UPSCALE_RULE, engine_input, upscale_factor, validation_groups
from emotion.settings import get_settings

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
CONTEMPT = "contempt"
ECE_BINS = 15


@dataclass(frozen=True)
class Item:
    path: Path
    label: str
    group: str = ""


def labelled_images(root: Path, limit: int = 0) -> list[Item]:
    """DIR/<label>/*; folder names may be vocabulary words or synonyms."""
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        label = canonical_emotion(folder.name)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        items += [Item(p, label) for p in (files[:limit] if limit else files)]
    return items


def labelled_from_csv(
    root: Path,
    csv_path: Path,
    image_column: str = "image",
    label_column: str = "label",
    group_by: str | None = None,
    validation_split_by: str | None = None,
    limit: int = 0,
) -> tuple[list[Item], int]:
    """(items, rows without a label) from a CSV whose image paths are relative to ``root``.

    ``validation_split_by``: keep only the rows of the held-out groups of that column (:func:`validation_groups`).
    """
    with csv_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for column in (image_column, label_column, group_by, validation_split_by):
        if column and rows and column not in rows[0]:
            raise ValueError(f"{csv_path}: no column {column!r} (columns: {', '.join(rows[0])})")
    if validation_split_by:
        keep = validation_groups([r[validation_split_by] for r in rows])
        rows = [r for r in rows if r[validation_split_by] in keep]
    items: list[Item] = []
    per_class: Counter = Counter()
    unlabelled = 0
    for r in rows:
        if not r[label_column].strip():
            unlabelled += 1
            continue
        label = canonical_emotion(r[label_column])
        if limit and per_class[label] >= limit:
            continue
        per_class[label] += 1
        items.append(Item(root / r[image_column], label, r[group_by] if group_by else ""))
    return items, unlabelled


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: |accuracy - mean confidence| per equal-width confidence bin, weighted by the bin's share."""
    if len(confidence) == 0:
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - confidence[sel].mean())
    return float(total)


def ece_if_calibrated(confidence: np.ndarray, observed: float, draws: int = 1000, seed: int = 0) -> dict:
    """What ECE a perfectly calibrated model with these confidences would show on this many crops.

    Each draw marks a crop correct with probability equal to its confidence. On a few hundred crops even a
    perfect model shows an ECE of several points, so an ECE is only evidence of miscalibration where it is
    rare among the draws: ``p_value`` is the share of draws at or above the observed ECE."""
    if len(confidence) == 0:
        return {"median": 0.0, "p95": 0.0, "p_value": 1.0, "draws": 0}
    rng = np.random.default_rng(seed)
    null = np.array([expected_calibration_error(confidence, (rng.random(len(confidence)) < confidence).astype(float))
                     for _ in range(draws)])
    return {"median": round(float(np.median(null)), 4), "p95": round(float(np.percentile(null, 95)), 4),
            "p_value": round(float((null >= observed - 1e-12).mean()), 4), "draws": draws}


def classification_report(truth: list[str], pred: list[str], labels: list[str]) -> dict:
    """n, accuracy, macro recall and macro F1 over the true classes, per-class recall/precision, confusion.

    ``pred`` may hold ``no_face``: it is wrong, and a column of the confusion matrix.
    """
    confusion: dict[str, Counter] = defaultdict(Counter)
    for t, p in zip(truth, pred, strict=True):
        confusion[t][p] += 1
    per_class = {}
    recalls, f1s = [], []
    for label in labels:
        tp = confusion[label][label]
        n_true = sum(confusion[label].values())
        n_pred = sum(confusion[t][label] for t in confusion)
        recall = tp / n_true if n_true else 0.0
        precision = tp / n_pred if n_pred else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        if n_true:
            recalls.append(recall)
            f1s.append(f1)
        per_class[label] = {"recall": round(recall, 4), "precision": round(precision, 4), "n": n_true}
    correct = sum(t == p for t, p in zip(truth, pred, strict=True))
    basic = [(t, p) for t, p in zip(truth, pred, strict=True) if t != CONTEMPT]
    basic_recalls = [per_class[c]["recall"] for c in labels if c != CONTEMPT and per_class[c]["n"]]
    called_contempt = sum(p == CONTEMPT for _, p in basic)
    return {
        "n": len(truth),
        "accuracy": round(correct / len(truth), 4) if truth else 0.0,
        "macro_recall": round(float(np.mean(recalls)), 4) if recalls else 0.0,
        "macro_f1": round(float(np.mean(f1s)), 4) if f1s else 0.0,
        "per_class": per_class,
        "confusion": {t: dict(confusion[t]) for t in labels if confusion[t]},
        # the 7 basic classes: crops labelled contempt left out (a guess of contempt on the rest is wrong)
        "basic7": {
            "n": len(basic),
            "accuracy": round(sum(t == p for t, p in basic) / len(basic), 4) if basic else 0.0,
            "macro_recall": round(float(np.mean(basic_recalls)), 4) if basic_recalls else 0.0,
        },
        # faces of any other class called contempt (the mask shortcut's symptom); no_face counts in the total
        "false_contempt": {
            "n": len(basic),
            "called_contempt": called_contempt,
            "rate": round(called_contempt / len(basic), 4) if basic else 0.0,
        },
    }


def crop_face_row(crop: np.ndarray) -> np.ndarray:
    """A YuNet-style row that makes the whole crop the face (template landmarks: alignment is a resize)."""
    h, w = crop.shape[:2]
    points = (ARCFACE_112 * [w / 112.0, h / 112.0]).ravel()
    return np.array([0, 0, w, h, *points, 1.0], dtype=np.float32)


def engine_with_file(classifier: str | None, path: Path) -> Engine:
    """The engine of ``classifier`` (its manifest entry: labels, preprocessing) running the graph at ``path`` in
    place of the installed file: a candidate not shipped yet, such as the fp32 export of a training checkpoint.
    The file's own metadata must agree with the entry."""
    base = get_engine(classifier)
    spec = base.classifier.spec
    settings = get_settings()
    session = create_session(path, resolve_providers(settings.providers), settings.intra_op_threads, spec.qdq_graph)
    try:
        check_metadata(spec, session.get_modelmeta().custom_metadata_map)
    except ModelUnavailable as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return Engine(base.detector, base.detector_version, classifier_for(spec, session))


def evaluate_classifier(
    root: Path,
    classifier: str | None = None,
    limit: int = 0,
    pad: float = 0.0,
    align: str = "auto",
    labels_csv: Path | None = None,
    image_column: str = "image",
    label_column: str = "label",
    group_by: str | None = None,
    validation_split_by: str | None = None,
    only_shared: bool = False,
    classifier_file: Path | None = None,
) -> dict[str, Any]:
    """Accuracy of a classifier on labelled face crops, each sent through the engine (detect, align, classify).

    A crop where the engine finds no face counts as wrong (``no_face``). Labels the classifier lacks count as
    wrong unless ``only_shared`` leaves those crops out. ``align="never"`` skips detection (the whole crop is
    the face), for crop-only models.
    """
    if group_by and labels_csv is None:
        raise ValueError("group_by needs a labels CSV")
    unlabelled = 0
    if labels_csv is not None:
        items, unlabelled = labelled_from_csv(root, labels_csv, image_column, label_column, group_by,
                                              validation_split_by, limit)
    else:
        items = labelled_images(root, limit)
    engine = get_engine(classifier) if classifier_file is None else engine_with_file(classifier, classifier_file)
    model = engine.classifier
    options = default_options()
    missing = sorted({it.label for it in items} - set(model.labels), key=EMOTIONS.index)
    if only_shared:
        items = [it for it in items if it.label in model.labels]
    truth, pred, groups = [], [], []
    confidence, correct = [], []
    upscaled = 0
    for it in items:
        crop = cv2.imread(str(it.path), cv2.IMREAD_COLOR)
        if crop is None:
            raise ValueError(f"cannot decode {it.path}")
        if align == "never":
            probs = model.classify(crop, crop_face_row(crop)[None, :])[0]
            emotions = dict(zip(model.labels, probs.tolist(), strict=True))
        else:
            upscaled += upscale_factor(*crop.shape[:2]) > 1
            faces = engine.analyze_array(engine_input(crop, pad), options).faces
            # the detector's most confident face
            emotions = {str(k): v for k, v in faces[0].emotions.items()} if faces else {}
        guess = max(emotions, key=emotions.__getitem__) if emotions else "no_face"
        truth.append(it.label)
        pred.append(guess)
        groups.append(it.group)
        if emotions:
            confidence.append(emotions[guess])
            correct.append(guess == it.label)
    labels = [c for c in EMOTIONS if c in model.labels or c in truth]
    report = classification_report(truth, pred, labels)
    ece = expected_calibration_error(np.array(confidence), np.array(correct, dtype=float))
    report.update(
        classifier=model.name,
        classifier_file=str(classifier_file) if classifier_file else None,
        mode="whole crop, no detection" if align == "never" else (f"in a frame (pad {pad:g})" if pad else "as sent"),
        no_face=pred.count("no_face"),
        ece=round(ece, 4),
        ece_note=f"{ECE_BINS} equal-width bins of the top probability, over the crops with a face",
        ece_if_calibrated=ece_if_calibrated(np.array(confidence), ece),
        upscaled=upscaled,
        upscale_rule=UPSCALE_RULE,
        labels_missing_from_classifier={
            "labels": missing,
            "policy": "left out (--only-shared)" if only_shared else "counted as wrong",
        },
    )
    if unlabelled:
        report["rows_without_label"] = unlabelled
    if group_by:
        by: dict[str, list[bool]] = defaultdict(list)
        for g, t, p in zip(groups, truth, pred, strict=True):
            by[g].append(t == p)
        report["groups"] = {
            "by": group_by,
            "n": len(by),
            "mean_group_accuracy": round(float(np.mean([np.mean(v) for v in by.values()])), 4) if by else 0.0,
            "accuracy": {g: round(float(np.mean(v)), 4) for g, v in sorted(by.items())},
        }
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
