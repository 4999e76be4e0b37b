"""Run a command with its stdout on a pseudo-terminal, as a person at a terminal sees it."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path


def run_in_terminal(command: list[str], cwd: Path | None = None, timeout: float = 300) -> tuple[int, str]:
    """(exit status, what the command wrote to its terminal, ``\\r\\n`` read as ``\\n``); stderr is not a terminal."""
    main, child = pty.openpty()
    try:
        proc = subprocess.run(command, cwd=cwd, stdout=child, stderr=subprocess.PIPE, timeout=timeout)
        os.close(child)
        child = -1
        output = b""
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(main)
        if child >= 0:
            os.close(child)
    return proc.returncode, output.decode().replace("\r\n", "\n")
