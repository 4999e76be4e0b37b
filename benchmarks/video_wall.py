"""Wall time of a video job's work (analysis + the annotated video) on a clip, for this tree and optionally
another source tree (``--other DIR``, e.g. a checkout of main's ``functions/``), runs alternating so that load on
a shared machine hits both alike. Each run is its own process (models loaded and warmed on the clip first, not
timed). Usage::

    nice -n 10 .venv/bin/python benchmarks/video_wall.py --other /work/main/functions --repeats 3

Prints one JSON document on stdout: the median wall time per tree and sampling rate, their ratio, and the median
of the ratios of runs taken one right after the other (steadier when the load changes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from emotion.core.cpu import cpu_info

REPO = Path(__file__).resolve().parents[1]
CLIP = (REPO.parent / "shared" / "data" / "videos" / "fr_short_hamilton_clip.mp4").resolve()

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from emotion.core.video import analyze_video_file
clip, fps = Path(sys.argv[1]), None if sys.argv[2] == "all" else float(sys.argv[2])
with tempfile.TemporaryDirectory() as tmp:
    analyze_video_file(clip, fps=5.0)  # warm: models loaded, pools created
    start = time.perf_counter()
    r = analyze_video_file(clip, fps=fps, annotate_path=Path(tmp) / "out.mp4")
    wall = time.perf_counter() - start
print(json.dumps({"wall_s": wall, "persons": len(r.persons), "tracks": len(r.tracks)}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--other", metavar="DIR", help="another source folder to compare (PYTHONPATH)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fps", nargs="+", default=["5", "all"])
    args = parser.parse_args(argv)
    trees = {"this": None, **({"other": args.other} if args.other else {})}
    runs: dict[str, dict[str, list[dict]]] = {name: {fps: [] for fps in args.fps} for name in trees}
    for _ in range(args.repeats):
        for fps in args.fps:
            for name, source in trees.items():
                env = dict(os.environ, **({"PYTHONPATH": source} if source else {}))
                done = subprocess.run([sys.executable, "-c", CHILD, str(args.clip), fps], capture_output=True,
                                      text=True, env=env, timeout=1800, check=True)
                runs[name][fps].append(json.loads(done.stdout.strip().splitlines()[-1]))
    report: dict = {"benchmark": "video_wall", "cpu": cpu_info(), "clip": args.clip.name, "repeats": args.repeats,
                    "trees": {name: source or "this tree" for name, source in trees.items()}, "rows": []}
    for fps in args.fps:
        row: dict = {"fps": fps}
        for name in trees:
            walls = [r["wall_s"] for r in runs[name][fps]]
            row[name] = {"wall_s_median": round(statistics.median(walls), 2),
                         "wall_s_runs": [round(w, 2) for w in walls],
                         "persons": runs[name][fps][-1]["persons"], "tracks": runs[name][fps][-1]["tracks"]}
        if "other" in row:
            row["ratio_this_over_other"] = round(row["this"]["wall_s_median"] / row["other"]["wall_s_median"], 3)
            # Each run of this tree against the run of the other right after it: load changes between pairs.
            pairs = [a["wall_s"] / b["wall_s"] for a, b in zip(runs["this"][fps], runs["other"][fps], strict=True)]
            row["paired_ratio_median"] = round(statistics.median(pairs), 3)
        report["rows"].append(row)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
