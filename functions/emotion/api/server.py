"""``emotion serve``: the same FastAPI app under uvicorn, on 127.0.0.1:8000 by default."""

from __future__ import annotations

import logging
import sys

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
