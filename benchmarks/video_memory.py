"""Peak RSS growth of a video job on very large frames: a generated 6000x6000 and a generated 8K (7680x4320)
H.264 video, every frame and 5 fps, with the annotated video written (as a job does).

Each clip is a real photo (``scenes/fr_two_people.jpg``) scaled to the frame and panned a little per frame, so
faces are found and tracked; the clips are written once under ``--work`` (default ``/tmp/emotion-video-memory``,
never in the repository). Each run is its own process: it analyses a small clip first (models loaded, pools
warm), resets its peak RSS (Linux ``/proc/self/clear_refs``), analyses the large clip with ``annotate_path``,
and reports ``VmHWM`` minus the RSS before, with the wall time. Settings: ``local`` (the defaults) and
``lambda`` (the trigger Lambda's environment from ``infra``: S3-style settings do not change the pipeline, so
this is the defaults with the worker count of its 2 vCPUs, run on 2 CPUs). Usage::

    nice -n 10 .venv/bin/python benchmarks/video_memory.py [--frames 40] [--settings local lambda]

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from emotion.core.cpu import cpu_info

REPO = Path(__file__).resolve().parents[1]
SHARED = (REPO.parent / "shared").resolve()

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
from emotion.core.video import analyze_video_file
def kb(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field))
small, big, fps = sys.argv[1], sys.argv[2], sys.argv[3]
fps = None if fps == "all" else float(fps)
with tempfile.TemporaryDirectory() as tmp:
    analyze_video_file(Path(small), fps=fps, annotate_path=Path(tmp) / "warm.mp4")
    open("/proc/self/clear_refs", "w").write("5")
    base = kb("VmRSS")
    start = time.perf_counter()
    r = analyze_video_file(Path(big), fps=fps, annotate_path=Path(tmp) / "out.mp4")
    wall = time.perf_counter() - start
    import av
    with av.open(str(Path(tmp) / "out.mp4")) as c:
        s = c.streams.video[0]
        out = f"{s.codec_context.name} {s.width}x{s.height}"
print(json.dumps({"peak_growth_mb": round((kb("VmHWM") - base) / 1024, 1), "wall_s": round(wall, 1),
                  "frames_processed": r.video.frames_processed, "faces_tracks": len(r.tracks),
                  "persons": len(r.persons), "annotated": out}))
"""


def make_clip(path: Path, size: tuple[int, int], frames: int) -> Path:
    """An H.264 clip of the photo scaled to ``size`` and panned 0.2 % of the width per frame."""
    if path.exists():
        return path
    import av

    photo = cv2.imread(str(SHARED / "data" / "scenes" / "fr_two_people.jpg"))
    width, height = size
    scale = max(width * 1.1 / photo.shape[1], height / photo.shape[0])
    big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "28", "threads": "2", "rc-lookahead": "0"}
        for i in range(frames):
            x = int(i * width * 0.002)
            frame = np.ascontiguousarray(big[:height, x : x + width])
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.rename(path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--work", type=Path, default=Path("/tmp/emotion-video-memory"))
    parser.add_argument("--settings", nargs="+", default=["local", "lambda"], choices=["local", "lambda"])
    parser.add_argument("--fps", nargs="+", default=["all", "5"])
    parser.add_argument("--sizes", nargs="+", default=["6000x6000", "7680x4320"])
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    small = make_clip(args.work / "small_640x360.mp4", (640, 360), 10)
    rows = []
    for size in args.sizes:
        w, h = (int(v) for v in size.split("x"))
        clip = make_clip(args.work / f"clip_{size}_{args.frames}.mp4", (w, h), args.frames)
        for setting in args.settings:
            env = dict(os.environ)
            command = [sys.executable, "-c", CHILD, str(small), str(clip)]
            if setting == "lambda":
                env.update(EMOTION_STORAGE="local", EMOTION_VIDEO_FPS="5", EMOTION_VIDEO_WORKERS="2")
                command = ["taskset", "-c", "0,1", *command]
            for fps in args.fps:
                done = subprocess.run([*command, fps], capture_output=True, text=True, env=env, timeout=3600)
                if done.returncode:
                    rows.append({"video": size, "settings": setting, "fps": fps, "error": done.stderr[-2000:]})
                    continue
                rows.append({"video": size, "bytes": clip.stat().st_size, "frames": args.frames,
                             "settings": setting, "fps": fps, **json.loads(done.stdout.strip().splitlines()[-1])})
                print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"benchmark": "video_memory", "cpu": cpu_info(), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
