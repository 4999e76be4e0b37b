"""``emotion serve``: the same FastAPI app under uvicorn, on 127.0.0.1:8000 by default."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn


class _Server(uvicorn.Server):
    """Prints the page's URL once the socket is bound and the models are loaded (port 0 → the real port)."""

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
        sys.stdout.write(f"emotion: serving http://{shown}:{port}/ (API docs at /docs; Ctrl+C to stop)\n")
        sys.stdout.flush()


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API and web page until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from emotion.api.app import app

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,  # the app logs one line per request itself (with its request id)
        server_header=False,
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    _Server(config).run()


@contextmanager
def serve_in_subprocess(
    env: dict[str, str] | None = None, timeout_s: float = 120.0
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`emotion serve --port 0` in a child process (tests, benchmarks); yields (base URL, process) once the
    URL is printed, and stops the server on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from emotion.cli import main; sys.exit(main(sys.argv[1:]))",
         "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
    )
    found: list[str] = []
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:  # keeps reading so the child never blocks on a full pipe
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
