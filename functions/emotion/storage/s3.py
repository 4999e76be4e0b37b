"""S3 storage (boto3): the only module of the service that touches boto3.

The endpoint, region and credentials come from the usual AWS environment (``AWS_REGION``,
``AWS_ENDPOINT_URL[_S3]`` for tests against moto, the Lambda/Batch role in AWS).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from emotion.storage.base import MAX_PRESIGN_S, PreconditionFailed, Role


class S3Storage:
    def __init__(self, inputs_bucket: str, results_bucket: str, client: Any = None):
        if not inputs_bucket or not results_bucket:
            raise ValueError("EMOTION_INPUTS_BUCKET and EMOTION_RESULTS_BUCKET must be set for storage=s3")
        self.buckets = {"inputs": inputs_bucket, "results": results_bucket}
        self.client = client or boto3.client(
            "s3", config=Config(signature_version="s3v4", retries={"max_attempts": 5, "mode": "standard"})
        )

    def get_bytes(self, role: Role, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.buckets[role], Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def put_bytes(self, role: Role, key: str, data: bytes, content_type: str, if_absent: bool = False) -> None:
        extra: dict[str, Any] = {"IfNoneMatch": "*"} if if_absent else {}
        try:
            self.client.put_object(Bucket=self.buckets[role], Key=key, Body=data, ContentType=content_type, **extra)
        except ClientError as exc:
            if if_absent and exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412",
                                                                            "ConditionalRequestConflict"):
                raise PreconditionFailed(key) from exc
            raise

    def size(self, role: Role, key: str) -> int | None:
        try:
            return int(self.client.head_object(Bucket=self.buckets[role], Key=key)["ContentLength"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def list_keys(self, role: Role, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.buckets[role], Prefix=prefix)
        return [obj["Key"] for page in pages for obj in page.get("Contents", [])]

    def redeliver(self, key: str) -> None:
        """A new ObjectCreated (Copy) event for an upload: copy the object onto itself with fresh metadata, so
        the S3 notification or EventBridge rule its key matches hands it to its worker again."""
        bucket = self.buckets["inputs"]
        head = self.client.head_object(Bucket=bucket, Key=key)
        self.client.copy_object(
            Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
            Metadata={"redelivered": str(int(time.time()))}, MetadataDirective="REPLACE",
            ContentType=head.get("ContentType", "application/octet-stream"),
        )

    def download(self, role: Role, key: str, path: Path) -> None:
        self.client.download_file(self.buckets[role], key, str(path))

    def upload(self, role: Role, key: str, path: Path, content_type: str) -> None:
        self.client.upload_file(str(path), self.buckets[role], key, ExtraArgs={"ContentType": content_type})

    def presigned_post(self, key: str, content_type: str, size: int, expires_s: int) -> dict[str, Any]:
        post = self.client.generate_presigned_post(
            Bucket=self.buckets["inputs"], Key=key,
            Fields={"Content-Type": content_type},
            # Exactly the declared size: the job's routing and limits were decided from it.
            Conditions=[{"Content-Type": content_type}, ["content-length-range", size, size]],
            ExpiresIn=min(expires_s, MAX_PRESIGN_S),
        )
        return {"url": post["url"], "fields": post["fields"]}

    def presigned_get(self, role: Role, key: str, expires_s: int) -> str:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.buckets[role], "Key": key}, ExpiresIn=expires_s))
