"""Helpers shared by the API benchmarks: the shared folder, a process's RSS."""

from __future__ import annotations

import os
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

