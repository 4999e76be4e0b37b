"""The embedded (local mode) worker: an in-process queue standing in for S3 events and AWS Batch.

Collection chunks (:mod:`emotion.jobs.collection`) run on a pool of ``collection_workers`` threads (default: the
engine slots of ``emotion serve``), standing in for the SQS queue and chunk Lambdas.

The queue itself is in memory, but the jobs are not: at start-up every job left ``processing`` (its worker
died with the last process) or ``pending`` with its upload stored is queued again from storage, and the
temp folders and half-received uploads of a killed process are removed. While running, the same
:func:`~emotion.jobs.service.sweep` runs every ``job_sweep_interval_s``.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from emotion.jobs.collection import process_chunk
from emotion.jobs.service import job_temp_dir, process_upload, sweep

log = logging.getLogger(__name__)

_STOP = object()


class LocalWorker:
    """One background thread processing uploaded keys in order (the engine is shared, so one at a time)."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._queued: set[str] = set()  # keys waiting, so a sweep does not queue one twice
        self._lock = threading.Lock()
        self._recovering = False
        self._chunks: ThreadPoolExecutor | None = None
        self._chunks_queued: set[tuple[str, int]] = set()

    def submit_chunks(self, job_id: str, chunks: list[int]) -> None:
        """Queue collection chunks on the chunk threads (the local stand-in for SQS and the chunk Lambdas)."""
        with self._lock:
            if self._chunks is None:
                self._chunks = ThreadPoolExecutor(_chunk_workers(), thread_name_prefix="emotion-chunk")
            for chunk in chunks:
                if (job_id, chunk) not in self._chunks_queued:
                    self._chunks_queued.add((job_id, chunk))
                    self._chunks.submit(self._run_chunk, job_id, chunk)

    def _run_chunk(self, job_id: str, chunk: int) -> None:
        try:
            outcome = process_chunk(job_id, chunk)
            log.debug("local chunk %s/%d: %s", job_id, chunk, outcome)
        except Exception:  # noqa: BLE001 - the sweep sends a chunk that failed here again
            log.exception("local worker: chunk %d of %s crashed", chunk, job_id)
        finally:
            with self._lock:
                self._chunks_queued.discard((job_id, chunk))

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._recovering = True
            self._thread = threading.Thread(target=self._loop, name="emotion-local-worker", daemon=True)
            self._thread.start()

    def submit(self, key: str) -> None:
        with self._lock:
            if key in self._queued:
                return
            self._queued.add(key)
        self._queue.put(key)

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None
        with self._lock:
            pool, self._chunks = self._chunks, None
            self._chunks_queued.clear()
        if pool is not None:  # chunks not started are sent again by the next start's sweep
            pool.shutdown(wait=True, cancel_futures=True)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        from emotion.settings import get_settings

        interval = get_settings().job_sweep_interval_s
        self._recover()
        while True:
            try:
                key = self._queue.get(timeout=interval)
            except queue.Empty:
                self._sweep(stale_s=None)
                continue
            if key is _STOP:
                return
            with self._lock:
                self._queued.discard(key)
            try:
                # During recovery no other worker can hold a 'processing' job: re-claim it now.
                outcome = process_upload(key, stale_s=0 if self._recovering else None)
                log.info("local job %s: %s", key.split("/")[1] if "/" in key else key, outcome)
            except Exception:  # noqa: BLE001 - the worker must survive anything
                log.exception("local worker: processing %s crashed", key)
            if self._recovering and self._queue.empty():
                self._recovering = False

    def _recover(self) -> None:
        """Clear a killed process's leftovers, then queue every unfinished job from storage."""
        temp = job_temp_dir()
        if temp is not None:
            for leftover in temp.iterdir():
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
            _remove_partial_uploads(temp.parent / "inputs")
        counts = self._sweep(stale_s=0)
        if not counts.get("redelivered"):
            self._recovering = False

    def _sweep(self, stale_s: float | None) -> dict[str, int]:
        try:
            return sweep(self.submit, stale_s=stale_s)
        except Exception:  # noqa: BLE001 - a failed sweep is retried at the next interval
            log.exception("local worker: sweep failed")
            return {}


def _chunk_workers() -> int:
    from emotion.settings import get_settings

    configured = get_settings().collection_workers
    if configured > 0:
        return configured
    from emotion.api.limits import engine_slots

    return engine_slots()


def _remove_partial_uploads(inputs: Path) -> None:
    if inputs.is_dir():
        for part in inputs.glob("uploads/*/.*.part"):
            part.unlink(missing_ok=True)


worker = LocalWorker()


@asynccontextmanager
async def embedded_worker() -> AsyncIterator[LocalWorker | None]:
    """Run the local worker for the app's lifetime when storage is local (no-op with S3)."""
    from emotion.settings import get_settings

    if get_settings().storage != "local":
        yield None
        return
    from emotion.storage import get_storage

    get_storage()  # now, not on the first request: an unreadable, empty or short signing key stops the start
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()
