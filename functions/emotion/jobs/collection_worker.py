"""Lambda entry point of the collection chunk worker (same image; an SQS event source mapping calls it).

Thin: each record's body is ``{"job_id", "chunk"}``; :func:`emotion.jobs.collection.process_chunk` does the
work once per chunk however often SQS delivers it. A malformed body is logged and dropped (retrying cannot fix
it); a chunk that raised (storage unreachable) is reported as a batch item failure, so SQS delivers only it
again and, after ``maxReceiveCount`` deliveries, moves it to the dead-letter queue, whose depth is alarmed.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from emotion.jobs.collection import process_chunk
from emotion.jobs.service import JOB_ID

logger = Logger(service="emotion-collection-worker")


def parse_body(body: Any) -> tuple[str, int] | None:
    try:
        message = json.loads(body)
        job_id, chunk = message["job_id"], message["chunk"]
    except (TypeError, ValueError, KeyError):
        return None
    if not isinstance(job_id, str) or not JOB_ID.fullmatch(job_id) or isinstance(chunk, bool) \
            or not isinstance(chunk, int) or chunk < 0:
        return None
    return job_id, chunk


@logger.inject_lambda_context(log_event=False)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures = []
    records = event.get("Records") if isinstance(event, dict) else None
    for record in records if isinstance(records, list) else []:
        message_id = record.get("messageId", "") if isinstance(record, dict) else ""
        parsed = parse_body(record.get("body") if isinstance(record, dict) else None)
        if parsed is None:
            logger.warning("malformed chunk message dropped", extra={"message_id": message_id})
            continue
        job_id, chunk = parsed
        try:
            outcome = process_chunk(job_id, chunk)
        except Exception:  # noqa: BLE001 - SQS redelivers this message only
            logger.exception("chunk failed; SQS delivers it again", extra={"job_id": job_id, "chunk": chunk})
            failures.append({"itemIdentifier": message_id})
            continue
        logger.info("chunk processed", extra={"job_id": job_id, "chunk": chunk, "outcome": outcome})
    return {"batchItemFailures": failures}
