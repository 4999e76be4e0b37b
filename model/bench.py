"""``emotion bench``: warm latency, per-face cost, scene photos (and their decode / detect / classify stages),
cold start and peak RSS, as JSON.

Each thread mode runs in a fresh subprocess, so cold start and peak RSS are those of a new process.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from emotion.core.cpu import cpu_info


def one_face_jpeg(shared_dir: Path) -> bytes:
    """A 640x480 JPEG with one face: the left person of scenes/fr_two_people.jpg."""
    image = _read(shared_dir / "data" / "scenes" / "fr_two_people.jpg")
    ok, buf = cv2.imencode(".jpg", image[0:480, 0:640], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _stats(samples: list[float]) -> dict:
    return {"median": round(float(np.median(samples)), 2), "p95": round(float(np.percentile(samples, 95)), 2)}


def _worker(classifier: str | None, repeats: int) -> dict:
    """Runs inside the measured process: first result (cold), then warm loops."""
    started = float(os.environ["EMOTION_BENCH_T0"])
    from emotion.core.engine import analyze, default_options, get_engine
    from emotion.settings import get_settings

    settings = get_settings()
    shared = settings.shared_dir
    single = one_face_jpeg(shared)
    first = analyze(single, classifier=classifier)
    cold_start_s = time.time() - started
    assert len(first.faces) == 1, "the bench image must show one face"

    warm = []
    for _ in range(3):
        analyze(single, classifier=classifier)
    for _ in range(repeats):
        t = time.perf_counter()
        analyze(single, classifier=classifier)
        warm.append((time.perf_counter() - t) * 1000)

    scenes = sorted((shared / "data" / "scenes").glob("*.jpg"))
    blobs = [p.read_bytes() for p in scenes]
    scene_ms, faces_per_image = [], {}
    stages: dict[str, list[float]] = {"decode": [], "detect": [], "classify": [], "decode_and_detect": []}
    for path, blob in zip(scenes, blobs, strict=True):
        faces_per_image[path.name] = len(analyze(blob, classifier=classifier).faces)
    for _ in range(max(3, repeats // 3)):
        for blob in blobs:
            t = time.perf_counter()
            result = analyze(blob, classifier=classifier)
            scene_ms.append((time.perf_counter() - t) * 1000)
            for stage in ("decode", "detect", "classify"):
                stages[stage].append(result.timings_ms[stage])
            stages["decode_and_detect"].append(result.timings_ms["decode"] + result.timings_ms["detect"])

    # Per-face classifier cost with every scene face in one batch.
    engine = get_engine(classifier)
    per_face = []
    for path in scenes:
        bgr = _read(path)
        faces = engine.detect(bgr, default_options())
        if len(faces) < 2:
            continue
        engine.classifier.classify(bgr, faces)
        times = []
        for _ in range(max(5, repeats // 3)):
            t = time.perf_counter()
            engine.classifier.classify(bgr, faces)
            times.append((time.perf_counter() - t) * 1000 / len(faces))
        per_face.append(float(np.median(times)))
    return {
        "classifier": engine.classifier.name,
        "threads": settings.intra_op_threads or "all",
        "warm_ms": _stats(warm),
        "per_face_ms": round(float(np.median(per_face)), 2) if per_face else None,
        "scenes_ms": _stats(scene_ms),
        # Where a scene photo's time goes (the engine's own timings; the stage medians need not add up to the
        # median of the totals). decode_and_detect is the floor no classifier, however fast, can go under.
        "scene_stages_ms": {stage: _stats(samples) for stage, samples in stages.items()},
        "scene_faces": faces_per_image,
        "cold_start_s": round(cold_start_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise FileNotFoundError(path)
    return image


def run_bench(classifier: str | None = None, repeats: int = 30, modes: str = "both") -> dict:
    """Run the worker in a fresh process per thread mode; returns {"single_thread": ..., "all_cores": ...}."""
    wanted = {"single": ["single_thread"], "all": ["all_cores"], "both": ["single_thread", "all_cores"]}[modes]
    report: dict = {"cpu": cpu_info()}
    for mode in wanted:
        env = dict(os.environ, EMOTION_INTRA_OP_THREADS="1" if mode == "single_thread" else "0",
                   EMOTION_BENCH_T0=repr(time.time()))
        cmd = [sys.executable, "-m", "model.bench", "--worker", "--repeats", str(repeats)]
        if classifier:
            cmd += ["--classifier", classifier]
        env["EMOTION_BENCH_T0"] = repr(time.time())
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        report[mode] = json.loads(out.stdout)
    return report


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--classifier")
    parser.add_argument("--repeats", type=int, default=30)
    ns = parser.parse_args()
    if ns.worker:
        print(json.dumps(_worker(ns.classifier, ns.repeats)))
    else:
        print(json.dumps(run_bench(ns.classifier, ns.repeats), indent=2))
