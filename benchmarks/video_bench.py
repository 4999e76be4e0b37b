"""Video pipeline figures: frames processed per second (5 fps sampling and every frame), with and without
identity linking (SFace) in the same run, runs alternating so that load on a shared machine hits both alike;
peak RSS for the same clip concatenated 1x and 8x (each run in its own process, ru_maxrss); and the time of
writing the annotated H.264 video. Prints JSON.

    .venv/bin/python benchmarks/video_bench.py [--clip PATH] [--classifier NAME] [--repeats N] [--skip-rss]
        [--skip-annotate]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from emotion.core.cpu import cpu_info

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = (REPO.parent / "shared" / "data" / "videos" / "fr_short_hamilton_clip.mp4").resolve()

CHILD = """
import json, resource, sys, time
from pathlib import Path
from emotion.core.video import VideoOptions, analyze_video_file
path, fps, classifier, identity = sys.argv[1], sys.argv[2], sys.argv[3] or None, sys.argv[4] == "1"
start = time.perf_counter()
r = analyze_video_file(Path(path), fps=None if fps == "all" else float(fps), classifier=classifier,
                       options=VideoOptions(identity=identity))
print(json.dumps({"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "frames_read": r.video.frames_read, "frames_processed": r.video.frames_processed,
                  "tracks": len(r.tracks), "persons": len(r.persons), "wall_s": round(time.perf_counter() - start, 2)}))
"""


def concatenate(src: Path, times: int, out: Path) -> int:
    import cv2

    frames = 0
    writer = None
    for _ in range(times):
        cap = cv2.VideoCapture(str(src))
        fps = cap.get(cv2.CAP_PROP_FPS)
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (frame.shape[1], frame.shape[0]))
            writer.write(frame)
            frames += 1
        cap.release()
    assert writer is not None
    writer.release()
    return frames


def throughput(clip: Path, fps: float | None, classifier: str | None, repeats: int) -> dict:
    """With and without identity, alternating run by run; medians of each."""
    from emotion.core.video import VideoOptions, analyze_video_file

    runs: dict[bool, list] = {True: [], False: []}
    for _ in range(repeats):
        for identity in (False, True):
            start, cpu = time.perf_counter(), time.process_time()
            result = analyze_video_file(clip, fps=fps, classifier=classifier, options=VideoOptions(identity=identity))
            runs[identity].append((time.perf_counter() - start, result, time.process_time() - cpu))
    report: dict = {"sample_fps": "all" if fps is None else fps}
    for identity, label in ((False, "without_identity"), (True, "with_identity")):
        wall = statistics.median(w for w, _, _ in runs[identity])
        result = runs[identity][0][1]
        report[label] = {
            "frames_processed": result.video.frames_processed,
            "frames_read": result.video.frames_read,
            "wall_s_median": round(wall, 3),
            # CPU seconds of this process (all threads): less sensitive than wall time to other load on a
            # shared machine.
            "cpu_s_median": round(statistics.median(c for _, _, c in runs[identity]), 3),
            "processed_frames_per_s": round(result.video.frames_processed / wall, 2),
            "realtime_factor": round(result.video.duration_ms / 1000 / wall, 2),
            "tracks": len(result.tracks),
            "persons": len(result.persons),
            "timings_ms_first_run": result.timings_ms,
        }
    for key in ("wall_s_median", "cpu_s_median"):
        report[f"identity_cost_pct_{key[:-7]}"] = round(
            100 * (report["with_identity"][key] / report["without_identity"][key] - 1), 1)
    return report


def annotate_time(clip: Path, classifier: str | None, repeats: int) -> dict:
    """The second pass that writes the annotated H.264 MP4, and the codec of what it wrote (read with PyAV)."""
    import av

    from emotion.core.video import analyze_video_file, write_annotated

    result = analyze_video_file(clip, fps=5.0, classifier=classifier)
    walls = []
    with tempfile.TemporaryDirectory(prefix="video-bench-") as tmp:
        out = Path(tmp) / "annotated.mp4"
        for _ in range(repeats):
            start = time.perf_counter()
            write_annotated(clip, result, out)
            walls.append(time.perf_counter() - start)
        with av.open(str(out)) as container:
            stream = container.streams.video[0]
            codec = {"codec": stream.codec_context.name, "tag": stream.codec_tag, "pix_fmt": stream.pix_fmt,
                     "frames": stream.frames, "bytes": out.stat().st_size}
    wall = statistics.median(walls)
    return {"wall_s_median": round(wall, 3), "frames_per_s": round(result.video.frames_read / wall, 1), **codec}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--classifier", default=None)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-annotate", action="store_true")
    args = parser.parse_args()

    import numpy as np

    from emotion.core.engine import default_options, get_engine

    engine = get_engine(args.classifier)
    engine.analyze_array(np.zeros((360, 640, 3), dtype=np.uint8), default_options())  # warm-up
    from emotion.core.video import analyze_video_file

    analyze_video_file(args.clip, fps=1.0, classifier=args.classifier)  # warms the video path's own engine
    report: dict = {"clip": str(args.clip), "classifier": engine.classifier.spec.version,
                    "cpus": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}
    if not args.skip_throughput:
        report["sampled_5fps"] = throughput(args.clip, 5.0, args.classifier, args.repeats)
        report["every_frame"] = throughput(args.clip, None, args.classifier, args.repeats)
    if not args.skip_annotate:
        report["annotate_h264"] = annotate_time(args.clip, args.classifier, args.repeats)
    if not args.skip_rss:
        rss = {}
        with tempfile.TemporaryDirectory(prefix="video-bench-") as tmp:
            frame_counts: dict[int, int] = {}
            for times, identity in ((1, "1"), (8, "1"), (1, "0")):
                path = Path(tmp) / f"concat{times}x.mp4"
                if times not in frame_counts:
                    frame_counts[times] = concatenate(args.clip, times, path)
                frames = frame_counts[times]
                out = subprocess.run([sys.executable, "-c", CHILD, str(path), "5", args.classifier or "", identity],
                                     check=True, capture_output=True, text=True)
                name = f"{times}x" if identity == "1" else f"{times}x_without_identity"
                rss[name] = {"frames": frames, **json.loads(out.stdout.strip().splitlines()[-1])}
        rss["ratio_8x_over_1x"] = round(rss["8x"]["peak_rss_mb"] / rss["1x"]["peak_rss_mb"], 3)
        report["peak_rss_5fps"] = rss
    report["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps({"cpu": cpu_info(), **report}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
