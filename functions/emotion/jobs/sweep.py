"""Lambda entry point of the scheduled sweep (same image; an EventBridge schedule calls it every few minutes).

Jobs whose worker died (Lambda timeout or out-of-memory, a lost Batch job) stay ``processing``; uploads whose
event was lost or came before the object stay ``pending``. :func:`emotion.jobs.service.sweep` redelivers them
(an in-place S3 copy: a new ObjectCreated event, routed by the key as the first one was) or fails them once
their attempts are spent or their upload form has expired.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from emotion.jobs.service import sweep
from emotion.storage import get_storage
from emotion.storage.s3 import S3Storage

logger = Logger(service="emotion-sweep")


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    storage = get_storage()
    if not isinstance(storage, S3Storage):
        raise RuntimeError("the sweep Lambda needs EMOTION_STORAGE=s3")
    counts = sweep(storage.redeliver, storage)
    logger.info("sweep done", extra=counts)
    return counts
