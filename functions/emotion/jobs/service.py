"""The jobs service: create a job, read its status, process an uploaded object (idempotently).

A job's state lives in one status record (``jobs/{job_id}.json`` in the results bucket). Processing is
claimed per attempt with a conditional write (``jobs/{job_id}.attempt-{n}``, If-None-Match: *), so duplicate
deliveries of one S3 event produce one result; a job stuck in ``processing`` (a crashed worker) may be
re-claimed after ``job_stale_s``, at most ``job_max_attempts`` times, then it ends as ``failed``. Every
processing error is recorded in the status and never re-raised, so a poison input is not retried forever.

Nothing waits forever: :func:`sweep` (a scheduled Lambda on AWS; at start-up and periodically in local mode)
redelivers stale ``processing`` jobs and uploaded-but-unprocessed ``pending`` ones, fails jobs that used up
their attempts, and fails pending jobs whose upload never came. The upload's key is named by its route
(``uploads/{id}/input.image|video|gpu-video|collection``) so every kind reaches a worker; the pipeline that runs
is chosen from the bytes (sniffed), not from the declared type, except for collections (archives of many photos,
:mod:`emotion.jobs.collection`), whose upload's worker only plans chunks that other workers analyse.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from emotion.core.errors import BadParameter, EmotionError, UnsupportedMediaType
from emotion.settings import get_settings
from emotion.storage import INPUTS, RESULTS, Storage, get_storage
from emotion.storage.base import (
    JOBS_PREFIX,
    PreconditionFailed,
    Route,
    annotated_key,
    result_key,
    safe_filename,
    status_key,
    upload_key,
)

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
UPLOAD_KEY = re.compile(r"^uploads/([0-9a-f]{32})/input\.(image|video|gpu-video|collection)$")
STATUS_KEY = re.compile(r"^jobs/([0-9a-f]{32})\.json$")

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff")
VIDEO_TYPES = ("video/mp4", "video/quicktime", "video/webm", "video/x-matroska", "video/x-msvideo", "video/mpeg")
ARCHIVE_TYPES = ("application/zip", "application/x-zip-compressed", "application/x-tar")

Status = Literal["pending", "processing", "succeeded", "failed"]
Outcome = Literal["ignored", "unknown_job", "duplicate", "in_progress", "upload_missing", "succeeded", "failed",
                  "planned"]
Kind = Literal["image", "video", "collection"]


class JobNotFound(EmotionError):
    code = "job_not_found"
    status = 404


class UploadTooLarge(EmotionError):
    code = "upload_too_large"
    status = 413


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _age_s(stamp: str, now: float | None = None) -> float:
    try:
        return (time.time() if now is None else now) - datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return float("inf")


def kind_of(content_type: str) -> Kind:
    if content_type in IMAGE_TYPES:
        return "image"
    if content_type in VIDEO_TYPES:
        return "video"
    if content_type in ARCHIVE_TYPES:
        return "collection"
    raise UnsupportedMediaType(f"content type {content_type!r} is not accepted; use one of "
                               f"{', '.join(IMAGE_TYPES + VIDEO_TYPES + ARCHIVE_TYPES)}")


def check_job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id or ""):
        raise BadParameter("job_id must be 32 lowercase hex characters")
    return job_id


# ------------------------------------------------------------------------------------------ status records


def read_record(job_id: str, storage: Storage | None = None) -> dict[str, Any] | None:
    data = (storage or get_storage()).get_bytes(RESULTS, status_key(job_id))
    return json.loads(data) if data else None


def write_record(record: dict[str, Any], storage: Storage | None = None) -> None:
    record["updated_at"] = _now()
    (storage or get_storage()).put_bytes(RESULTS, status_key(record["job_id"]), json.dumps(record).encode(),
                                         "application/json")


def upload_route(kind: Kind, size: int) -> Route:
    """Which worker takes an upload of this kind and declared size; refuses what no worker could take."""
    settings = get_settings()
    if kind == "collection":
        return "collection"
    if kind == "image":
        if size > settings.job_image_max_bytes:
            raise UploadTooLarge(f"image jobs are limited to {settings.job_image_max_bytes:,} bytes")
        return "image"
    if settings.storage == "s3" and settings.gpu_video:
        return "gpu-video"
    if settings.storage == "s3" and size > settings.lambda_video_max_bytes:
        raise UploadTooLarge(
            f"videos over {settings.lambda_video_max_bytes:,} bytes need the GPU video path, which this "
            "deployment has switched off (gpu_video); send a shorter or more compressed video")
    return "video"


def create_job(filename: str, content_type: str, size: int, storage: Storage | None = None,
               classifier: str | None = None, fps: float | str | None = None,
               min_face: int | None = None) -> dict[str, Any]:
    """A new pending job and a presigned POST for its upload (content type and exact size bound by the policy).

    ``classifier``, ``fps`` (video frames per second, or "all") and ``min_face`` (px; smaller faces are not
    tracked in a video) are checked now and used when it runs."""
    storage = storage or get_storage()
    settings = get_settings()
    kind = kind_of(content_type)
    if classifier is not None:
        from emotion.core.engine import classifier_names

        if classifier not in classifier_names():
            raise BadParameter(f"unknown classifier {classifier!r}; choose one of {', '.join(classifier_names())}")
    if fps is not None and fps != "all" and not (isinstance(fps, int | float) and 0 < fps <= 60):
        raise BadParameter("fps must be between 0 and 60 frames per second, or 'all'")
    if min_face is not None and not (isinstance(min_face, int) and 0 <= min_face <= 10_000):
        raise BadParameter("min_face must be between 0 and 10000 pixels")
    if size < 1:
        raise BadParameter("size must be at least 1 byte")
    if size > settings.max_upload_bytes:
        raise UploadTooLarge(f"size {size:,} bytes is over the upload limit of {settings.max_upload_bytes:,} bytes")
    route = upload_route(kind, size)
    job_id = uuid.uuid4().hex
    key = upload_key(job_id, route)
    now = _now()
    record = {"job_id": job_id, "status": "pending", "progress": 0.0, "created_at": now, "updated_at": now,
              "kind": kind, "filename": safe_filename(filename), "content_type": content_type, "size": size,
              "input_key": key, "attempts": 0, "result_key": None, "annotated_key": None, "error": None,
              "classifier": classifier, "fps": fps, "min_face": min_face}
    write_record(record, storage)
    upload = storage.presigned_post(key, content_type, size, settings.upload_expires_s)
    log.info("job created", extra={"job_id": job_id, "kind": kind, "size": size, "route": route})
    return {"job_id": job_id, "upload": upload, "expires_in": min(settings.upload_expires_s, 900)}


def get_job(job_id: str, storage: Storage | None = None) -> dict[str, Any]:
    """The public view of a job: status, progress, times, result inline (small) or a presigned result_url."""
    storage = storage or get_storage()
    settings = get_settings()
    record = read_record(check_job_id(job_id), storage)
    if record is None:
        raise JobNotFound(f"no job {job_id}")
    view: dict[str, Any] = {key: record.get(key) for key in (
        "job_id", "status", "progress", "created_at", "updated_at", "kind", "filename", "error")}
    view.update(result=None, result_url=None, annotated_url=None, collection=None, files=None)
    if record.get("kind") == "collection":
        from emotion.jobs.collection import file_keys, progress

        view["collection"] = progress(record, storage)
        if view["collection"]["total"]:
            view["progress"] = round(view["collection"]["done"] / view["collection"]["total"], 4) \
                if record["status"] != "succeeded" else 1.0
        if record["status"] == "succeeded":
            view["files"] = {name: storage.presigned_get(RESULTS, key, settings.job_url_expires_s)
                             for name, key in file_keys(job_id).items()}
    if record["status"] == "succeeded" and record.get("result_key"):
        size = storage.size(RESULTS, record["result_key"]) or 0
        if size <= settings.job_inline_result_bytes:
            data = storage.get_bytes(RESULTS, record["result_key"])
            view["result"] = json.loads(data) if data else None
        else:
            view["result_url"] = storage.presigned_get(RESULTS, record["result_key"], settings.job_url_expires_s)
        if record.get("annotated_key"):
            view["annotated_url"] = storage.presigned_get(RESULTS, record["annotated_key"],
                                                          settings.job_url_expires_s)
    return view


# ------------------------------------------------------------------------------------------ processing


def parse_upload_key(key: str) -> str | None:
    """The job id of an upload key ``uploads/{job_id}/input.{route}``, or None for any other key."""
    match = UPLOAD_KEY.fullmatch(key)
    return match.group(1) if match else None


def process_upload(key: str, storage: Storage | None = None, allow_large_video: bool = True,
                   stale_s: float | None = None) -> Outcome:
    """Process the uploaded object at ``key`` once. Safe to call for every delivery of the same event.

    ``allow_large_video`` False (the Lambda trigger) refuses videos over ``lambda_video_max_bytes`` (job
    creation sends those to the Batch job). ``stale_s`` (default ``job_stale_s``): how old a ``processing``
    record must be to be re-claimed; the local worker passes 0 at start-up, when no other worker can be alive.
    A missing object leaves the job pending (an event may come before its object; the sweep retries).
    Never raises for bad input: failures are recorded in the job status.
    """
    storage = storage or get_storage()
    settings = get_settings()
    job_id = parse_upload_key(key)
    if job_id is None:
        log.info("ignoring key outside uploads/", extra={"key": key[:300]})
        return "ignored"
    record = read_record(job_id, storage)
    if record is None or record.get("input_key") != key:
        log.warning("upload without a matching job", extra={"job_id": job_id})
        return "unknown_job"
    if record["status"] in ("succeeded", "failed") or record.get("stage") == "chunks":
        log.info("duplicate delivery for a finished or planned job",
                 extra={"job_id": job_id, "status": record["status"]})
        return "duplicate"
    stale = settings.job_stale_s if stale_s is None else stale_s
    if record["status"] == "processing" and _age_s(record["updated_at"]) < stale:
        return "in_progress"
    size = storage.size(INPUTS, key)
    if size is None:
        log.info("upload not there (yet): the job stays pending", extra={"job_id": job_id})
        return "upload_missing"
    attempt = int(record.get("attempts", 0)) + 1
    if attempt > settings.job_max_attempts:
        _fail(record, "processing_abandoned",
              f"processing did not finish after {settings.job_max_attempts} attempts", storage)
        return "failed"
    try:
        storage.put_bytes(RESULTS, f"jobs/{job_id}.attempt-{attempt}", b"", "application/octet-stream",
                          if_absent=True)
    except PreconditionFailed:
        log.info("another delivery claimed this attempt", extra={"job_id": job_id, "attempt": attempt})
        return "in_progress"
    record.update(status="processing", attempts=attempt, progress=0.0, error=None)
    write_record(record, storage)
    log.info("processing", extra={"job_id": job_id, "kind": record["kind"], "size": size, "attempt": attempt})
    started = time.perf_counter()
    try:
        if record["kind"] == "collection":
            _plan(record, storage)
            return "planned"
        _run(record, size, storage, allow_large_video)
    except EmotionError as exc:
        _fail(record, exc.code, exc.message, storage)
        return "failed"
    except Exception as exc:  # noqa: BLE001 - recorded, never retried forever
        log.exception("processing failed", extra={"job_id": job_id})
        _fail(record, "processing_error", f"processing failed ({type(exc).__name__})", storage)
        return "failed"
    log.info("succeeded", extra={"job_id": job_id, "ms": round((time.perf_counter() - started) * 1000)})
    return "succeeded"


def sweep(redeliver: Callable[[str], None], storage: Storage | None = None, stale_s: float | None = None,
          now: float | None = None) -> dict[str, int]:
    """Finish what nobody is finishing: for every job record,

    - ``processing`` without an update for ``stale_s`` (default ``job_stale_s``; its worker died): redelivered
      while attempts remain, else failed (``processing_abandoned``);
    - ``pending`` with its upload stored but no update for ``stale_s`` (a lost or early event): redelivered;
    - ``pending`` with no upload after the upload form expired (plus ``stale_s``): failed (``upload_expired``).

    ``redeliver(key)`` hands an upload to its worker again (local: the queue; S3: an in-place copy, so the
    routing by key applies). Returns counts per action.
    """
    storage = storage or get_storage()
    settings = get_settings()
    stale = settings.job_stale_s if stale_s is None else stale_s
    counts = {"redelivered": 0, "failed": 0, "seen": 0}
    for status_name in storage.list_keys(RESULTS, JOBS_PREFIX):
        match = STATUS_KEY.fullmatch(status_name)
        if match is None:
            continue
        record = read_record(match.group(1), storage)
        if record is None or record.get("status") not in ("pending", "processing"):
            continue
        counts["seen"] += 1
        if record.get("stage") == "chunks":
            from emotion.jobs.collection import sweep_collection

            action = sweep_collection(record, storage, stale, now)
            if action in ("redelivered", "failed"):
                counts[action] += 1
            continue
        age = _age_s(record.get("updated_at", ""), now)
        key = str(record.get("input_key", ""))
        if age < stale:
            continue
        if record["status"] == "processing":
            if int(record.get("attempts", 0)) >= settings.job_max_attempts:
                _fail(record, "processing_abandoned", f"processing stopped (worker timeout or crash) after "
                      f"{settings.job_max_attempts} attempts; create a new job to try again", storage)
                counts["failed"] += 1
            else:
                redeliver(key)
                counts["redelivered"] += 1
        elif storage.size(INPUTS, key) is not None:
            redeliver(key)
            counts["redelivered"] += 1
        elif age > settings.upload_expires_s + stale:
            _fail(record, "upload_expired", "no upload arrived before the upload form expired", storage)
            counts["failed"] += 1
    if counts["redelivered"] or counts["failed"]:
        log.info("sweep", extra=counts)
    return counts


def _fail(record: dict[str, Any], code: str, message: str, storage: Storage) -> None:
    record.update(status="failed", error={"code": code, "message": message})
    write_record(record, storage)
    log.warning("job failed", extra={"job_id": record["job_id"], "code": code})


def _plan(record: dict[str, Any], storage: Storage) -> None:
    from emotion.jobs.collection import plan

    with tempfile.TemporaryDirectory(prefix="emotion-job-", dir=job_temp_dir()) as tmp:
        source = Path(tmp) / "input"
        storage.download(INPUTS, record["input_key"], source)
        plan(record, source, storage)


def _run(record: dict[str, Any], size: int, storage: Storage, allow_large_video: bool = True) -> None:
    from emotion.core.imageio import sniff_format

    settings = get_settings()
    job_id, key = record["job_id"], record["input_key"]
    with tempfile.TemporaryDirectory(prefix="emotion-job-", dir=job_temp_dir()) as tmp:
        source = Path(tmp) / "input"
        storage.download(INPUTS, key, source)
        with source.open("rb") as fh:
            head = fh.read(64)
        # The bytes decide the pipeline (the declared type only chose the route and its size limit).
        record["kind"] = "image" if sniff_format(head) is not None else "video"
        if record["kind"] == "image":
            if size > settings.job_image_max_bytes:
                raise UploadTooLarge(f"images are limited to {settings.job_image_max_bytes:,} bytes")
            from emotion.core.annotate import annotate
            from emotion.core.engine import analyze
            from emotion.core.imageio import decode_image, encode_image

            data = source.read_bytes()
            result = analyze(data, classifier=record.get("classifier"))
            body = {"kind": "image", **result.model_dump()}
            bgr = decode_image(data, settings.max_pixels, settings.max_side)
            record["annotated_key"] = annotated_key(job_id, ".jpg")
            storage.put_bytes(RESULTS, record["annotated_key"], encode_image(annotate(bgr, result)), "image/jpeg")
        else:
            if not allow_large_video and size > settings.lambda_video_max_bytes:
                raise UploadTooLarge(f"videos over {settings.lambda_video_max_bytes:,} bytes are not processed "
                                     "here; create the job as a video so that it goes to the video worker")
            from emotion.core.video import VideoOptions, analyze_video_file

            out = Path(tmp) / "annotated.mp4"
            last = [0.0]

            def progress(fraction: float) -> None:
                if fraction - last[0] >= 0.05:
                    last[0] = fraction
                    record["progress"] = round(fraction, 3)
                    write_record(record, storage)

            fps = record.get("fps")
            video = analyze_video_file(source, fps=None if fps == "all" else float(fps or settings.video_fps),
                                       classifier=record.get("classifier"), annotate_path=out,
                                       on_progress=progress, options=VideoOptions(min_face=record.get("min_face")))
            body = {"kind": "video", **video.model_dump()}
            record["annotated_key"] = annotated_key(job_id, ".mp4")
            storage.upload(RESULTS, record["annotated_key"], out, "video/mp4")
        record["result_key"] = result_key(job_id)
        storage.put_bytes(RESULTS, record["result_key"], json.dumps(body).encode(), "application/json")
    record.update(status="succeeded", progress=1.0, error=None)
    write_record(record, storage)


def job_temp_dir() -> Path | None:
    """Where jobs unpack their input: under the data dir in local mode (cleared at start-up, so a killed
    process leaves nothing behind in TMPDIR), the system temp dir otherwise."""
    settings = get_settings()
    if settings.storage != "local":
        return None
    path = Path(settings.data_dir) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path
