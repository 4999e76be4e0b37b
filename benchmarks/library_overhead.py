"""What the Python library adds to the engine, and what analyze_many saves over a loop (prints JSON).

    .venv/bin/python benchmarks/library_overhead.py [--repeats 40] [--threads 1]

- ``path_overhead_ms``: median of ``Analyzer.analyze(path)`` minus the median of the engine's own
  ``analyze_bytes`` on bytes already in memory (same image, calls interleaved, single-threaded sessions).
- ``analyze_many``: the 8 scene photos three times, one ``analyze`` per photo against ``analyze_many``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import shared_dir  # noqa: E402

import emotion  # noqa: E402
from emotion.core.cpu import cpu_info
from emotion.settings import get_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    scenes = shared_dir() / "data" / "scenes"
    photo = scenes / "fr_two_people.jpg"
    data = photo.read_bytes()
    analyzer = emotion.Analyzer(threads=args.threads)
    settings = get_settings()
    engine_ms, library_ms = [], []
    for _ in range(3):  # warm both paths
        analyzer.analyze(photo)
    for _ in range(args.repeats):
        t = time.perf_counter()
        analyzer.engine.analyze_bytes(data, analyzer.options, settings.max_pixels, settings.max_side)
        engine_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        analyzer.analyze(photo)
        library_ms.append((time.perf_counter() - t) * 1000)

    photos = sorted(scenes.glob("*.jpg")) * 3
    loop_s, many_s = [], []
    for _ in range(3):
        t = time.perf_counter()
        for p in photos:
            analyzer.analyze(p)
        loop_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        list(analyzer.analyze_many(photos))
        many_s.append(time.perf_counter() - t)

    engine, library = statistics.median(engine_ms), statistics.median(library_ms)
    print(json.dumps({
        "cpu": cpu_info(),
        "image": photo.name,
        "threads": args.threads,
        "engine_analyze_bytes_ms": round(engine, 2),
        "analyzer_analyze_path_ms": round(library, 2),
        "path_overhead_ms": round(library - engine, 2),
        # per interleaved pair: less sensitive to load from other processes than a difference of medians
        "path_overhead_ms_paired_median": round(statistics.median(
            b - a for a, b in zip(engine_ms, library_ms, strict=True)), 2),
        "analyze_many": {
            "images": len(photos),
            "loop_ms_per_image": round(statistics.median(loop_s) * 1000 / len(photos), 2),
            "analyze_many_ms_per_image": round(statistics.median(many_s) * 1000 / len(photos), 2),
            "speedup": round(statistics.median(loop_s) / statistics.median(many_s), 3),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
