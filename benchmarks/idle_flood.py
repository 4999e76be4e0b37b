"""/healthz latency of `emotion serve` while 1,100 idle (half-sent) connections are open, on loopback.

For each open-file setting of the server process (``soft:hard``, default ``1024:HARD`` where HARD is this
process's hard limit, and ``1024:1024``), starts the server, measures ``--requests`` sequential /healthz calls
with no flood (the baseline), opens ``--connections`` sockets that each send a request line and one header and
then wait, measures the same calls again while they are open, and closes them. A call that gets no answer
within ``--timeout`` s counts as failed. Usage::

    .venv/bin/python benchmarks/idle_flood.py

Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import statistics
import time
from pathlib import Path

import httpx

from emotion.api.server import serve_in_subprocess
from emotion.core.cpu import cpu_info


def _health(base: str, requests: int, timeout: float) -> dict:
    times, failed = [], 0
    with httpx.Client(timeout=timeout) as client:
        for _ in range(requests):
            started = time.perf_counter()
            try:
                ok = client.get(base + "healthz").status_code == 200
            except httpx.HTTPError:
                ok = False
            if ok:
                times.append((time.perf_counter() - started) * 1000)
            else:
                failed += 1
    return {"answered": len(times), "failed": failed,
            "median_ms": round(statistics.median(times), 2) if times else None,
            "max_ms": round(max(times), 2) if times else None}


def _open_files(pid: int) -> int:
    row = next(r for r in Path(f"/proc/{pid}/limits").read_text().splitlines() if r.startswith("Max open files"))
    return int(row.split()[3])


def measure(limits: tuple[int, int], connections: int, requests: int, timeout: float, source: str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=source) if source else None
    with serve_in_subprocess(env, open_files=limits) as (base, proc):
        host, port = base.split("//")[1].rstrip("/").split(":")
        quiet = _health(base, requests, timeout)
        sockets = []
        refused = 0
        try:
            for _ in range(connections):
                try:
                    sock = socket.create_connection((host, int(port)), timeout=5)
                    sock.sendall(b"POST /v1/analyze HTTP/1.1\r\nHost: x\r\n")
                    sockets.append(sock)
                except OSError:
                    refused += 1
            time.sleep(0.5)
            flood = _health(base, requests, timeout)
            held = len(list(Path(f"/proc/{proc.pid}/fd").iterdir()))
        finally:
            for sock in sockets:
                sock.close()
        return {"start_limit": f"{limits[0]}:{limits[1]}", "server_open_file_limit": _open_files(proc.pid),
                "idle_connections_opened": len(sockets), "refused_by_os": refused,
                "server_fds_during_flood": held, "healthz_quiet": quiet, "healthz_during_flood": flood}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1100)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--server-source", metavar="DIR",
                        help="run the server from this source folder (e.g. another checkout's functions/, for a "
                             "before/after comparison)")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections + 200:  # this process holds the client ends
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rows = [measure(limits, args.connections, args.requests, args.timeout, args.server_source)
            for limits in ((1024, hard), (1024, 1024))]
    print(json.dumps({"benchmark": "idle_flood", "cpu": cpu_info(), "server_source": args.server_source or "this tree",
                      "connections": args.connections,
                      "requests": args.requests, "timeout_s": args.timeout, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
