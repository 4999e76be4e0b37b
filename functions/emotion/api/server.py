"""``emotion serve``: the same FastAPI app under uvicorn, on 127.0.0.1:8000 by default."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    * connections beyond ``max_connections`` are closed at once.
    """

    header_timeout_s = 10.0
    body_timeout_s = 60.0
    max_connections = 500

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.logger.warning("connection refused: %d open connections", len(self.connections))
            transport.close()
            return
        self._arm(self.header_timeout_s, self._header_timeout)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state == h11.SEND_BODY:
            self._arm(self.body_timeout_s, self._body_timeout)  # the headers are in; more body must keep coming
        elif self.conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED):
            self._disarm()  # the whole request is in: the app's to answer

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm(self.header_timeout_s, self._header_timeout)  # a kept-alive connection's next request too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

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
            self.transport.close()

    def _body_timeout(self) -> None:
        # No body byte since the timer was armed. Closing ends the app's wait for the rest (a client disconnect).
        if self.conn.their_state == h11.SEND_BODY and not self.transport.is_closing():
            self.logger.warning("request body stalled for %.0f s: connection closed", self.body_timeout_s)
            self.transport.close()


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API and web page until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from emotion.api.app import app
    from emotion.settings import get_settings

    settings = get_settings()
    protocol = type("Protocol", (GuardedH11Protocol,), {"header_timeout_s": settings.http_header_timeout_s,
                                                         "body_timeout_s": settings.http_body_timeout_s,
                                                         "max_connections": settings.http_max_connections})
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
