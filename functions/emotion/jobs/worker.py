"""The embedded (local mode) worker: an in-process queue standing in for S3 events and AWS Batch."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from emotion.jobs.service import process_upload

log = logging.getLogger(__name__)

_STOP = object()


class LocalWorker:
    """One background thread processing uploaded keys in order (the engine is shared, so one at a time)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="emotion-local-worker", daemon=True)
            self._thread.start()

    def submit(self, key: str) -> None:
        self._queue.put(key)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            key = self._queue.get()
            if key is _STOP:
                return
            try:
                outcome = process_upload(key)
                log.info("local job %s: %s", key.split("/")[1] if "/" in key else key, outcome)
            except Exception:  # noqa: BLE001 - the worker must survive anything
                log.exception("local worker: processing %s crashed", key)


worker = LocalWorker()


@asynccontextmanager
async def embedded_worker() -> AsyncIterator[LocalWorker | None]:
    """Run the local worker for the app's lifetime when storage is local (no-op with S3)."""
    from emotion.settings import get_settings

    if get_settings().storage != "local":
        yield None
        return
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
