"""The faces CSV rows and the collection summary (emotion.tables), from real analysis results."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from emotion.tables import CSV_COLUMNS, Summary, csv_header, csv_lines, face_rows


def test_rows_for_faces_no_face_and_failure(model_dir: Path, scenes: Path) -> None:
    from emotion import Analyzer

    result = Analyzer().analyze(scenes / "fr_two_people.jpg").model_dump()
    rows = face_rows("a/two.jpg", result)
    assert len(rows) == len(result["faces"]) >= 2
    assert [r["face"] for r in rows] == list(range(1, len(rows) + 1))
    first, face = rows[0], result["faces"][0]
    assert (first["x"], first["y"], first["width"], first["height"]) == tuple(face["box"].values())
    assert first["dominant_emotion"] == face["dominant_emotion"] and first["error"] == ""
    assert all(first[label] == p for label, p in face["emotions"].items())
    empty = face_rows("blank.png", {"image": {"width": 64, "height": 64}, "faces": []})
    assert len(empty) == 1 and empty[0]["image"] == "blank.png" and empty[0]["face"] == "" == empty[0]["error"]
    failed = face_rows("x.txt", {"error": {"code": "unsupported_media_type", "message": "..."}})
    assert failed == [{**dict.fromkeys(CSV_COLUMNS, ""), "image": "x.txt", "error": "unsupported_media_type"}]
    text = csv_header() + csv_lines("a/two.jpg", result) + csv_lines("x.txt", {"error": {"code": "e"}})
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == len(rows) + 1 and tuple(parsed[0]) == CSV_COLUMNS


def test_pose_and_quality_columns_when_present() -> None:
    face = {"box": {"x": 1, "y": 2, "width": 3, "height": 4}, "confidence": 0.91234, "dominant_emotion": "fear",
            "emotions": {"fear": 0.7, "neutral": 0.3}, "pose": {"yaw": -12.5, "pitch": 3.0, "roll": 1.5},
            "quality": {"brightness": 0.4, "sharpness": 0.8, "size": 120, "reliable": True}}
    (row,) = face_rows("p.jpg", {"faces": [face]})
    assert (row["pose_yaw"], row["pose_pitch"], row["pose_roll"]) == (-12.5, 3.0, 1.5)
    assert row["quality_reliable"] is True and row["confidence"] == 0.9123 and row["contempt"] == ""


def test_names_that_look_like_formulas_are_neutralised() -> None:
    for name in ("=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "\tx"):
        (row,) = face_rows(name, {"faces": []})
        assert row["image"] == "'" + name
    assert face_rows("ok-=.jpg", {"faces": []})[0]["image"] == "ok-=.jpg"


def test_summary_counts_and_means() -> None:
    summary = Summary()
    face = {"dominant_emotion": "happiness", "emotions": {"happiness": 0.8, "neutral": 0.2}}
    summary.add("a", {"faces": [face, {"dominant_emotion": "neutral", "emotions": {"happiness": 0.4,
                                                                                     "neutral": 0.6}}]})
    summary.add("b", {"faces": []})
    summary.add("c", {"error": {"code": "undecodable_image", "message": "..."}})
    out = summary.as_dict()
    assert (out["images"], out["analysed"], out["faces"], out["images_without_face"], out["failed"]) == (3, 2, 2, 1, 1)
    assert out["failures"] == [{"image": "c", "code": "undecodable_image"}]
    assert out["failures_by_code"] == {"undecodable_image": 1}
    assert out["dominant_emotions"]["happiness"] == 1 == out["dominant_emotions"]["neutral"]
    assert out["mean_probabilities"] == {"neutral": 0.4, "happiness": 0.6}
