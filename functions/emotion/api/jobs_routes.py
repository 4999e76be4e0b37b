"""Jobs API: ``POST /v1/jobs``, ``GET /v1/jobs/{job_id}`` and, for the embedded mode, the local stand-ins for
S3's presigned POST (``POST /v1/uploads``, same form fields) and presigned GET (``GET /v1/files/...``).

The stand-ins carry their own HMAC signatures, so they are on ``public_router`` (no API key), and they
answer 404 when storage is S3.
"""

from __future__ import annotations

import os
import pathlib
import secrets
from collections.abc import Mapping
from typing import Annotated, Any, BinaryIO, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool

from emotion.api.openapi_docs import JOB_STATUS_EXAMPLE, NOT_FOUND_RESPONSE, example_response
from emotion.core.errors import BadParameter, EmotionError
from emotion.core.results import AnalysisResult
from emotion.core.video import VideoResult
from emotion.jobs import service
from emotion.jobs.worker import embedded_worker, worker
from emotion.settings import get_settings
from emotion.storage import get_storage
from emotion.storage.base import check_post_policy, policy_size_range
from emotion.storage.local import FILES_PATH, LOCAL_BUCKET, UPLOAD_PATH, LocalStorage


class NotFound(EmotionError):
    code = "not_found"
    status = 404


class Forbidden(EmotionError):
    code = "forbidden"
    status = 403


class JobRequest(BaseModel):
    filename: str = Field(min_length=1, max_length=255, examples=["clip.mp4"])
    content_type: str = Field(min_length=1, max_length=100, examples=["video/mp4"])
    size: int = Field(ge=1, description="bytes the client will upload", examples=[1_234_567])
    classifier: str | None = Field(None, max_length=64, description="emotion classifier (default: the server's)",
                                   examples=["mobilefacenet8"])
    fps: float | Literal["all"] | None = Field(None, description="video frames analysed per second, or 'all' "
                                               "(default: the server's video_fps)", examples=[5])
    min_face: int | None = Field(None, ge=0, le=10_000, description="videos: faces smaller than this many pixels "
                                 "(the box's smaller side) are not tracked (default: the server's min_face)",
                                 examples=[40])


class PresignedPost(BaseModel):
    url: str
    fields: dict[str, str]


class JobCreated(BaseModel):
    job_id: str
    upload: PresignedPost
    status_url: str
    expires_in: int = Field(description="seconds the upload form stays valid (at most 900)")


class JobError(BaseModel):
    code: str
    message: str


class ImageJobResult(AnalysisResult):
    model_config = ConfigDict(extra="allow")  # a stored result is shown whole, never trimmed to the schema
    kind: Literal["image"]


class VideoJobResult(VideoResult):
    model_config = ConfigDict(extra="allow")
    kind: Literal["video"]


class CollectionJobResult(BaseModel):
    """``summary.json`` of a collection (an archive of many photos)."""

    model_config = ConfigDict(extra="allow")
    kind: Literal["collection"]
    images: int = Field(description="files analysed or failed (folders and macOS metadata files are skipped)")
    analysed: int
    faces: int
    images_without_face: int
    failed: int
    failures_by_code: dict[str, int]
    failures: list[dict[str, str]] = Field(description="each failed image and its error code")
    dominant_emotions: dict[str, int] = Field(description="faces per dominant emotion")
    mean_probabilities: dict[str, float] = Field(description="mean probability of each emotion over every face")
    skipped: int = 0


JobResult = Annotated[ImageJobResult | VideoJobResult | CollectionJobResult, Field(discriminator="kind")]


class CollectionProgress(BaseModel):
    total: int | None = Field(None, description="images in the archive (once it has been checked)")
    done: int = Field(description="images analysed or failed so far")
    failed: int = Field(description="images that failed so far (each is a row with its error code)")
    chunks: int | None = None
    chunks_done: int = 0


class CollectionFiles(BaseModel):
    """Presigned GETs of a finished collection's three files."""

    results_jsonl: str
    faces_csv: str
    summary_json: str


class JobStatus(BaseModel):
    job_id: str
    status: service.Status
    progress: float = Field(ge=0, le=1)
    created_at: str
    updated_at: str
    kind: str | None = None
    filename: str | None = None
    result: JobResult | None = Field(None, description="the analysis (image) or video result when small")
    result_url: str | None = Field(None, description="presigned GET of result.json when too large to inline")
    annotated_url: str | None = None
    collection: CollectionProgress | None = Field(None, description="collections: images done / total, failures")
    files: CollectionFiles | None = Field(None, description="collections: results.jsonl, faces.csv, summary.json")
    error: JobError | None = None


router = APIRouter(tags=["jobs"])
public_router = APIRouter(tags=["jobs"], include_in_schema=False)
lifespan_hooks = [embedded_worker]
body_limits: dict[str, int] = {UPLOAD_PATH: get_settings().max_upload_bytes + 64_000}

JOB_ID_PATH = Path(description="32 lowercase hex characters")


def _absolute(request: Request, url: str) -> str:
    return public_base_url(request.scope) + url if url.startswith("/") else url


def public_base_url(scope: Mapping[str, Any]) -> str:
    """The service's own base URL, never from the client's Host header: ``public_base_url`` when set, else
    API Gateway's own domain and stage from the event, else the address the local server's socket is bound to."""
    configured = get_settings().public_base_url.rstrip("/")
    if configured:
        return configured
    event = scope.get("aws.event")
    if isinstance(event, dict) and isinstance(context := event.get("requestContext"), dict) \
            and isinstance(domain := context.get("domainName"), str) and domain:
        stage = context.get("stage")
        # execute-api URLs carry the stage; HTTP APIs' $default stage and custom domains do not.
        prefix = f"/{stage}" if isinstance(stage, str) and stage not in ("", "$default") \
            and ".execute-api." in domain else ""
        return f"https://{domain}{prefix}"
    host, port = scope.get("server") or ("127.0.0.1", 80)
    scheme = scope.get("scheme", "http")
    shown = f"[{host}]" if ":" in str(host) else str(host)
    default = (scheme == "http" and port == 80) or (scheme == "https" and port == 443)
    return f"{scheme}://{shown}" + ("" if default or port is None else f":{port}")


@router.post("/v1/jobs", status_code=201, response_model=JobCreated, summary="Create a job and get an upload form")
async def create_job(body: JobRequest, request: Request) -> JobCreated:
    created = await run_in_threadpool(service.create_job, body.filename, body.content_type, body.size,
                                      classifier=body.classifier, fps=body.fps, min_face=body.min_face)
    created["upload"]["url"] = _absolute(request, created["upload"]["url"])
    created["status_url"] = _absolute(request, f"/v1/jobs/{created['job_id']}")
    return JobCreated(**created)


@router.get("/v1/jobs/{job_id}", response_model=JobStatus,
            responses={**example_response(JOB_STATUS_EXAMPLE, "The job; its result inline once it has succeeded"),
                       **NOT_FOUND_RESPONSE},
            summary="A job's status and result")
async def get_job(request: Request, job_id: str = JOB_ID_PATH) -> JobStatus:
    view = await run_in_threadpool(service.get_job, job_id)
    for name in ("result_url", "annotated_url"):
        if view.get(name):
            view[name] = _absolute(request, view[name])
    if view.get("files"):
        view["files"] = {name: _absolute(request, url) for name, url in view["files"].items()}
    return JobStatus(**view)


def _local() -> LocalStorage:
    storage = get_storage()
    if not isinstance(storage, LocalStorage):
        raise NotFound("this endpoint exists only in the embedded (local storage) mode")
    return storage


@public_router.post(UPLOAD_PATH, status_code=204, response_class=Response)
async def local_upload(request: Request) -> Response:
    """Stand-in for S3's presigned POST: the same multipart fields and policy checks, then the key is queued
    for the in-process worker as an S3 event would be.

    The body is parsed as it streams in: the policy, signature, key and job are checked from the fields that
    come before the file part, so a forged or replayed upload is refused (403) before a byte of it is stored,
    and the file is cut off (403) as soon as it passes the policy's size.
    """
    storage = _local()
    parser = _UploadParser(storage, request.headers.get("content-type", ""))
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if parser.finished:
                break  # fields after the file part are ignored, as S3 does
        key = parser.finish()
    finally:
        parser.discard()
    worker.submit(key)
    return Response(status_code=204)


class _UploadParser:
    """Streaming multipart/form-data for the upload stand-in (python-multipart's callback parser)."""

    MAX_FIELDS_BYTES = 64_000

    def __init__(self, storage: LocalStorage, content_type: str):
        mime, options = parse_options_header(content_type)
        boundary = options.get(b"boundary")
        if mime != b"multipart/form-data" or not boundary:
            raise BadParameter("the upload must be multipart/form-data with S3's form fields and a 'file' part")
        self.storage = storage
        self.fields: dict[str, str] = {}
        self.field_bytes = 0
        self.finished = False
        self.key = ""
        self.size = 0
        self.size_range = (1, 0)
        self.tmp: pathlib.Path | None = None
        self._out: BinaryIO | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._name = ""
        self._value = bytearray()
        self._in_file = False
        callbacks: Any = {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }
        self.parser = MultipartParser(boundary, callbacks)

    def write(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise BadParameter("malformed multipart upload body") from exc

    def finish(self) -> str:
        if not self.finished or self.tmp is None:
            raise BadParameter("the form needs a 'file' part after the policy fields")
        low, high = self.size_range
        if not low <= self.size <= high:
            raise Forbidden(f"upload refused by the policy: size {self.size} outside {low}..{high} bytes")
        target = self.storage.path("inputs", self.key)
        try:
            os.link(self.tmp, target)  # exclusive: a second upload of the same job never overwrites the first
        except FileExistsError as exc:
            raise Forbidden("this job already has its upload") from exc
        return self.key

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)

    # -- callbacks ------------------------------------------------------------------------------------------

    def _part_begin(self) -> None:
        self._headers, self._name, self._value = {}, "", bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._headers[self._header_name.lower()] = self._headers.get(self._header_name.lower(), b"") + data[start:end]

    def _header_end(self) -> None:
        self._header_name = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            self._start_file()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.finished:
            return
        if self._in_file:
            assert self._out is not None
            self.size += end - start
            if self.size > self.size_range[1]:
                raise Forbidden(f"upload refused by the policy: more than {self.size_range[1]} bytes")
            self._out.write(data[start:end])
            return
        self.field_bytes += end - start
        if self.field_bytes > self.MAX_FIELDS_BYTES or len(self.fields) >= 20:
            raise BadParameter("too many or too large form fields before the file part")
        self._value += data[start:end]

    def _part_end(self) -> None:
        if self._in_file:
            self._in_file = False
            self.finished = True
            if self._out is not None:
                self._out.close()
                self._out = None
        elif self._name and not self.finished:
            self.fields[self._name] = self._value.decode("utf-8", "replace")

    def _start_file(self) -> None:
        """Everything but the size is checked here, from the fields that came before the file."""
        fields = self.fields
        policy = fields.get("policy", "")
        if not self.storage.verify(policy, fields.get("x-amz-signature", "")):
            raise Forbidden("the upload policy signature does not match")
        key = fields.get("key", "")
        job_id = service.parse_upload_key(key)
        if job_id is None:
            raise Forbidden("key is not an upload key")
        size_range = policy_size_range(policy)
        if size_range is None:
            raise Forbidden("upload refused by the policy: no content-length-range")
        reason = check_post_policy(policy, fields, size_range[0], LOCAL_BUCKET)
        if reason is not None:
            raise Forbidden(f"upload refused by the policy: {reason}")
        record = service.read_record(job_id, self.storage)
        target = self.storage.path("inputs", key)
        if record is None or record.get("input_key") != key or record.get("status") != "pending" \
                or target.exists():
            raise Forbidden("this job is not waiting for an upload (already uploaded, finished or unknown)")
        target.parent.mkdir(parents=True, exist_ok=True)
        self.key, self.size_range = key, size_range
        self.tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        self._out = self.tmp.open("wb")
        self._in_file = True


@public_router.get(FILES_PATH + "/{role}/{key:path}")
def local_file(role: str, key: str, expires: int = Query(...), signature: str = Query(...)) -> FileResponse:
    """Stand-in for a presigned S3 GET of a result or annotated file."""
    storage = _local()
    if role not in ("inputs", "results") or not storage.check_get(role, key, expires, signature):
        raise Forbidden("the link is invalid or has expired")
    path = storage.path(role, key)  # type: ignore[arg-type]
    if not path.is_file():
        raise NotFound("no such file")
    media = {".json": "application/json", ".mp4": "video/mp4", ".jpg": "image/jpeg", ".csv": "text/csv",
             ".jsonl": "application/x-ndjson"}.get(path.suffix, "application/octet-stream")
    return FileResponse(path, media_type=media, filename=path.name)
