"""What the retries cost on an image without a face: ``Engine.detect`` with the retry off and on, one thread.

An image where YuNet finds no face is detected again turned 30 degrees each way and then framed
(``emotion.core.engine``), so a face-free image pays several detection passes. The test images are a face-free
corner of a scene photo (the floor and legs below the people in ``fr_obama_and_biden.jpg``), resized to a few
common photo sizes; none has a face, so every retry runs.

    .venv/bin/python benchmarks/retry_cost.py [--repeats 11]

Prints one JSON document: median ms per ``detect`` call for each size, upright only and with the retries.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("EMOTION_INTRA_OP_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import shared_dir  # noqa: E402

from emotion.core.cpu import cpu_info
from emotion.core.engine import default_options, get_engine  # noqa: E402

SIZES = ((480, 640), (768, 1024), (1536, 2048), (3000, 4000))  # height, width


def median_ms(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return round(float(np.median(samples)), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    engine = get_engine()
    retry = default_options()
    upright = dataclasses.replace(retry, rotated_retry=False)
    photo = cv2.imread(str(shared_dir() / "data" / "scenes" / "fr_obama_and_biden.jpg"))
    floor = photo[1000:1428, 0:600]  # below everyone's face
    report = {"threads": 1, "repeats": args.repeats, "sizes": []}
    for height, width in SIZES:
        image = cv2.resize(floor, (width, height), interpolation=cv2.INTER_CUBIC)
        if len(engine.detect(image, retry)):
            raise SystemExit(f"{width}x{height}: a face was found; the test image must have none")
        one = median_ms(lambda: engine.detect(image, upright), args.repeats)  # noqa: B023
        every = median_ms(lambda: engine.detect(image, retry), args.repeats)  # noqa: B023
        report["sizes"].append({"size": f"{width}x{height}", "upright_ms": one, "with_retries_ms": every,
                                "ratio": round(every / one, 2)})
    print(json.dumps({"cpu": cpu_info(), **report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
