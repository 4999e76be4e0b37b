"""False faces from the rotated retry: how often does detection find a "face" in a face-free image, with the
retry off and on?

There is no face-free photo set in ``../shared``, so this cuts one out of the photos we have: windows of the
WIDER val images (both folders) and the scene photos that keep clear of every face. A window is kept when it
overlaps no ground-truth box (WIDER) and no face YuNet finds on the whole image at a low score (0.3), each grown
by half its size, so unlabelled and half-visible faces stay out. Windows are 64-320 px squares at random
places (fixed seed), at most ``--per-image`` per photo, overlapping each other by at most IoU 0.3.

Each window goes through the engine's detection as ``analyze`` runs it (``Engine.detect_enlarged``: a window
under 112 px is enlarged first) with the default options, once with ``rotated_retry`` off and once on. A window
where a face is found is a false face (the windows were chosen to hold none). ``--sheet PNG`` writes a contact
sheet of the windows the retry alone turned into a face, with the mapped boxes drawn, to check by eye.

    .venv/bin/python benchmarks/retry_false_positives.py [--per-image 12] [--sheet retry_fp.png]

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import shared_dir  # noqa: E402

from emotion.core.align import upscale_factor  # noqa: E402
from emotion.core.cpu import cpu_info
from emotion.core.detector import to_input_pixels  # noqa: E402
from emotion.core.engine import DetectOptions, Engine, default_options, get_engine  # noqa: E402


def faces_in(engine: Engine, image: np.ndarray, options: DetectOptions) -> np.ndarray:
    """The rows the engine's analysis finds (a small window enlarged first, as ``analyze`` does), in the
    window's pixels."""
    _, rows, factor = engine.detect_enlarged(image, options)
    return to_input_pixels(rows, factor)


def _grown(boxes: np.ndarray, by: float = 0.5) -> np.ndarray:
    """[N,4] x,y,w,h boxes grown by ``by`` of their size on every side."""
    x, y, w, h = boxes.T if len(boxes) else np.zeros((4, 0))
    return np.stack([x - by * w, y - by * h, w * (1 + 2 * by), h * (1 + 2 * by)], 1)


def _overlaps(window: np.ndarray, boxes: np.ndarray) -> bool:
    x, y, s = window
    if not len(boxes):
        return False
    return bool(np.any((boxes[:, 0] < x + s) & (boxes[:, 0] + boxes[:, 2] > x)
                       & (boxes[:, 1] < y + s) & (boxes[:, 1] + boxes[:, 3] > y)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[2], b[1] + b[2]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] ** 2 + b[2] ** 2 - inter)


def photos(shared: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, ground-truth boxes [N,4]) for the WIDER val images and the scene photos (no ground truth)."""
    out = []
    for folder in ("wider_val_fullres", "wider_val_416_dev"):
        root = shared / "data" / "detection" / folder
        boxes: dict[str, list[list[float]]] = defaultdict(list)
        with (root / "gt_boxes.csv").open() as fh:
            for row in csv.DictReader(fh):
                boxes[row["image"]].append([float(row[k]) for k in ("x", "y", "w", "h")])
        for image, rows in sorted(boxes.items()):
            out.append((f"{folder}/{image}", cv2.imread(str(root / image)), np.array(rows, np.float32)))
    for path in sorted((shared / "data" / "scenes").glob("*.jpg")):
        out.append((f"scenes/{path.name}", cv2.imread(str(path)), np.zeros((0, 4), np.float32)))
    return out


def windows(image: np.ndarray, avoid: np.ndarray, per_image: int, rng: np.random.Generator) -> list[np.ndarray]:
    height, width = image.shape[:2]
    chosen: list[np.ndarray] = []
    for _ in range(400):
        if len(chosen) == per_image:
            break
        side = int(rng.integers(64, 321))
        if side >= min(height, width):
            continue
        w = np.array([rng.integers(0, width - side), rng.integers(0, height - side), side], np.float32)
        if not _overlaps(w, avoid) and all(_iou(w, c) <= 0.3 for c in chosen):
            chosen.append(w)
    return chosen


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-image", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sheet", help="PNG contact sheet of the windows where only the retry found a face")
    args = ap.parse_args()

    engine = get_engine()
    upright = dataclasses.replace(default_options(), rotated_retry=False)
    retry = dataclasses.replace(default_options(), rotated_retry=True)
    loose = dataclasses.replace(upright, score_threshold=0.3, min_face=0)
    rng = np.random.default_rng(args.seed)
    counts = {"windows": 0, "photos": 0, "faces_upright": 0, "faces_with_retry": 0,
              "small_windows": 0, "small_faces_upright": 0, "small_faces_with_retry": 0}  # small: enlarged
    sheet_tiles: list[np.ndarray] = []
    retry_only: list[dict] = []
    for name, image, truth in photos(shared_dir()):
        found = engine.detect(image, loose)[:, :4]
        avoid = _grown(np.concatenate([truth, found]))
        counts["photos"] += 1
        for x, y, side in windows(image, avoid, args.per_image, rng):
            crop = np.ascontiguousarray(image[int(y) : int(y + side), int(x) : int(x + side)])
            counts["windows"] += 1
            up = len(faces_in(engine, crop, upright)) > 0
            faces = faces_in(engine, crop, retry)
            counts["faces_upright"] += up
            counts["faces_with_retry"] += len(faces) > 0
            if upscale_factor(*crop.shape[:2]) > 1:
                counts["small_windows"] += 1
                counts["small_faces_upright"] += up
                counts["small_faces_with_retry"] += len(faces) > 0
            if len(faces) and not up:
                shown = cv2.resize(crop, (160, 160))
                for f in faces * (160 / side):
                    cv2.rectangle(shown, (int(f[0]), int(f[1])), (int(f[0] + f[2]), int(f[1] + f[3])), (0, 0, 255), 2)
                sheet_tiles.append(shown)
                retry_only.append({"photo": name, "window": [int(x), int(y), int(side)],
                                   "scores": [round(float(v), 3) for v in faces[:, 14]]})
    n = max(1, counts["windows"])
    report = {**counts,
              "false_face_rate_upright": round(counts["faces_upright"] / n, 4),
              "false_face_rate_with_retry": round(counts["faces_with_retry"] / n, 4), "retry_only": retry_only}
    if args.sheet and sheet_tiles:
        rows = [np.hstack(sheet_tiles[i : i + 8] + [np.zeros_like(sheet_tiles[0])] * (8 - len(sheet_tiles[i : i + 8])))
                for i in range(0, len(sheet_tiles), 8)]
        cv2.imwrite(args.sheet, np.vstack(rows))
        report["sheet"] = args.sheet
    print(json.dumps({"cpu": cpu_info(), **report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
