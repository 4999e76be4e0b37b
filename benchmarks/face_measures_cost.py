"""What pose and quality add per face: ``face_pose`` + ``face_quality`` timed alone on every face of the scene
photos, and the engine's whole analysis of those photos with the two measures on and stubbed out (interleaved,
one thread, the same process), so the difference is a same-run figure on a shared machine. Times are the
process's CPU time (``time.process_time``), which other jobs on a shared machine disturb less than wall time.

    .venv/bin/python benchmarks/face_measures_cost.py [--repeats 15]

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import shared_dir  # noqa: E402

from emotion.core import engine as engine_module  # noqa: E402
from emotion.core.cpu import cpu_info  # noqa: E402
from emotion.core.engine import default_options, get_engine  # noqa: E402
from emotion.core.facemeasures import face_pose, face_quality  # noqa: E402
from emotion.core.results import Pose, Quality  # noqa: E402

FIXED_POSE = Pose(yaw=0.0, pitch=0.0, roll=0.0)
FIXED_QUALITY = Quality(brightness=0.0, sharpness=0.0, size=0, reliable=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    engine, options = get_engine(threads=1), default_options()
    photos = [cv2.imread(str(p)) for p in sorted((shared_dir() / "data" / "scenes").glob("*.jpg"))]
    rows = [(photo, engine.detect(photo, options)) for photo in photos]
    faces = sum(len(r) for _, r in rows)

    alone = []
    for _ in range(args.repeats):
        start = time.process_time()
        for photo, found in rows:
            for face in found:
                face_quality(photo, face)
                face_pose(face)
        alone.append((time.process_time() - start) * 1000 / faces)

    real = (engine_module.face_pose, engine_module.face_quality)
    on, off = [], []
    for _ in range(args.repeats):
        for measures, out in ((real, on), ((lambda f: FIXED_POSE, lambda *a: FIXED_QUALITY), off)):
            engine_module.face_pose, engine_module.face_quality = measures
            start = time.process_time()
            for photo in photos:
                engine.analyze_array(photo, options)
            out.append((time.process_time() - start) * 1000)
    engine_module.face_pose, engine_module.face_quality = real
    report = {
        "cpu": cpu_info(), "photos": len(photos), "faces": faces, "repeats": args.repeats, "threads": 1,
        "pose_and_quality_cpu_ms_per_face_median": round(statistics.median(alone), 4),
        "analysis_cpu_ms_all_photos_median": {"with_measures": round(statistics.median(on), 2),
                                          "measures_stubbed": round(statistics.median(off), 2)},
        "difference_cpu_ms_per_face": round((statistics.median(on) - statistics.median(off)) / faces, 4),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
