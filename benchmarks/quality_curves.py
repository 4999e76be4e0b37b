"""Accuracy of the default classifier against each per-face quality and pose measure: the data behind
``quality.reliable`` (docs/benchmarks.md, "Pose and quality").

Every labelled crop goes through the engine as ``analyze`` runs it (``Engine.analyze_array`` with the default
options: small images enlarged, detected, aligned, classified), and the most confident face's ``quality`` and
``pose`` are recorded with whether its dominant emotion matches the label. Faces of every size come from the
same crops shrunk (area averaging) by the factors of ``--scales`` before they are sent, as a smaller face in a
photo would be; dark and blurred faces from the held-out FER+ crops darkened and blurred by known amounts.

Sets (``../shared/data``):
* ``ferplus_holdout``: FER+ train, every 20th image by file name (FER+ majority label): the images the default
  classifier's training held out (``emotion.model.training.faces``), the set the thresholds are read from;
  ``ferplus_holdout_darkened`` / ``_blurred``: the same crops darkened (grey levels x 0.5 ... 0.12) and blurred
  (Gaussian, sigma 0.7-2 px of the 48 px crop);
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
from collections.abc import Callable, Iterator
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


Variant = tuple[str, Callable[[np.ndarray], np.ndarray]]


def shrinking(scales: list[float], pad: float) -> list[Variant]:
    return [(f"scale {s:g}", lambda im, s=s: shrunk(im, s, pad)) for s in scales]


def darkening(factors: list[float]) -> list[Variant]:
    """The crop's grey levels multiplied by each factor (8-bit, as an underexposed photo stores them)."""
    return [(f"x{f:g} brightness", lambda im, f=f: np.clip(np.rint(im * f), 0, 255).astype(np.uint8))
            for f in factors]


def blurring(sigmas: list[float]) -> list[Variant]:
    """Gaussian blur of each sigma, in the crop's own pixels (0: as it is)."""
    return [(f"blur {s:g} px", lambda im, s=s: cv2.GaussianBlur(im, (0, 0), s) if s else im) for s in sigmas]


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
    parser.add_argument("--sets", help="comma list of the sets to run (default: all)")
    parser.add_argument("--records", type=Path, help="also write one JSON line per face here")
    args = parser.parse_args()
    data = shared_dir() / "data"
    engine, options = get_engine(), default_options()
    scales = [float(s) for s in args.scales.split(",")]
    sets: dict[str, tuple[Callable[[Path], Iterator[tuple[Path, str]]], list[Variant]]] = {
        "ferplus_holdout": (ferplus_holdout, shrinking(scales, 0.0)),
        "ferplus_holdout_darkened": (ferplus_holdout, darkening([1.0, 0.5, 0.3, 0.2, 0.12])),
        "ferplus_holdout_blurred": (ferplus_holdout, blurring([0.0, 0.7, 1.0, 1.5, 2.0])),
        "ferplus_publictest": (ferplus_publictest, shrinking(scales, 0.0)),
        "sfew_val": (sfew_val, shrinking(scales, 0.0)),
        "sfew_val_pad0.5": (sfew_val, shrinking(scales, 0.5)),
    }
    chosen = args.sets.split(",") if args.sets else list(sets)
    report: dict = {"cpu": cpu_info(), "thresholds": {"min_brightness": facemeasures.MIN_BRIGHTNESS,
                                                      "min_sharpness": facemeasures.MIN_SHARPNESS,
                                                      "min_size": facemeasures.MIN_SIZE},
                    "classifier": engine.classifier.spec.version, "sets": {}}
    out = args.records.open("w") if args.records else None
    for name in chosen:
        items, variants = sets[name]
        records: list[dict] = []
        no_face = crops = 0
        for path, label in list(items(data))[:: args.every]:
            crop = cv2.imread(str(path), cv2.IMREAD_COLOR)
            for variant, change in variants:
                crops += 1
                faces = engine.analyze_array(change(crop), options).faces
                if not faces:
                    no_face += 1
                    continue
                face = faces[0]
                record = {"set": name, "image": path.name, "variant": variant, "label": label,
                          "predicted": face.dominant_emotion, **face.quality.model_dump(),
                          "yaw": face.pose.yaw, "pitch": face.pose.pitch, "roll": face.pose.roll,
                          "abs_yaw": abs(face.pose.yaw), "abs_pitch": abs(face.pose.pitch)}
                record["correct"] = record["label"] == record["predicted"]
                records.append(record)
                if out:
                    out.write(json.dumps(record) + "\n")
        report["sets"][name] = {"crops_sent": crops, "no_face": no_face, **summary(records), "by_variant": {}}
        for variant, _ in variants:
            mine = [r for r in records if r["variant"] == variant]
            accuracy = round(float(np.mean([r["correct"] for r in mine])), 4) if mine else None
            report["sets"][name]["by_variant"][variant] = {
                "faces": len(mine), "accuracy": accuracy,
                **{f"median_{m}": float(np.median([r[m] for r in mine])) if mine else None
                   for m in ("brightness", "sharpness", "size")}}
    if out:
        out.close()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
