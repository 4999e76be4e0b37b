"""Collection throughput: N real face images as one collection job against the same N sent one by one to
``/v1/analyze``, each through its own fresh ``emotion serve`` (same machine, same cores, same engine slots).

The images: the scene photos of ../shared/data/scenes plus FER+ train crops (../shared/data/ferplus_train) up to
``--images``. The collection is one stored ZIP, created, uploaded and polled as a client would; one by one is
one ``POST /v1/analyze`` per image, ``--concurrency`` requests in flight (default: the server's engine slots, so
both modes use every core). Reported per mode: wall time, images per second, the server's peak RSS (VmHWM) and
the median per-image engine time (``timings_ms.total``, for the Lambda cost estimate); and the ratio of the two
rates from this one run.

Usage::

    nice -n 10 .venv/bin/python benchmarks/collection_throughput.py --images 2000

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import shared_dir  # noqa: E402

from emotion.api.limits import engine_slots  # noqa: E402
from emotion.api.server import serve_in_subprocess  # noqa: E402
from emotion.core.cpu import cpu_info  # noqa: E402


def images(count: int) -> list[tuple[str, bytes]]:
    data = shared_dir() / "data"
    scenes = sorted((data / "scenes").glob("*.jpg"))
    crops = sorted((data / "ferplus_train").glob("*.png"))[: max(0, count - len(scenes))]
    return [(f"scenes/{p.name}", p.read_bytes()) for p in scenes] + [(f"fer/{p.name}", p.read_bytes()) for p in crops]


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def server_env(data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "EMOTION_API_KEY"}
    env.update(EMOTION_DATA_DIR=data_dir, EMOTION_MAX_UPLOAD_BYTES="2000000000")
    return env


def run_collection(items: list[tuple[str, bytes]]) -> dict[str, object]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        for name, data in items:
            zf.writestr(name, data)
    archive = buffer.getvalue()
    with tempfile.TemporaryDirectory() as tmp, serve_in_subprocess(server_env(tmp)) as (url, proc), \
            httpx.Client(base_url=url, timeout=120) as client:
        warm = peak_rss_mb(proc.pid)
        start = time.perf_counter()
        job = client.post("v1/jobs", json={"filename": "c.zip", "content_type": "application/zip",
                                           "size": len(archive)}).json()
        posted = client.post(job["upload"]["url"], data=job["upload"]["fields"],
                             files={"file": ("c.zip", archive, "application/zip")})
        posted.raise_for_status()
        while True:
            status = client.get(job["status_url"]).json()
            if status["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.25)
        wall = time.perf_counter() - start
        if status["status"] != "succeeded":
            raise RuntimeError(f"collection failed: {status['error']}")
        lines = client.get(status["files"]["results_jsonl"]).text.splitlines()
        totals = [json.loads(line)["timings_ms"]["total"] for line in lines if "timings_ms" in line]
        return {"wall_s": round(wall, 2), "images_per_s": round(len(items) / wall, 2),
                "server_peak_rss_mb": round(peak_rss_mb(proc.pid), 1), "server_rss_after_start_mb": round(warm, 1),
                "median_engine_ms_per_image": round(statistics.median(totals), 2),
                "mean_engine_ms_per_image": round(statistics.fmean(totals), 2),
                "faces": status["result"]["faces"], "failed": status["result"]["failed"]}


def run_one_by_one(items: list[tuple[str, bytes]], concurrency: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp, serve_in_subprocess(server_env(tmp)) as (url, proc):
        warm = peak_rss_mb(proc.pid)
        totals: list[float] = []
        faces = [0]
        errors: list[str] = []
        lock = threading.Lock()
        queue = list(items)

        def worker() -> None:
            with httpx.Client(base_url=url, timeout=120) as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        name, data = queue.pop()
                    response = client.post("v1/analyze", content=data,
                                           headers={"content-type": "application/octet-stream"})
                    with lock:
                        if response.status_code != 200:
                            errors.append(f"{name}: {response.status_code}")
                            continue
                        body = response.json()
                        totals.append(body["timings_ms"]["total"])
                        faces[0] += len(body["faces"])

        start = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - start
        return {"wall_s": round(wall, 2), "images_per_s": round(len(items) / wall, 2), "concurrency": concurrency,
                "server_peak_rss_mb": round(peak_rss_mb(proc.pid), 1), "server_rss_after_start_mb": round(warm, 1),
                "median_engine_ms_per_image": round(statistics.median(totals), 2),
                "mean_engine_ms_per_image": round(statistics.fmean(totals), 2), "faces": faces[0],
                "errors": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=0, help="one-by-one requests in flight (0: engine slots)")
    args = parser.parse_args()
    items = images(args.images)
    concurrency = args.concurrency or engine_slots()
    one_by_one = run_one_by_one(items, concurrency)
    collection = run_collection(items)
    report = {
        "benchmark": "collection_throughput",
        "cpu": cpu_info(),
        "images": len(items),
        "image_sources": {"scenes": sum(1 for n, _ in items if n.startswith("scenes/")),
                          "ferplus_train_crops": sum(1 for n, _ in items if n.startswith("fer/"))},
        "engine_slots": engine_slots(),
        "collection": collection,
        "one_by_one": one_by_one,
        "collection_over_one_by_one": round(float(collection["images_per_s"])  # type: ignore[arg-type]
                                            / float(one_by_one["images_per_s"]), 2),  # type: ignore[arg-type]
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
