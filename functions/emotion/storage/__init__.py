"""Storage adapters: S3 (boto3, the only module that touches it) and local disk (embedded mode)."""

from __future__ import annotations

from functools import lru_cache

from emotion.storage.base import INPUTS, RESULTS, Storage

__all__ = ["INPUTS", "RESULTS", "Storage", "get_storage"]


@lru_cache(maxsize=1)
def get_storage() -> Storage:
    """The process's storage adapter from settings (``storage``: local | s3); tests call ``cache_clear()``."""
    from emotion.settings import get_settings

    settings = get_settings()
    if settings.storage == "s3":
        from emotion.storage.s3 import S3Storage

        return S3Storage(settings.inputs_bucket, settings.results_bucket)
    from emotion.storage.local import LocalStorage

    return LocalStorage(settings.data_dir)
