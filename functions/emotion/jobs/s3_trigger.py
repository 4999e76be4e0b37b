"""Lambda entry point for S3 ObjectCreated events on the inputs bucket (same image as the API).

Thin: parse the records, URL-decode keys (``unquote_plus``), ignore keys outside ``uploads/``, and call
:func:`emotion.jobs.service.process_upload` once per record. Never logs object bytes or whole events.
Returns a summary; it does not raise for bad input, so S3's asynchronous retries are not spent on poison:
a malformed record is logged and skipped, and the other records of the batch go on.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

from emotion.jobs.service import process_upload
from emotion.storage.base import UPLOAD_PREFIX

logger = Logger(service="emotion-s3-trigger")


class MalformedRecord(ValueError):
    """An S3 event record without a usable bucket name, object key or size."""


def parse_record(record: Any) -> tuple[str, str, int] | None:
    """(bucket, decoded key, size) of an ObjectCreated record, None for other event types."""
    if not isinstance(record, dict):
        raise MalformedRecord("record is not an object")
    if not str(record.get("eventName", "")).startswith("ObjectCreated"):
        return None
    s3 = record.get("s3")
    obj = s3.get("object") if isinstance(s3, dict) else None
    bucket = s3.get("bucket") if isinstance(s3, dict) else None
    if not isinstance(obj, dict) or not isinstance(bucket, dict):
        raise MalformedRecord("record has no s3.object / s3.bucket")
    key, name, size = obj.get("key"), bucket.get("name", ""), obj.get("size", 0)
    if not isinstance(key, str) or not key or not isinstance(name, str):
        raise MalformedRecord("object key is missing or not a string")
    if isinstance(size, bool) or not isinstance(size, int | str):
        raise MalformedRecord("object size is not a number")
    try:
        size = int(size or 0)
    except ValueError as exc:
        raise MalformedRecord("object size is not a number") from exc
    return name, unquote_plus(key), size


def keys_from_event(event: Any) -> list[tuple[str, str, int]]:
    """(bucket, decoded key, size) of each well-formed ObjectCreated record; malformed ones are logged."""
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        logger.warning("event has no Records list; nothing to do")
        return []
    out = []
    for index, record in enumerate(records):
        try:
            parsed = parse_record(record)
        except MalformedRecord as exc:
            logger.warning("malformed S3 record skipped", extra={"index": index, "reason": str(exc)})
            continue
        if parsed is not None:
            out.append(parsed)
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
