"""Peak RSS of video analysis with large frames, with and without the byte bound on frames in flight.

Generates MPEG-4 clips (4000x3000 x 16 frames, 6000x6000 x 8 frames), then for each runs
``analyze_video_file(fps=None)`` in a child process (2 workers, warmed once) with the default
``EMOTION_VIDEO_BUFFER_BYTES`` and with the bound lifted (``batch_frames``, 8, in flight as before), and
reports the peak RSS above the warm baseline (median of ``--repeats``). Usage::

    .venv/bin/python benchmarks/video_buffer_rss.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

from emotion.core.cpu import cpu_info

CHILD = r"""
import json, sys
from pathlib import Path
from emotion.core.video import analyze_video_file
def rss(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field)) * 1024
analyze_video_file(Path(sys.argv[1]), fps=None)
open("/proc/self/clear_refs", "w").write("5")
base = rss("VmRSS")
analyze_video_file(Path(sys.argv[1]), fps=None)
print(json.dumps({"peak": rss("VmHWM") - base}))
"""


def clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    frame = np.full((size[1], size[0], 3), 90, np.uint8)
    rng = np.random.default_rng(0)
    for _ in range(frames):
        frame[:8, :8] = rng.integers(0, 255, (8, 8, 3))
        writer.write(frame)
    writer.release()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size, frames in (((4000, 3000), 16), ((6000, 6000), 8)):
            path = clip(Path(tmp) / f"{size[0]}x{size[1]}.mp4", size, frames)
            for label, buffer in (("default_buffer", None), ("unbounded", 10**12)):
                env = dict(os.environ, EMOTION_VIDEO_WORKERS="2")
                if buffer is not None:
                    env["EMOTION_VIDEO_BUFFER_BYTES"] = str(buffer)
                peaks = []
                for _ in range(args.repeats):
                    done = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True,
                                          env=env, timeout=900, check=True)
                    peaks.append(json.loads(done.stdout.strip().splitlines()[-1])["peak"] / 2**20)
                rows.append({"frame": f"{size[0]}x{size[1]}", "frames": frames, "setting": label,
                             "peak_mb_median": round(statistics.median(peaks), 1),
                             "peak_mb_runs": [round(p, 1) for p in peaks]})
    print(json.dumps({"cpu": cpu_info(), "benchmark": "video_buffer_rss", "repeats": args.repeats, "rows": rows},
                     indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
