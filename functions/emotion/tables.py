"""Tables of many results: the faces CSV (one row per face) and the collection summary.

The one place that turns analysis results into rows and counts, used by the collection job
(``faces.csv``, ``summary.json``) and by the CLI (``emotion analyze --csv`` / ``--format csv``), so a file
analysed locally and the same file in a collection give the same row.

An image without a face gets one row whose face columns are empty; an image that failed gets one row with
its error code in ``error`` and every other column empty. An image name that a spreadsheet would read as a
formula (it starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) is written with a leading ``'``.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from emotion.core.vocabulary import EMOTIONS

#: Columns of a face row: ``face`` counts from 1 within its image; the box is integer pixels of the image.
FACE_COLUMNS = ("image", "face", "x", "y", "width", "height", "confidence", "dominant_emotion", *EMOTIONS)
#: Per-face pose (degrees) and quality columns (empty for a result from before faces carried them).
EXTRA_COLUMNS = ("pose_yaw", "pose_pitch", "pose_roll", "quality_brightness", "quality_sharpness", "quality_size",
                 "quality_reliable")
CSV_COLUMNS = (*FACE_COLUMNS, *EXTRA_COLUMNS, "error")


def spreadsheet_safe(text: str) -> str:
    """``text`` as a CSV cell no spreadsheet runs as a formula (OWASP's CSV-injection advice)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def face_rows(name: str, result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The CSV rows of one image: ``result`` is an analysis result as JSON (``model_dump()``), or
    ``{"error": {"code", "message"}}`` for an image that failed."""
    empty: dict[str, Any] = dict.fromkeys(CSV_COLUMNS, "")
    name = spreadsheet_safe(name)
    error = result.get("error")
    if error:
        return [{**empty, "image": name, "error": error.get("code", "error")}]
    faces = result.get("faces") or []
    if not faces:
        return [{**empty, "image": name}]
    rows = []
    for number, face in enumerate(faces, start=1):
        box = face["box"]
        row = {**empty, "image": name, "face": number, "x": box["x"], "y": box["y"], "width": box["width"],
               "height": box["height"], "confidence": round(float(face["confidence"]), 4),
               "dominant_emotion": face["dominant_emotion"]}
        for label in EMOTIONS:
            value = face["emotions"].get(label)
            row[label] = "" if value is None else value
        pose = face.get("pose") or {}
        for axis in ("yaw", "pitch", "roll"):
            if pose.get(axis) is not None:
                row[f"pose_{axis}"] = pose[axis]
        quality = face.get("quality") or {}
        for measure in ("brightness", "sharpness", "size", "reliable"):
            if quality.get(measure) is not None:
                row[f"quality_{measure}"] = quality[measure]
        rows.append(row)
    return rows


def csv_header() -> str:
    """The header line of ``faces.csv``."""
    return _csv_text([dict(zip(CSV_COLUMNS, CSV_COLUMNS, strict=True))])


def csv_lines(name: str, result: Mapping[str, Any]) -> str:
    """The CSV text (without header) of one image's rows."""
    return _csv_text(face_rows(name, result))


def _csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


class Summary:
    """Counts over a collection: images, faces, images with no face, failures by code, dominant emotions and
    mean probabilities over every face. Add results in any order; :meth:`as_dict` is ``summary.json``."""

    def __init__(self) -> None:
        self.images = 0
        self.faces = 0
        self.no_face = 0
        self.failed: list[dict[str, str]] = []
        self.dominant: Counter[str] = Counter()
        self.sums: dict[str, float] = dict.fromkeys(EMOTIONS, 0.0)
        self.counted: Counter[str] = Counter()  # faces whose classifier has this label

    def add(self, name: str, result: Mapping[str, Any]) -> None:
        self.images += 1
        error = result.get("error")
        if error:
            self.failed.append({"image": name, "code": str(error.get("code", "error"))})
            return
        faces = result.get("faces") or []
        if not faces:
            self.no_face += 1
        for face in faces:
            self.faces += 1
            self.dominant[face["dominant_emotion"]] += 1
            for label, value in face["emotions"].items():
                self.sums[label] += float(value)
                self.counted[label] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "analysed": self.images - len(self.failed),
            "faces": self.faces,
            "images_without_face": self.no_face,
            "failed": len(self.failed),
            "failures_by_code": dict(sorted(Counter(f["code"] for f in self.failed).items())),
            "failures": self.failed,
            "dominant_emotions": {label: self.dominant.get(label, 0) for label in EMOTIONS},
            "mean_probabilities": {label: round(self.sums[label] / self.counted[label], 4)
                                   for label in EMOTIONS if self.counted[label]},
        }
