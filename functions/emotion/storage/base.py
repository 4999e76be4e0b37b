"""The storage protocol the jobs service uses, and the S3 key layout shared with ``infra/``.

Two logical buckets: ``inputs`` (uploads at ``uploads/{job_id}/input.{route}``) and ``results``
(``results/{job_id}/result.json``, annotated output next to it, status records at ``jobs/{job_id}.json``).

An upload's key is named by the service, never by the client's file name: its suffix says which worker
takes it (``infra/`` routes S3 events by these suffixes), so no name's case, script or extension can leave
an upload without a worker.
"""

from __future__ import annotations

import base64
import calendar
import json
import re
import time
from pathlib import Path
from typing import Any, Literal, Protocol

Role = Literal["inputs", "results"]
INPUTS: Role = "inputs"
RESULTS: Role = "results"

UPLOAD_PREFIX = "uploads/"
MAX_PRESIGN_S = 900  # presigned POSTs expire in at most 15 minutes


#: Upload routes → key suffix: the S3 trigger Lambda takes images and (when the GPU path is off) videos up
#: to ``lambda_video_max_bytes``; the Batch GPU job takes ``gpu-video``. Shared with infra/config.py.
#: ``collection`` (an archive of many photos) goes to the trigger function too, which plans its chunks.
Route = Literal["image", "video", "gpu-video", "collection"]
ROUTES: tuple[Route, ...] = ("image", "video", "gpu-video", "collection")
JOBS_PREFIX = "jobs/"


def upload_key(job_id: str, route: Route) -> str:
    if route not in ROUTES:
        raise ValueError(f"unknown upload route {route!r}")
    return f"{UPLOAD_PREFIX}{job_id}/input.{route}"


def result_key(job_id: str) -> str:
    return f"results/{job_id}/result.json"


def annotated_key(job_id: str, suffix: str) -> str:
    return f"results/{job_id}/annotated{suffix}"


def status_key(job_id: str) -> str:
    return f"jobs/{job_id}.json"


def safe_filename(name: str) -> str:
    """A file name safe in a key and on disk: base name only, [A-Za-z0-9._-], at most 100 characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "upload"
    stem, dot, ext = cleaned.rpartition(".")
    if dot and len(ext) <= 10:
        return f"{stem[: 100 - len(ext) - 1]}.{ext}" if stem else cleaned[:100]
    return cleaned[:100]


class PreconditionFailed(Exception):
    """A conditional write lost: the object already exists."""


class Storage(Protocol):
    """What the jobs service needs from object storage."""

    def get_bytes(self, role: Role, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    def put_bytes(self, role: Role, key: str, data: bytes, content_type: str, if_absent: bool = False) -> None:
        """Write an object; with ``if_absent`` raise :class:`PreconditionFailed` when it already exists."""

    def size(self, role: Role, key: str) -> int | None:
        """The object's size in bytes, or None when it does not exist."""

    def download(self, role: Role, key: str, path: Path) -> None:
        """Stream an object to a local file (videos are never held in memory)."""

    def upload(self, role: Role, key: str, path: Path, content_type: str) -> None:
        """Stream a local file to an object."""

    def presigned_post(self, key: str, content_type: str, size: int, expires_s: int) -> dict[str, Any]:
        """``{url, fields}`` for a browser form POST of one file to ``key`` in the inputs bucket, limited to
        ``content_type`` and exactly ``size`` bytes (the size the job declared), valid ``expires_s`` (≤ 900)
        seconds."""

    def list_keys(self, role: Role, prefix: str) -> list[str]:
        """Every key under ``prefix`` (the sweep reads the job records)."""

    def presigned_get(self, role: Role, key: str, expires_s: int) -> str:
        """A time-limited URL to download an object."""


def policy_document(key: str, content_type: str, size: int, expires_s: int, bucket: str) -> dict[str, Any]:
    """The POST policy S3 evaluates (and the local stand-in evaluates the same way): exactly ``size`` bytes."""
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + min(expires_s, MAX_PRESIGN_S)))
    return {"expiration": expiration, "conditions": [
        {"bucket": bucket}, {"key": key}, {"Content-Type": content_type}, ["content-length-range", size, size],
    ]}


def policy_size_range(policy_b64: str) -> tuple[int, int] | None:
    """The ``content-length-range`` of a POST policy, or None when it has none or is malformed."""
    try:
        policy = json.loads(base64.b64decode(policy_b64))
        for cond in policy.get("conditions", []):
            if isinstance(cond, list) and len(cond) == 3 and cond[0] == "content-length-range":
                return int(cond[1]), int(cond[2])
    except (ValueError, TypeError, AttributeError):
        return None
    return None


def check_post_policy(policy_b64: str, fields: dict[str, str], size: int, bucket: str | None = None) -> str | None:
    """Evaluate a POST policy as S3 does for the conditions we issue; None when allowed, else the reason."""
    try:
        policy = json.loads(base64.b64decode(policy_b64))
        stamp = policy["expiration"].split(".")[0].rstrip("Z")
        expiration = calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%S"))
    except (ValueError, KeyError, TypeError):
        return "malformed policy"
    if expiration < time.time():
        return "policy expired"
    lowered = {k.lower(): v for k, v in fields.items()}
    for cond in policy.get("conditions", []):
        if isinstance(cond, dict):
            for name, value in cond.items():
                if name == "bucket":
                    if bucket is not None and value != bucket:
                        return "bucket mismatch"
                    continue
                if name.startswith("x-amz-"):
                    continue
                if lowered.get(name.lower()) != value:
                    return f"field {name} does not match the policy"
        elif isinstance(cond, list) and len(cond) == 3 and cond[0] == "content-length-range":
            if not int(cond[1]) <= size <= int(cond[2]):
                return f"size {size} outside {cond[1]}..{cond[2]} bytes"
        elif (isinstance(cond, list) and len(cond) == 3 and cond[0] == "eq"
              and lowered.get(str(cond[1]).lstrip("$").lower()) != cond[2]):
            return f"field {cond[1]} does not match the policy"
    return None
