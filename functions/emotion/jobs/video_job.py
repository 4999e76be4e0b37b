"""Video job entry point for the GPU container (AWS Batch).

``python -m emotion.jobs.video_job --bucket B --key K`` or with the EventBridge "Object Created" event as
JSON (``--event JSON`` or the ``EMOTION_EVENT`` environment variable; Batch passes it through). ONNX
Runtime execution providers are the requested ones (``EMOTION_PROVIDERS``, default here
``CUDAExecutionProvider,CPUExecutionProvider``) intersected with those available; the choice is logged.
Exit status 0 for every handled outcome (a failed job is recorded in its status), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any
from urllib.parse import unquote_plus

log = logging.getLogger("emotion.jobs.video_job")

DEFAULT_PROVIDERS = "CUDAExecutionProvider,CPUExecutionProvider"


def target_from_event(event: dict[str, Any]) -> tuple[str, str]:
    """(bucket, key) from an EventBridge S3 'Object Created' event (or an S3 notification record)."""
    detail = event.get("detail")
    if isinstance(detail, dict):
        return str(detail["bucket"]["name"]), unquote_plus(str(detail["object"]["key"]))
    record = (event.get("Records") or [{}])[0]
    return str(record["s3"]["bucket"]["name"]), unquote_plus(str(record["s3"]["object"]["key"]))


def parse_args(argv: list[str] | None) -> tuple[str, str]:
    parser = argparse.ArgumentParser(prog="python -m emotion.jobs.video_job", description=__doc__.splitlines()[0])
    parser.add_argument("--bucket")
    parser.add_argument("--key")
    parser.add_argument("--event", help="EventBridge event JSON (default: $EMOTION_EVENT)")
    args = parser.parse_args(argv)
    raw = args.event or os.environ.get("EMOTION_EVENT")
    if args.bucket and args.key:
        return args.bucket, unquote_plus(args.key)
    if raw:
        try:
            return target_from_event(json.loads(raw))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            parser.error(f"cannot read bucket and key from the event: {exc}")
    parser.error("give --bucket and --key, or an EventBridge event in --event / $EMOTION_EVENT")
    raise AssertionError  # unreachable


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bucket, key = parse_args(argv)
    os.environ.setdefault("EMOTION_PROVIDERS", DEFAULT_PROVIDERS)
    os.environ.setdefault("EMOTION_STORAGE", "s3")
    from emotion.core.runtime import resolve_providers
    from emotion.jobs.service import process_upload
    from emotion.settings import get_settings

    get_settings.cache_clear()
    settings = get_settings()
    if settings.storage == "s3" and settings.inputs_bucket and bucket != settings.inputs_bucket:
        log.error("bucket %s is not the configured inputs bucket %s", bucket, settings.inputs_bucket)
        return 2
    chosen = resolve_providers(settings.providers)
    log.info("execution providers requested %s, using %s", settings.providers, chosen)
    started = time.perf_counter()
    outcome = process_upload(key, allow_large_video=True)
    log.info("video job %s: %s in %.1f s", key, outcome, time.perf_counter() - started)
    print(json.dumps({"bucket": bucket, "key": key, "outcome": outcome, "providers": chosen}))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
