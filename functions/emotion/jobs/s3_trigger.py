"""Lambda entry point for S3 ObjectCreated events on the inputs bucket (same image as the API).

Thin: parse the records, URL-decode keys (``unquote_plus``), ignore keys outside ``uploads/``, and call
:func:`emotion.jobs.service.process_upload` once per record. Never logs object bytes or whole events.
Returns a summary; it does not raise for bad input, so S3's asynchronous retries are not spent on poison.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

from emotion.jobs.service import process_upload
from emotion.storage.base import UPLOAD_PREFIX

logger = Logger(service="emotion-s3-trigger")


def keys_from_event(event: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(bucket, decoded key, size) of each ObjectCreated record."""
    out = []
    for record in event.get("Records") or []:
        if not str(record.get("eventName", "")).startswith("ObjectCreated"):
            continue
        s3 = record.get("s3") or {}
        bucket = (s3.get("bucket") or {}).get("name", "")
        obj = s3.get("object") or {}
        out.append((bucket, unquote_plus(obj.get("key", "")), int(obj.get("size") or 0)))
    return out


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    results = []
    for bucket, key, size in keys_from_event(event):
        if not key.startswith(UPLOAD_PREFIX):
            logger.info("ignored key outside uploads/", extra={"bucket": bucket, "key": key[:300]})
            results.append({"key": key, "outcome": "ignored"})
            continue
        outcome = process_upload(key, allow_large_video=False)
        logger.info("processed", extra={"bucket": bucket, "key": key, "size": size, "outcome": outcome})
        results.append({"key": key, "outcome": outcome})
    return {"records": results}
