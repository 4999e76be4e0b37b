"""Deployment settings read from CDK context (``cdk.json`` or ``cdk deploy -c key=value``).

Every field has a default here; ``cdk.json`` repeats the defaults so operators can see them, and a test
keeps the two in step. Values given with ``-c`` arrive as strings and are parsed into the field's type.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from constructs import Node

#: Lambda handler entry points (module.attribute) the container image serves; names shared with functions/.
API_HANDLER = "emotion.api.lambda_handler.handler"
S3_TRIGGER_HANDLER = "emotion.jobs.s3_trigger.handler"
#: The GPU video job's module (run as ``python -m``).
VIDEO_JOB_MODULE = "emotion.jobs.video_job"
#: The scheduled sweep of stale and lost jobs.
SWEEP_HANDLER = "emotion.jobs.sweep.handler"
#: The collection chunk worker (SQS event source).
COLLECTION_WORKER_HANDLER = "emotion.jobs.collection_worker.handler"

#: Where the images keep the sha256-verified models (EMOTION_MODEL_DIR).
IMAGE_MODEL_DIR = "/opt/models"

#: GET paths of the web page and the API documentation: public while ``public_page`` is on.
PAGE_PATHS = ("/", "/static/{proxy+}", "/docs", "/docs/{proxy+}", "/openapi.json")

#: S3 key layout shared with the storage adapter.
UPLOADS_PREFIX = "uploads/"
RESULTS_PREFIX = "results/"
JOBS_PREFIX = "jobs/"
#: Upload keys are named by the service by route (emotion.storage.base.upload_key), never by the client's
#: file name, so routing does not depend on a name's case, script or extension: uploads/<job id>/input.<route>.
IMAGE_UPLOAD_SUFFIX = "/input.image"  # -> S3 trigger function
VIDEO_UPLOAD_SUFFIX = "/input.video"  # -> S3 trigger function (gpu_video off; size-capped at job creation)
GPU_VIDEO_UPLOAD_SUFFIX = "/input.gpu-video"  # -> AWS Batch GPU job (gpu_video on)
COLLECTION_UPLOAD_SUFFIX = "/input.collection"  # -> S3 trigger function, which plans the chunks
#: Chunk inputs the planner writes next to a collection's upload: uploads/<job id>/chunks/<n>.tar.
CHUNK_INPUTS_PATTERN = "uploads/*/chunks/*"


@dataclass(frozen=True)
class Config:
    """Every operator-tunable knob of the stack (context key = field name)."""

    # Storage
    cors_origins: list[str] = field(default_factory=list)  # extra browser origins allowed to upload
    uploads_expiration_days: int = 1
    results_expiration_days: int = 7
    access_logs_expiration_days: int = 90
    destroy_data_on_teardown: bool = True  # `cdk destroy` empties and deletes the buckets

    # API
    stage_name: str = "prod"
    public_paths: list[str] = field(default_factory=lambda: ["/healthz"])  # GET without an API key
    # The web page, its static files, /docs and /openapi.json without an API key (PAGE_PATHS); the page asks
    # for a key when the API answers 401. False: they need the key like the API (no page for browsers).
    public_page: bool = True
    api_rate_limit: float = 10.0  # usage plan, requests per second per key
    api_burst_limit: int = 20
    api_quota_per_day: int = 10_000
    stage_rate_limit: float = 50.0  # stage-wide throttling, all callers
    stage_burst_limit: int = 100

    # Functions
    architecture: str = "x86_64"  # or arm64 (image built for that platform)
    api_memory_mb: int = 2048
    api_timeout_s: int = 29  # API Gateway's integration limit
    api_reserved_concurrency: int | None = 10  # none = unreserved
    trigger_memory_mb: int = 3008
    trigger_timeout_s: int = 900
    trigger_reserved_concurrency: int | None = 5
    trigger_ephemeral_storage_mb: int = 2048
    trigger_retry_attempts: int = 2
    log_retention_days: int = 30
    classifier: str | None = None  # none: the package manifest's default_classifier (model/manifest.json)
    max_upload_bytes: int = 500_000_000
    upload_expires_s: int = 900
    video_fps: float = 5.0
    log_level: str = "INFO"

    # Jobs: a job 'processing' without an update for job_stale_s is taken to have lost its worker (it must
    # exceed trigger_timeout_s); the sweep function looks for such jobs every sweep_interval_minutes.
    job_stale_s: int = 1200
    sweep_interval_minutes: int = 5
    lambda_video_max_bytes: int = 200_000_000  # gpu_video off: larger videos are refused at job creation

    # Collections: chunks of images through SQS to the chunk worker, at most collection_max_concurrency at once
    collection_chunk_images: int = 50
    collection_max_concurrency: int = 10
    collection_worker_memory_mb: int = 2048
    collection_worker_timeout_s: int = 180
    collection_max_receive_count: int = 3  # deliveries of one chunk message before it goes to the DLQ

    # GPU video on AWS Batch
    gpu_video: bool = True
    gpu_instance_types: list[str] = field(default_factory=lambda: ["g4dn.xlarge", "g5.xlarge"])
    gpu_spot: bool = False
    batch_max_vcpus: int = 8
    video_job_vcpus: int = 4
    video_job_memory_mib: int = 14_336
    video_job_timeout_s: int = 3600
    video_job_retry_attempts: int = 2

    # Operations
    alarm_email: str = ""  # subscribed to the alarm topic when set

    def __post_init__(self) -> None:
        if self.architecture not in ("x86_64", "arm64"):
            raise ValueError(f"architecture must be x86_64 or arm64, not {self.architecture!r}")
        if self.uploads_expiration_days < 1 or self.results_expiration_days < 1:
            raise ValueError("expiration days must be >= 1")
        for name in ("api_reserved_concurrency", "trigger_reserved_concurrency"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or none (0 would throttle every call)")
        if not 1 <= self.video_job_retry_attempts <= 10:
            raise ValueError("video_job_retry_attempts must be 1..10 (AWS Batch limit)")
        if self.job_stale_s <= self.trigger_timeout_s:
            raise ValueError("job_stale_s must exceed trigger_timeout_s, or the sweep redelivers jobs still running")
        if not 2 <= self.collection_max_concurrency <= 1000:
            raise ValueError("collection_max_concurrency must be 2..1000 (SQS event source maximum concurrency)")
        if self.job_stale_s <= 6 * self.collection_worker_timeout_s:
            raise ValueError("job_stale_s must exceed the chunk queue's visibility timeout (6 x "
                             "collection_worker_timeout_s), or the sweep resends chunks SQS is about to redeliver")
        if self.api_timeout_s > 29:
            raise ValueError("api_timeout_s above 29 s is cut off by API Gateway's integration timeout")

    @classmethod
    def from_node(cls, node: Node) -> Config:
        """Read every field from the construct tree's context, falling back to the defaults."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = node.try_get_context(f.name)
            if raw is not None:
                values[f.name] = raw
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> Config:
        """Build from a mapping of context values (strings from ``-c`` or JSON values from cdk.json)."""
        hints = get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown context keys: {sorted(unknown)}")
        return cls(**{name: _parse(hints[name], value, name) for name, value in raw.items()})


def _parse(hint: Any, value: Any, name: str) -> Any:
    text = str(hint)
    optional = "None" in text
    if isinstance(value, str):
        stripped = value.strip()
        if optional and stripped.lower() in ("", "none", "null"):
            return None
        if text.startswith("list"):
            if stripped.startswith("["):
                value = json.loads(stripped)
            else:
                value = [v.strip() for v in stripped.split(",") if v.strip()]
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} cannot be null")
    if text.startswith("list"):
        if not isinstance(value, list):
            raise ValueError(f"{name} must be a list")
        return [str(v) for v in value]
    if hint is bool or text == "bool":
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, not {value!r}")
    if "int" in text:
        return int(value)
    if "float" in text:
        return float(value)
    return str(value)
