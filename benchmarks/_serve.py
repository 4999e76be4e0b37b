"""Helpers shared by the API benchmarks: start `emotion serve` on a free loopback port, read a process's RSS."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def shared_dir() -> Path:
    from emotion.settings import get_settings

    return Path(os.environ.get("EMOTION_SHARED_DIR", get_settings().shared_dir)).resolve()


def rss_mb(pid: int) -> float:
    """Resident set size of a process (Linux /proc), in MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextmanager
def emotion_serve(timeout_s: float = 120.0) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`emotion serve --port 0` in a subprocess; yields (base URL, process) once the URL is printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from emotion.cli import main; sys.exit(main(sys.argv[1:]))",
         "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    found: list[str] = []
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if len(lines) < 200:
                lines.append(line)
            match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        if not ready.wait(timeout_s) or not found:
            raise RuntimeError("emotion serve did not start:\n" + "".join(lines[-40:]))
        yield found[0], proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
