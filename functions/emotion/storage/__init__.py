"""Storage adapters: S3 (boto3, the only module that touches it) and local disk (embedded mode)."""

from __future__ import annotations

import threading

from emotion.storage.base import INPUTS, RESULTS, Storage

__all__ = ["INPUTS", "RESULTS", "Storage", "get_storage"]


class _CachedStorage:
    """The process's one storage adapter, built under a lock.

    An ``lru_cache`` lets concurrent first callers each build an adapter (and race on the local signing key);
    here exactly one is built. ``cache_clear()`` (tests) forgets it, as with ``lru_cache``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._storage: Storage | None = None

    def __call__(self) -> Storage:
        storage = self._storage
        if storage is None:
            with self._lock:
                if self._storage is None:
                    self._storage = _build()
                storage = self._storage
        return storage

    def cache_clear(self) -> None:
        with self._lock:
            self._storage = None


def _build() -> Storage:
    from emotion.settings import get_settings

    settings = get_settings()
    if settings.storage == "s3":
        from emotion.storage.s3 import S3Storage

        return S3Storage(settings.inputs_bucket, settings.results_bucket)
    from emotion.storage.local import LocalStorage

    return LocalStorage(settings.data_dir)


#: The process's storage adapter from settings (``storage``: local | s3).
get_storage = _CachedStorage()
