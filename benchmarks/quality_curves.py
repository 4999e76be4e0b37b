"""Accuracy of the default classifier against each per-face quality and pose measure: the data behind
``quality.reliable`` (docs/benchmarks.md, "Pose and quality").

Every labelled crop goes through the engine as ``analyze`` runs it (``Engine.analyze_array`` with the default
options: small images enlarged, detected, aligned, classified), and the most confident face's ``quality`` and
``pose`` are recorded with whether its dominant emotion matches the label. Faces of every size come from the
same crops shrunk (area averaging) by the factors of ``--scales`` before they are sent, as a smaller face in a
photo would be.

Sets (``../shared/data``):
* ``ferplus_holdout``: FER+ train, every 20th image by file name (FER+ majority label): the images the default
  classifier's training held out (``emotion.model.training.faces``), the set the thresholds are read from;
* ``ferplus_publictest``: FER+ PublicTest, majority labels (dev);
* ``sfew_val``: the 10 SFEW validation films (``validation_groups`` by movie), as sent and in a black frame of
  0.5 x their size (dev; watched during training, never trained on).

    .venv/bin/python benchmarks/quality_curves.py [--scales 1,0.5,0.33,0.25] [--every 1] [--records out.jsonl]

Prints one JSON document on stdout: per set, the accuracy per bin of each measure, and of reliable and
unreliable faces at the thresholds in ``emotion.core.facemeasures``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import shared_dir  # noqa: E402

from emotion.core import facemeasures  # noqa: E402
from emotion.core.cpu import cpu_info  # noqa: E402
from emotion.core.engine import default_options, get_engine  # noqa: E402
from emotion.core.vocabulary import EMOTIONS, canonical_emotion  # noqa: E402
from emotion.model.crops import validation_groups  # noqa: E402
from emotion.model.training.faces import HOLDOUT_EVERY  # noqa: E402
from emotion.model.training.faces import _ferplus_rows as ferplus_rows  # noqa: E402

BINS = {
    "brightness": [0, 20, 40, 60, 80, 120, 160, 200, 256],
    "sharpness": [0, 5, 10, 20, 40, 80, 160, float("inf")],
    "size": [0, 12, 16, 20, 24, 32, 48, 64, float("inf")],
    "abs_yaw": [0, 10, 20, 30, 45, 90],
    "abs_pitch": [0, 10, 20, 30, 90],
}


def ferplus_holdout(data: Path) -> Iterator[tuple[Path, str]]:
    folder = data / "ferplus_train"
    for i, (name, _, majority) in enumerate(ferplus_rows(folder, False)):
        if i % HOLDOUT_EVERY == 0 and majority >= 0:
            yield folder / name, EMOTIONS[majority]  # FER+ vote order is the vocabulary's


def ferplus_publictest(data: Path) -> Iterator[tuple[Path, str]]:
    folder = data / "fer2013_publictest"
    with (folder / "labels.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            if row["ferplus_majority"].strip():
                yield folder / row["ferplus_png"], canonical_emotion(row["ferplus_majority"])


def sfew_val(data: Path) -> Iterator[tuple[Path, str]]:
    folder = data / "sfew_train"
    with (folder / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    keep = validation_groups([r["movie"] for r in rows])
    for row in rows:
        if row["movie"] in keep:
            yield folder / row["image"], canonical_emotion(row["label"])


def shrunk(image: np.ndarray, scale: float, pad: float) -> np.ndarray:
    if pad:
        h, w = image.shape[:2]
        py, px = round(pad * h), round(pad * w)
        image = cv2.copyMakeBorder(image, py, py, px, px, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if scale != 1.0:
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def table(records: list[dict], measure: str) -> list[dict]:
    edges = BINS[measure]
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        hits = [r["correct"] for r in records if lo <= r[measure] < hi]
        if hits:
            rows.append({"bin": f"{lo:g}-{hi:g}", "n": len(hits), "accuracy": round(float(np.mean(hits)), 4)})
    return rows


def summary(records: list[dict]) -> dict:
    reliable = [r["correct"] for r in records if r["reliable"]]
    unreliable = [r["correct"] for r in records if not r["reliable"]]
    return {
        "faces": len(records),
        "accuracy": round(float(np.mean([r["correct"] for r in records])), 4) if records else None,
        "reliable": {"n": len(reliable), "accuracy": round(float(np.mean(reliable)), 4) if reliable else None},
        "unreliable": {"n": len(unreliable), "accuracy": round(float(np.mean(unreliable)), 4) if unreliable else None},
        "bins": {m: table(records, m) for m in BINS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,0.5,0.33,0.25", help="shrink factors (comma list)")
    parser.add_argument("--every", type=int, default=1, help="use every N-th crop of each set (default: all)")
    parser.add_argument("--records", type=Path, help="also write one JSON line per face here")
    args = parser.parse_args()
    data = shared_dir() / "data"
    engine, options = get_engine(), default_options()
    scales = [float(s) for s in args.scales.split(",")]
    sets = {"ferplus_holdout": (ferplus_holdout, 0.0), "ferplus_publictest": (ferplus_publictest, 0.0),
            "sfew_val": (sfew_val, 0.0), "sfew_val_pad0.5": (sfew_val, 0.5)}
    report: dict = {"cpu": cpu_info(), "thresholds": {"min_brightness": facemeasures.MIN_BRIGHTNESS,
                                   "min_sharpness": facemeasures.MIN_SHARPNESS, "min_size": facemeasures.MIN_SIZE},
                    "classifier": engine.classifier.spec.version, "scales": scales, "sets": {}}
    out = args.records.open("w") if args.records else None
    for name, (items, pad) in sets.items():
        records: list[dict] = []
        no_face = crops = 0
        for path, label in list(items(data))[:: args.every]:
            crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
            for scale in scales:
                crops += 1
                faces = engine.analyze_array(shrunk(crop, scale, pad), options).faces
                if not faces:
                    no_face += 1
                    continue
                face = faces[0]
                record = {"set": name, "image": path.name, "scale": scale, "label": label,
                          "predicted": face.dominant_emotion, **face.quality.model_dump(),
                          "yaw": face.pose.yaw, "pitch": face.pose.pitch, "roll": face.pose.roll,
                          "abs_yaw": abs(face.pose.yaw), "abs_pitch": abs(face.pose.pitch)}
                record["correct"] = record["label"] == record["predicted"]
                records.append(record)
                if out:
                    out.write(json.dumps(record) + "\n")
        report["sets"][name] = {"crops_sent": crops, "no_face": no_face, **summary(records)}
        for scale in scales:
            mine = [r for r in records if r["scale"] == scale]
            accuracy = round(float(np.mean([r["correct"] for r in mine])), 4) if mine else None
            report["sets"][name].setdefault("by_scale", {})[f"{scale:g}"] = {
                "faces": len(mine), "accuracy": accuracy,
                "median_size": float(np.median([r["size"] for r in mine])) if mine else None}
    if out:
        out.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
