"""Persons of a video at several sampling rates, with a contact sheet of each person's faces to check by eye.

For each ``--fps`` value, analyses the clip, prints each person (id, tracks, screen time, median face size,
background flag) and writes ``OUT/<clip>_<fps>.jpg``: one row per person, up to ``--per-person`` of its faces
spread over its timeline, cropped from the source frames. A false merge shows as two people in one row; a
split as one person in two rows. Usage::

    .venv/bin/python benchmarks/person_sheets.py ../shared/data/videos/fp_video.mp4 --fps 5 all --out /tmp/sheets

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from emotion.core.cpu import cpu_info
from emotion.core.video import VideoResult, analyze_video_file

CELL = 96


def sheet(video: Path, result: VideoResult, per_person: int) -> np.ndarray:
    wanted: dict[int, list[tuple[int, int, tuple[int, int, int, int]]]] = {}
    for row, person in enumerate(result.persons):
        points = person.timeline
        picks = np.linspace(0, len(points) - 1, min(per_person, len(points))).round().astype(int)
        for k, i in enumerate(picks):
            box = points[i].box
            wanted.setdefault(points[i].frame, []).append((row, k, (box.x, box.y, box.width, box.height)))
    label_w = 150
    canvas = np.full((max(1, len(result.persons)) * CELL, label_w + per_person * CELL, 3), 255, np.uint8)
    cap = cv2.VideoCapture(str(video))
    index = 0
    while wanted:
        ok, frame = cap.read()
        if not ok:
            break
        for row, k, (x, y, w, h) in wanted.pop(index, []):
            side = int(max(w, h) * 1.3)
            cx, cy = x + w // 2, y + h // 2
            x0, y0 = max(0, cx - side // 2), max(0, cy - side // 2)
            crop = frame[y0 : y0 + side, x0 : x0 + side]
            if crop.size:
                canvas[row * CELL : (row + 1) * CELL, label_w + k * CELL : label_w + (k + 1) * CELL] = cv2.resize(
                    crop, (CELL, CELL), interpolation=cv2.INTER_AREA)
        index += 1
    cap.release()
    for row, person in enumerate(result.persons):
        text = [f"P{person.id}" + (" bg" if person.background else ""), f"{len(person.track_ids)} tracks",
                f"{(person.last_ms - person.first_ms) / 1000:.1f} s"]
        for j, line in enumerate(text):
            cv2.putText(canvas, line, (6, row * CELL + 24 + 24 * j), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("--fps", nargs="+", default=["5", "all"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/person-sheets"))
    parser.add_argument("--per-person", type=int, default=8)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"benchmark": "person_sheets", "cpu": cpu_info(), "video": args.video.name, "runs": []}
    for fps in args.fps:
        result = analyze_video_file(args.video, fps=None if fps == "all" else float(fps))
        path = args.out / f"{args.video.stem}_{fps}.png"
        cv2.imwrite(str(path), sheet(args.video, result, args.per_person))
        report["runs"].append({
            "fps": fps, "tracks": len(result.tracks), "persons": len(result.persons),
            "foreground": sum(not p.background for p in result.persons), "sheet": str(path),
            "list": [{"id": p.id, "tracks": p.track_ids, "identified": p.identified, "background": p.background,
                      "screen_s": round(p.screen_ms / 1000, 2), "face_px": p.face_size,
                      "first_s": round(p.first_ms / 1000, 2), "last_s": round(p.last_ms / 1000, 2)}
                     for p in result.persons]})
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
