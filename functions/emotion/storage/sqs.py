"""The SQS queue of collection chunks (boto3; with ``emotion.storage.s3`` the only modules that touch it)."""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.config import Config


class ChunkQueue:
    """Sends one message per chunk, ``{"job_id": ..., "chunk": n}``, ten to a request."""

    def __init__(self, queue_url: str, client: Any = None):
        if not queue_url:
            raise ValueError("EMOTION_COLLECTION_QUEUE_URL must be set for collections with storage=s3")
        self.queue_url = queue_url
        self.client = client or boto3.client("sqs", config=Config(retries={"max_attempts": 5, "mode": "standard"}))

    def send(self, job_id: str, chunks: list[int]) -> None:
        for start in range(0, len(chunks), 10):
            entries = [{"Id": str(chunk), "MessageBody": json.dumps({"job_id": job_id, "chunk": chunk})}
                       for chunk in chunks[start : start + 10]]
            failed = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries).get("Failed") or []
            if failed:  # the caller's attempt fails; the upload (or the sweep) is delivered again
                raise RuntimeError(f"SQS refused {len(failed)} chunk messages: {failed[0].get('Code')}")
