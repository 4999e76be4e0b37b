"""A bound on engine work under uvicorn: at most ``engine_concurrency`` analyses run at once (each may hold
up to ``max_decode_bytes`` of decoded image plus its working copies), at most ``engine_queue`` more (each
holding only its body) wait for a slot, and any request beyond that is answered at once with 429 and
``Retry-After`` instead of queueing without bound in the threadpool (which let 20-40 pixel bombs exhaust
the host's memory).

Under Lambda every execution environment serves one request at a time, so no limit is needed there.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from emotion.core.errors import EmotionError
from emotion.settings import get_settings

T = TypeVar("T")

# A request's peak beyond its decode: the annotated copy, the detector's input and ONNX activations.
_WORKING_BYTES_PER_REQUEST = 150_000_000


class TooBusy(EmotionError):
    code = "too_many_requests"
    status = 429

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.headers = {"retry-after": str(retry_after_s)}


def engine_slots() -> int:
    """Analyses that may run at once: ``engine_concurrency``, or (0) the CPU cores, fewer when half the
    memory cannot hold that many requests at the decode limit."""
    settings = get_settings()
    if settings.engine_concurrency > 0:
        return settings.engine_concurrency
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return cores
    per_request = settings.max_decode_bytes + _WORKING_BYTES_PER_REQUEST
    return max(1, min(cores, int(memory * 0.5 // per_request)))


class EngineLimiter:
    """Slots for engine calls in worker threads, per event loop (tests run several loops)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._waiting = 0

    def _current(self) -> anyio.CapacityLimiter:
        loop = asyncio.get_running_loop()
        if self._limiter is None or self._loop is not loop:
            self._loop, self._limiter, self._waiting = loop, anyio.CapacityLimiter(engine_slots()), 0
        return self._limiter

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        limiter = self._current()
        settings = get_settings()
        # A waiting request holds only its body (at most max_body_bytes), not a decode: room for many.
        queue = settings.engine_queue if settings.engine_queue >= 0 else 8 * int(limiter.total_tokens)
        if limiter.available_tokens == 0 and self._waiting >= queue:
            raise TooBusy(f"the server is analysing {int(limiter.total_tokens)} images and {self._waiting} more "
                          "are waiting; retry after the Retry-After seconds")
        self._waiting += 1
        try:
            await limiter.acquire()
        finally:
            self._waiting -= 1
        try:
            # Not abandoned on cancel (a client that hangs up): the slot is held until the work really ends.
            return await anyio.to_thread.run_sync(lambda: fn(*args))
        finally:
            limiter.release()


engine_limiter = EngineLimiter()
