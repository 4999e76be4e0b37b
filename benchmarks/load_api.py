"""Load benchmark: concurrent POST /v1/analyze of a real photo against `emotion serve` on loopback.

Starts the server on a free 127.0.0.1 port, warms it up, then runs ``--concurrency`` client threads
(keep-alive connections) for ``--duration`` seconds or ``--max-requests`` requests, whichever ends first.
Reports errors (any unexpected status or transport error, warm-up included), median / p95 / p99 latency,
requests per second, and the server's RSS after start-up, after a concurrent warm-up (the baseline), its
peak, and at the end, with the growth from the baseline in percent.

With ``--bad-every N`` every N-th request is a bad one, in turn: a PDF (415), a truncated JPEG (400), a JPEG
scan bomb (400), a 38-byte WebP declaring 40 MP (413) and a bad parameter (422); a bad request counts as an
error unless it gets exactly that status. Latencies are those of the good requests.

Usage::

    .venv/bin/python benchmarks/load_api.py --duration 60 --concurrency 4
    .venv/bin/python benchmarks/load_api.py --duration 60 --concurrency 8 --bad-every 4

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serve import rss_mb, shared_dir  # noqa: E402

from emotion.api.server import serve_in_subprocess  # noqa: E402
from emotion.core.cpu import cpu_info


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def bad_requests() -> list[tuple[bytes, str, str, int]]:
    """(body, content type, query, expected status) of the bad requests mixed in with ``--bad-every``."""
    import io

    from PIL import Image

    def save(image: Image.Image, fmt: str, **options: object) -> bytes:
        buf = io.BytesIO()
        image.save(buf, fmt, **options)
        return buf.getvalue()

    jpeg = save(Image.new("RGB", (640, 480), (10, 120, 200)), "JPEG")
    progressive = save(Image.new("L", (3000, 3000), 128), "JPEG", progressive=True)
    sos = [i for i in range(len(progressive) - 1) if progressive[i:i + 2] == b"\xff\xda"]
    scan_bomb = progressive[:-2] + progressive[sos[-1]:-2] * 300 + b"\xff\xd9"  # 300+ scans
    webp_bomb = save(Image.new("RGB", (6000, 6600)), "WEBP", lossless=True, method=0)
    return [
        (b"%PDF-1.4\n%%EOF\n", "application/pdf", "", 415),
        (jpeg[: len(jpeg) // 2], "image/jpeg", "", 400),
        (scan_bomb, "image/jpeg", "", 400),
        (webp_bomb, "image/webp", "", 413),
        (jpeg, "image/jpeg", "?max_faces=0", 422),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--concurrency", type=int, default=4, help="client threads (default 4)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="stop after this many requests")
    parser.add_argument("--image", type=Path, default=None, help="photo (default scenes/fr_two_people.jpg)")
    parser.add_argument("--warmup-s", type=float, default=15.0, help="concurrent warm-up before the RSS baseline")
    parser.add_argument("--bad-every", type=int, default=0, help="every N-th request is a bad one (0: none)")
    args = parser.parse_args(argv)
    bad = bad_requests()

    image = args.image or shared_dir() / "data" / "scenes" / "fr_two_people.jpg"
    data = image.read_bytes()
    headers = {"content-type": "image/jpeg"}

    bad_counts: list[int] = []
    with serve_in_subprocess() as (base, proc):
        rss_started = rss_mb(proc.pid)
        with httpx.Client(base_url=base, timeout=60) as client:
            first = client.post("/v1/analyze", content=data, headers=headers)
            first.raise_for_status()
            faces = len(first.json()["faces"])
        rss_first = rss_mb(proc.pid)

        def run_phase(seconds: float, max_requests: int) -> tuple[list[float], list[str], float, float]:
            latencies: list[float] = []
            bad_answered: list[float] = []
            errors: list[str] = []
            lock = threading.Lock()
            issued = 0
            deadline = time.perf_counter() + seconds

            def worker() -> None:
                nonlocal issued
                with httpx.Client(base_url=base, timeout=60) as client:
                    while time.perf_counter() < deadline:
                        with lock:
                            if issued >= max_requests:
                                return
                            issued += 1
                            number = issued
                        t0 = time.perf_counter()
                        is_bad = args.bad_every > 0 and number % args.bad_every == 0
                        try:
                            if is_bad:
                                body, mime, query, expected = bad[(number // args.bad_every) % len(bad)]
                                r = client.post("/v1/analyze" + query, content=body, headers={"content-type": mime})
                                problem = "" if r.status_code == expected else f"{r.status_code}: {r.text[:200]}"
                            else:
                                r = client.post("/v1/analyze", content=data, headers=headers)
                                ok = r.status_code == 200 and len(r.json()["faces"]) == faces
                                problem = "" if ok else f"{r.status_code}: {r.text[:200]}"
                        except httpx.HTTPError as exc:
                            problem = f"{type(exc).__name__}: {exc}"
                        elapsed = (time.perf_counter() - t0) * 1000
                        with lock:
                            if problem:
                                errors.append(problem)
                            elif is_bad:
                                bad_answered.append(elapsed)
                            else:
                                latencies.append(elapsed)

            peak = 0.0
            started = time.perf_counter()
            threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
            for t in threads:
                t.start()
            while any(t.is_alive() for t in threads):
                time.sleep(0.5)
                peak = max(peak, rss_mb(proc.pid))
            bad_counts.append(len(bad_answered))
            return latencies, errors, time.perf_counter() - started, peak

        # Warm-up at the same concurrency, so the baseline holds the concurrent working set (ORT arenas,
        # per-thread buffers) and growth after it would be a leak.
        warm_latencies, warm_errors, _, _ = run_phase(args.warmup_s, 10 * args.concurrency * 1000)
        rss_start = rss_mb(proc.pid)
        latencies, errors, wall, rss_peak = run_phase(args.duration, args.max_requests)
        errors = warm_errors + errors
        rss_end = rss_mb(proc.pid)
    total = len(latencies) + len(errors) + bad_counts[-1]
    report = {
        "benchmark": "load_api",
        "endpoint": "POST /v1/analyze (raw image/jpeg body)",
        "image": image.name,
        "image_bytes": len(data),
        "faces_per_image": faces,
        "concurrency": args.concurrency,
        "duration_s": round(wall, 2),
        "requests": total,
        "errors": len(errors),
        "error_samples": errors[:5],
        "bad_every": args.bad_every,
        "bad_requests_answered_as_expected": bad_counts[-1],
        "warmup_requests": len(warm_latencies),
        "rps": round(total / wall, 2),
        "latency_ms": {
            "median": round(statistics.median(latencies), 1) if latencies else None,
            "p95": round(percentile(latencies, 0.95), 1),
            "p99": round(percentile(latencies, 0.99), 1),
            "max": round(max(latencies), 1) if latencies else None,
        },
        "server_rss_mb": {
            "after_start": round(rss_started, 1),
            "after_first_request": round(rss_first, 1),
            "start_after_warmup": round(rss_start, 1),
            "peak": round(rss_peak, 1),
            "end": round(rss_end, 1),
        },
        "rss_growth_pct": round(100 * (rss_end - rss_start) / rss_start, 2),
    }
    print(json.dumps({"cpu": cpu_info(), **report}, indent=2))
    return 0 if not errors else 1


if __name__ == "__main__":
    raise SystemExit(main())
