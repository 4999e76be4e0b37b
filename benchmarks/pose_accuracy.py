"""How approximate ``pose`` is, on the faces whose pose is known in part (docs/benchmarks.md, "Pose and quality").

No data set here labels head pose, so each check tests what can be known:

* ``roll``: real faces turned in the image plane by known angles (the image rotated on a grown canvas): the
  roll read on the turned image minus the roll read upright should equal the turn. SFEW film stills (in a black
  frame of 0.5 x their size) and the faces of the scene photos.
* ``mirror``: the same faces mirrored left-right. A true yaw and roll change sign and a true pitch stays; what
  the estimate does instead (``yaw + yaw_mirrored``, ...) is error of the landmarks or of the generic face.
* ``wider_pose``: WIDER val faces labelled "atypical pose" (``pose`` = 1: turned or tilted far) against the
  typical ones: how well ``|yaw|`` tells them apart (median, share over 30 degrees, ROC AUC).
* ``model``: the generic 3-D face the estimate assumes, tilted, turned and rolled by known angles and seen
  without perspective: the estimate's own error when the face is exactly the average one (0 up to the template's
  rounding).

What none of these measures: the error of yaw and pitch in degrees on real heads (that needs pose labels), which
depends on each face's proportions (a longer nose reads as more yaw) and on perspective at close range.

    .venv/bin/python benchmarks/pose_accuracy.py [--every 4]

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import shared_dir  # noqa: E402

from emotion.core.cpu import cpu_info  # noqa: E402
from emotion.core.engine import default_options, get_engine  # noqa: E402
from emotion.core.facemeasures import GENERIC_FACE, face_pose  # noqa: E402

TURNS = (-30.0, -20.0, -10.0, 10.0, 20.0, 30.0)


def stats(values: list[float]) -> dict:
    a = np.abs(np.asarray(values, dtype=np.float64))
    if not len(a):
        return {"n": 0}
    return {"n": int(len(a)), "median": round(float(np.median(values)), 2), "median_abs": round(float(np.median(a)), 2),
            "p90_abs": round(float(np.percentile(a, 90)), 2),
            "max_abs": round(float(a.max()), 2)}


def turned(image: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The image turned ``degrees`` counter-clockwise on a canvas that holds all of it, and the 2x3 matrix."""
    h, w = image.shape[:2]
    cos, sin = abs(math.cos(math.radians(degrees))), abs(math.sin(math.radians(degrees)))
    cw, ch = round(h * sin + w * cos), round(h * cos + w * sin)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    m[:, 2] += (cw - w) / 2, (ch - h) / 2
    return cv2.warpAffine(image, m, (cw, ch)), m


def nearest(faces: np.ndarray, point: np.ndarray) -> np.ndarray | None:
    """The row whose box centre is nearest ``point``, if that centre lies within the box's own size of it."""
    if not len(faces):
        return None
    centres = faces[:, :2] + faces[:, 2:4] / 2
    d = np.linalg.norm(centres - point, axis=1)
    i = int(np.argmin(d))
    return faces[i] if d[i] < 0.5 * float(faces[i, 2:4].max()) else None


def real_faces(data: Path, every: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, upright row) for SFEW stills in a frame and the faces of the scene photos."""
    engine, options = get_engine(), default_options()
    out = []
    sfew = sorted((data / "sfew_train").glob("*/*.png"))[::every]
    for path in sfew:
        crop = cv2.imread(str(path))
        h, w = crop.shape[:2]
        image = cv2.copyMakeBorder(crop, h // 2, h // 2, w // 2, w // 2, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        faces = engine.detect(image, options)
        if len(faces):
            out.append((f"sfew/{path.name}", image, faces[0]))
    for path in sorted((data / "scenes").glob("*.jpg")):
        image = cv2.imread(str(path))
        for k, face in enumerate(engine.detect(image, options)):
            if min(face[2], face[3]) >= 40:
                out.append((f"scenes/{path.name}#{k}", image, face))
    return out


def roll_and_mirror(faces: list[tuple[str, np.ndarray, np.ndarray]]) -> dict:
    engine, options = get_engine(), default_options()
    roll_err: dict[str, list[float]] = {f"{t:g}": [] for t in TURNS}
    missed = {f"{t:g}": 0 for t in TURNS}
    yaw_sum, roll_sum, pitch_diff, yaw_abs, yaws, mirrored_yaws = [], [], [], [], [], []
    for _, image, face in faces:
        upright = face_pose(face)
        centre = face[:2] + face[2:4] / 2
        for t in TURNS:
            image_t, m = turned(image, t)
            found = nearest(engine.detect(image_t, options), m[:, :2] @ centre + m[:, 2])
            if found is None:
                missed[f"{t:g}"] += 1
                continue
            err = face_pose(found).roll - upright.roll - t
            roll_err[f"{t:g}"].append((err + 180) % 360 - 180)
        w = image.shape[1]
        mirrored = nearest(engine.detect(cv2.flip(image, 1), options), np.array([w - centre[0], centre[1]]))
        if mirrored is None:
            continue
        back = face_pose(mirrored)
        yaw_sum.append(upright.yaw + back.yaw)
        roll_sum.append(upright.roll + back.roll)
        pitch_diff.append(upright.pitch - back.pitch)
        yaw_abs.append(abs(upright.yaw))
        yaws.append(upright.yaw)
        mirrored_yaws.append(-back.yaw)
    every_turn = [e for v in roll_err.values() for e in v]
    return {
        "faces": len(faces),
        "roll_error_deg": {"all_turns": stats(every_turn), **{k: {**stats(v), "missed": missed[k]}
                                                              for k, v in roll_err.items()}},
        "mirror": {
            "pairs": len(yaw_sum),
            "yaw_plus_mirrored_yaw": stats(yaw_sum),
            "roll_plus_mirrored_roll": stats(roll_sum),
            "pitch_minus_mirrored_pitch": stats(pitch_diff),
            "median_abs_yaw": round(float(np.median(yaw_abs)), 2) if yaw_abs else None,
            "yaw_correlation_with_minus_mirrored": round(float(np.corrcoef(yaws, mirrored_yaws)[0, 1]), 3)
            if len(yaws) > 2 else None,
        },
    }


def wider_pose(data: Path) -> dict:
    """|yaw| of detections matched (IoU >= 0.5) to WIDER val faces of typical and atypical pose (both folders; the
    416 set's squashed images are detected as they are and the landmarks stretched back to the original aspect)."""
    from emotion.model.evaluate import _iou

    engine, options = get_engine(), default_options()
    out: dict[str, list[float]] = {"typical": [], "atypical": []}
    for folder in (data / "detection" / "wider_val_fullres", data / "detection" / "wider_val_416_dev"):
        with (folder / "gt_boxes.csv").open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if r["invalid"] == "0"]
        for name in sorted({r["image"] for r in rows}):
            mine = [r for r in rows if r["image"] == name]
            gt = np.array([[float(r[k]) for k in ("x", "y", "w", "h")] for r in mine])
            stretch = np.array([float(mine[0]["orig_w"]) / float(mine[0]["img_w"]),
                                float(mine[0]["orig_h"]) / float(mine[0]["img_h"])])
            for face in engine.detect(cv2.imread(str(folder / "images" / Path(name).name)), options):
                overlaps = _iou(face[:4].astype(np.float64), gt)
                best = int(np.argmax(overlaps))
                if overlaps[best] >= 0.5:
                    unsquashed = face.copy()
                    unsquashed[4:14] = (face[4:14].reshape(5, 2) * stretch).ravel()
                    out["atypical" if mine[best]["pose"] == "1" else "typical"].append(abs(face_pose(unsquashed).yaw))
    typical, atypical = np.array(out["typical"]), np.array(out["atypical"])
    # ROC AUC of |yaw| as a score for "atypical pose" (ties count half).
    wins = [(a > typical).mean() + 0.5 * (a == typical).mean() for a in atypical]
    auc = float(np.mean(wins)) if wins else None
    return {"images": "wider_val_fullres and wider_val_416_dev (default detection, score 0.6)",
            **{k: {"n": int(len(v)), "median_abs_yaw": round(float(np.median(v)), 1) if len(v) else None,
                   "share_over_30deg": round(float((v > 30).mean()), 3) if len(v) else None}
               for k, v in (("typical", typical), ("atypical", atypical))},
            "auc_abs_yaw_atypical_vs_typical": round(auc, 3) if auc is not None else None}


def model_check() -> dict:
    """The generic face tilted, turned and rolled by known angles, projected without perspective, read back."""
    points = GENERIC_FACE
    errors = []
    for yaw in range(-60, 61, 15):
        for pitch in range(-30, 31, 10):
            for roll in (-20, 0, 20):
                y, p, r = math.radians(yaw), math.radians(pitch), math.radians(roll)
                turn = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
                tilt = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
                spin = np.array([[math.cos(r), math.sin(r), 0], [-math.sin(r), math.cos(r), 0], [0, 0, 1]])
                xy = (spin @ turn @ tilt @ points.T).T[:, :2] * 3 + 200
                pose = face_pose(np.array([0, 0, 1, 1, *xy.ravel(), 1.0]))
                errors.append((pose.yaw - yaw, pose.pitch - pitch, pose.roll - roll))
    e = np.array(errors)
    return {"poses": len(e), "yaw_error": stats(list(e[:, 0])), "pitch_error": stats(list(e[:, 1])),
            "roll_error": stats(list(e[:, 2]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=4, help="use every N-th SFEW still (default 4)")
    args = parser.parse_args()
    data = shared_dir() / "data"
    faces = real_faces(data, args.every)
    report = {"cpu": cpu_info(), "model": model_check(), **roll_and_mirror(faces), "wider_pose": wider_pose(data)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
