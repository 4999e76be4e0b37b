"""The real app under uvicorn on 127.0.0.1 in a thread, with settings from environment overrides."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_server(env: dict[str, str], unset: tuple[str, ...] = ("EMOTION_API_KEY",)) -> Iterator[str]:
    """Yields the base URL of a server whose settings are the environment plus ``env`` (minus ``unset``)."""
    import uvicorn

    from emotion.settings import get_settings
    from emotion.storage import get_storage

    mp = pytest.MonkeyPatch()
    for name, value in env.items():
        mp.setenv(name, value)
    for name in unset:
        mp.delenv(name, raising=False)
    get_settings.cache_clear()
    get_storage.cache_clear()
    from emotion.api.app import create_app

    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while time.time() < deadline and not srv.started:
        time.sleep(0.1)
    assert srv.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{srv.config.port}"
    finally:
        srv.should_exit = True
        thread.join(15)
        mp.undo()
        get_settings.cache_clear()
        get_storage.cache_clear()
