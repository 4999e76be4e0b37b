"""``emotion serve``: the same FastAPI app under uvicorn, on 127.0.0.1:8000 by default."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import resource
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol


class _Server(uvicorn.Server):
    """Prints the page's URL once the socket is bound and the models are loaded (port 0 → the real port)."""

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        host, port = self.servers[0].sockets[0].getsockname()[:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)
        # Set apart by blank lines (and bold on a terminal): the one line a person starting the server needs.
        bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
        sys.stdout.write(f"\n{bold}emotion: serving http://{shown}:{port}/{plain}  (open it in a browser; API docs at "
                         f"/docs; Ctrl+C to stop)\n\n")
        sys.stdout.flush()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the guards it lacks, so half-sent requests cannot hold every file descriptor
    (uvicorn's keep-alive timeout only starts after a first response):

    * a connection whose request line and headers have not all arrived ``header_timeout_s`` after it opened (or
      after its previous response) is closed;
    * a request whose body stops arriving for ``body_timeout_s`` is closed (an idle timeout, as nginx's
      ``client_body_timeout``: a large upload that keeps sending is never cut off);
    * beyond ``max_connections`` open connections, the oldest one still waiting for its request headers is
      closed to make room (a flood of idle sockets cannot lock out a health check or a real request); only when
      none is waiting is the new connection closed instead.
    """

    header_timeout_s = 10.0
    body_timeout_s = 60.0
    max_connections = 500
    # Connections waiting for their request's headers, oldest first (dict order), shared by the server's
    # connections: the ones shed when the cap is reached. One event loop runs them all, so no lock.
    _waiting: dict[GuardedH11Protocol, None] = {}
    _shed_count = 0
    _shed_logged = -1e9

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            if not self._waiting:
                self.logger.warning("connection refused: %d open connections", len(self.connections))
                transport.close()
                return
            next(iter(self._waiting))._shed()
            type(self)._shed_count += 1
            if self.loop.time() - type(self)._shed_logged > 10.0:
                type(self)._shed_logged = self.loop.time()
                self.logger.warning("%d open connections: %d waiting without a request closed so far",
                                    len(self.connections), self._shed_count)
        self._arm(self.header_timeout_s, self._header_timeout)
        self._waiting[self] = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state == h11.SEND_BODY:
            self._waiting.pop(self, None)
            self._arm(self.body_timeout_s, self._body_timeout)  # the headers are in; more body must keep coming
        elif self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            self._waiting.pop(self, None)
            self._disarm()  # the whole request is in: the app's to answer

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm(self.header_timeout_s, self._header_timeout)  # a kept-alive connection's next request too
        if not self.transport.is_closing():
            self._waiting[self] = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._waiting.pop(self, None)
        super().connection_lost(exc)

    def _shed(self) -> None:
        self._waiting.pop(self, None)
        self._disarm()
        self.transport.close()

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay_s, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _header_timeout(self) -> None:
        # Still IDLE: h11 has not seen a complete request line and headers since the timer was armed.
        if self.conn.their_state == h11.IDLE and not self.transport.is_closing():
            self._shed()

    def _body_timeout(self) -> None:
        # No body byte since the timer was armed. Closing ends the app's wait for the rest (a client disconnect).
        if self.conn.their_state == h11.SEND_BODY and not self.transport.is_closing():
            self.logger.warning("request body stalled for %.0f s: connection closed", self.body_timeout_s)
            self.transport.close()


def raise_open_file_limit() -> int:
    """Raise this process's open-file soft limit to its hard limit (capped at the kernel's ``nr_open``); return
    the soft limit now in force. Every connection holds a file descriptor, and the common default soft limit
    (1,024) is far below what the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if hard == resource.RLIM_INFINITY:
        try:
            target = int(Path("/proc/sys/fs/nr_open").read_text(encoding="ascii"))
        except (OSError, ValueError):
            target = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logging.getLogger(__name__).warning("cannot raise the open-file limit from %d to %d: %s",
                                                soft, target, exc)
    return soft


def connection_cap(configured: int, open_files: int) -> int:
    """The connection cap: ``configured`` (0: automatic), never above half the open-file limit, so that model
    files, job files, sockets to S3 and the like always have descriptors left."""
    half = max(16, open_files // 2)
    return min(configured, half) if configured > 0 else half


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API and web page until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from emotion.api.app import app
    from emotion.settings import get_settings

    settings = get_settings()
    open_files = raise_open_file_limit()
    cap = connection_cap(settings.http_max_connections, open_files)
    logging.getLogger(__name__).info("open-file limit %d, at most %d connections", open_files, cap)
    protocol = type("Protocol", (GuardedH11Protocol,), {"header_timeout_s": settings.http_header_timeout_s,
                                                         "body_timeout_s": settings.http_body_timeout_s,
                                                         "max_connections": cap, "_waiting": {}})
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=settings.http_keep_alive_s,
        access_log=False,  # the app logs one line per request itself (with its request id)
        server_header=False,
        proxy_headers=False,
        log_config=None,
        timeout_graceful_shutdown=10,
    )
    _Server(config).run()


@contextmanager
def serve_in_subprocess(
    env: dict[str, str] | None = None, timeout_s: float = 120.0, open_files: tuple[int, int] | None = None
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`emotion serve --port 0` in a child process (tests, benchmarks); yields (base URL, process) once the
    URL is printed, and stops the server on exit. ``open_files``: the child's (soft, hard) open-file limits."""

    def limit() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, open_files)

    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from emotion.cli import main; sys.exit(main(sys.argv[1:]))",
         "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(env if env is not None else os.environ, PYTHONUNBUFFERED="1"),
        preexec_fn=limit if open_files is not None else None,  # noqa: PLW1509 (no threads are started before)
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
