"""Peak RSS of `emotion serve` for requests at the pixel limit: one at a time, and 8 at once.

Starts the server (default settings: engine_concurrency = the cores, fewer when memory is short), warms it
up, then for each input resets the server's peak RSS (Linux ``/proc/PID/clear_refs``) and measures the peak
above the warm baseline (``VmHWM - VmRSS``) for one request, then for 8 concurrent requests. Inputs:

- ``jpeg_40mp``: a real photo upscaled to 39.9 MP, baseline JPEG (the common case at the limit);
- ``png_40mp_tiny``: a 40 kB PNG declaring 39.6 MP (a tiny-file pixel bomb that is within the budget);
- ``webp_40mp_tiny``: a 38 B WebP declaring 39.6 MP (over max_decode_bytes: refused from the header).

Each figure is the median of ``--repeats`` runs. Usage::

    .venv/bin/python benchmarks/peak_rss.py --repeats 3

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import shared_dir  # noqa: E402

from emotion.api.server import serve_in_subprocess  # noqa: E402
from emotion.core.cpu import cpu_info


def _status_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field))


def inputs() -> dict[str, tuple[bytes, str]]:
    photo = cv2.imread(str(shared_dir() / "data" / "scenes" / "fr_two_people.jpg"))
    scale = (39_900_000 / (photo.shape[0] * photo.shape[1])) ** 0.5
    big = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    jpeg = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
    png, webp = io.BytesIO(), io.BytesIO()
    Image.new("L", (6000, 6600)).save(png, "PNG")
    Image.new("RGB", (6000, 6600), (120, 90, 60)).save(webp, "WEBP", lossless=True, method=0)
    return {"jpeg_40mp": (jpeg, "image/jpeg"), "png_40mp_tiny": (png.getvalue(), "image/png"),
            "webp_40mp_tiny": (webp.getvalue(), "image/webp")}


def measure(base: str, pid: int, data: bytes, mime: str, concurrent: int) -> dict:
    def post(_: int) -> int:
        return httpx.post(base + "v1/analyze", content=data, headers={"content-type": mime}, timeout=300).status_code

    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")  # the server's peak RSS := its current RSS
    before = _status_kb(pid, "VmRSS")
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrent) as pool:
        statuses = list(pool.map(post, range(concurrent)))
    wall = time.perf_counter() - started
    time.sleep(1.0)
    return {"peak_mb": (_status_kb(pid, "VmHWM") - before) / 1024, "wall_s": wall,
            "after_mb": (_status_kb(pid, "VmRSS") - before) / 1024, "statuses": dict(Counter(statuses))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    report: dict = {"benchmark": "peak_rss", "concurrency": args.concurrency, "repeats": args.repeats, "inputs": {}}
    with serve_in_subprocess() as (base, proc):
        small = cv2.imencode(".jpg", np.full((480, 640, 3), 128, np.uint8))[1].tobytes()
        for _ in range(4):
            httpx.post(base + "v1/analyze", content=small, headers={"content-type": "image/jpeg"}, timeout=60)
        report["server_rss_mb_warm"] = round(_status_kb(proc.pid, "VmRSS") / 1024, 1)
        for name, (data, mime) in inputs().items():
            rows = {n: [measure(base, proc.pid, data, mime, n) for _ in range(args.repeats)]
                    for n in (1, args.concurrency)}
            report["inputs"][name] = {"bytes": len(data), **{
                f"x{n}": {"peak_mb_median": round(statistics.median(r["peak_mb"] for r in runs), 1),
                          "peak_mb_runs": [round(r["peak_mb"], 1) for r in runs],
                          "held_after_1s_mb_median": round(statistics.median(r["after_mb"] for r in runs), 1),
                          "wall_s_median": round(statistics.median(r["wall_s"] for r in runs), 2),
                          "statuses": runs[-1]["statuses"]}
                for n, runs in rows.items()}}
    print(json.dumps({"cpu": cpu_info(), **report}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
