"""The FastAPI app: ``/v1/analyze``, ``/v1/annotate``, ``/v1/models``, ``/healthz`` and the web page at ``/``.

The same app runs under ``emotion serve`` (uvicorn) and in Lambda (Mangum, ``emotion.api.lambda_handler``).

Contracts (see DESIGN.md): every error is ``{"error": {"code", "message"}}`` with its status; bad input is
always a 4xx. Request bodies are capped at ``max_body_bytes`` *before* they are read in full (the
``Content-Length`` header is checked first; streamed bodies are counted as they arrive). Images are decoded
in memory and never written to disk (multipart uploads are spooled in memory, not to temporary files).

Extension points used by the jobs adapter (``emotion.api.jobs_routes``, optional):

- ``router``: an ``APIRouter`` included behind the API-key dependency;
- ``public_router`` (optional): included without the API-key dependency (e.g. the local stand-in for S3's
  presigned POST, which carries its own signed policy);
- ``lifespan_hooks`` (optional): async context managers, or callables returning one (called with the app
  when they take an argument), entered in the app's lifespan (e.g. the embedded worker);
- ``body_limits`` (optional): ``{path_prefix: max_bytes}`` overriding ``max_body_bytes`` for those paths
  (e.g. large video uploads to the local upload endpoint).
"""

from __future__ import annotations

import hmac
import importlib
import importlib.util
import inspect
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
from fastapi import Depends, FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from emotion import __version__
from emotion.core.annotate import annotate
from emotion.core.engine import classifier_names, default_options, engines_loaded, get_engine
from emotion.core.errors import BadParameter, EmotionError, ImageTooLarge, UnsupportedMediaType
from emotion.core.imageio import decode_image, encode_image
from emotion.core.results import AnalysisResult, ErrorResponse
from emotion.settings import get_settings
from model.manifest import load_manifest

log = logging.getLogger("emotion.api")

STATIC_DIR = Path(__file__).resolve().parent / "static"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
T = TypeVar("T")


# --------------------------------------------------------------------------------------------- errors
class Unauthorized(EmotionError):
    code = "unauthorized"
    status = 401


class BadRequest(EmotionError):
    code = "bad_request"
    status = 400


class BodyTooLarge(ImageTooLarge):
    """The request body exceeds ``max_body_bytes`` (checked before the body is read in full)."""


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    413: "image_too_large",
    415: "unsupported_media_type",
    422: "bad_parameter",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = ErrorResponse.model_validate({"error": {"code": code, "message": message}})
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": ErrorResponse, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error_doc("Missing or wrong `x-api-key` (only when the server sets EMOTION_API_KEY)"),
    422: _error_doc("A query parameter or form field is invalid"),
}
IMAGE_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error_doc("Empty body, malformed multipart, corrupt/truncated image, or image too small"),
    **ERROR_RESPONSES,
    413: _error_doc("Body over the size limit, or declared image dimensions over the pixel limit"),
    415: _error_doc("Not an image format the service reads (checked by content, not by name)"),
    503: _error_doc("Models are missing or fail verification on the server"),
}

_BINARY = {"type": "string", "format": "binary"}
IMAGE_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "The image: multipart field `image`, or the raw bytes with an `image/*` (or "
            "`application/octet-stream`) content type. The format is sniffed from the bytes: JPEG, PNG, "
            "WebP, GIF, BMP or TIFF."
        ),
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {**_BINARY, "description": "the image file"}},
                }
            },
            "image/jpeg": {"schema": _BINARY},
            "image/png": {"schema": _BINARY},
            "image/webp": {"schema": _BINARY},
            "application/octet-stream": {"schema": _BINARY},
        },
    }
}


# ------------------------------------------------------------------------------------- response models
class ModelInfo(BaseModel):
    name: str
    version: str
    role: Literal["detector", "classifier"]
    licence: str
    labels: list[str] = Field(description="output labels (FER+ vocabulary) of a classifier; empty for a detector")
    input: dict[str, Any] = Field(description="input tensor: name, shape, dtype, layout, colour order")
    urls: list[str]
    default: bool = Field(description="used when a request names no classifier")
    available: bool = Field(description="the model file is present in the server's model directory")


class ModelsResponse(BaseModel):
    detector: str = Field(description="name of the detector in use")
    classifier: str = Field(description="name of the default classifier")
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str
    engine_loaded: bool = Field(description="the default engine has been built in this process")


# ------------------------------------------------------------------------------------------ middleware
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestGuard:
    """Pure ASGI middleware: body-size limit, request id, one access-log line per request (no bodies)."""

    def __init__(self, app: ASGIApp, limits: Callable[[str], int]):
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        limit = self.limits(scope.get("path", ""))
        try:
            declared = _content_length(scope)
            if declared is not None and declared > limit:
                raise BodyTooLarge(f"request body is {declared:,} bytes; the limit is {limit:,} bytes")
            received = 0

            async def receive_limited() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(f"request body exceeds the limit of {limit:,} bytes")
                return message

            await self.app(scope, receive_limited, send_wrapper)
        except BodyTooLarge as exc:
            if started:
                raise
            response = error_response(exc.status, exc.code, exc.message, headers={"connection": "close"})
            await response(scope, receive, send_wrapper)
        finally:
            log.info(
                "%s %s %s %.1fms",
                scope.get("method"),
                scope.get("path"),
                status,
                (time.perf_counter() - start) * 1000,
                extra={"request_id": request_id, "status": status},
            )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _request_id(scope: Scope) -> str:
    context = scope.get("aws.context")
    aws_id = getattr(context, "aws_request_id", None)
    if isinstance(aws_id, str) and aws_id:
        return aws_id
    for key, value in scope.get("headers", []):
        if key == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
    return uuid.uuid4().hex


# ----------------------------------------------------------------------------------------------- auth
api_key_header = APIKeyHeader(
    name="x-api-key",
    auto_error=False,
    description="Required only when the server sets EMOTION_API_KEY (behind API Gateway, the gateway checks it).",
)


async def require_api_key(key: str | None = Security(api_key_header)) -> None:
    """When ``settings.api_key`` is set, the request must carry it in ``x-api-key`` (constant-time compare).

    ``async`` so FastAPI runs it inline rather than in a worker thread (it only compares two strings)."""
    expected = get_settings().api_key
    if not expected:
        return
    if key is None or not hmac.compare_digest(key.encode("utf-8"), expected.encode("utf-8")):
        raise Unauthorized("missing or wrong x-api-key header")


# ----------------------------------------------------------------------------------------- body input
class _InMemoryMultiPartParser(MultiPartParser):
    # Bodies are capped by RequestGuard, so file parts can stay in memory: images never touch the disk.
    spool_max_size = 1 << 40


async def read_image(request: Request) -> bytes:
    """The image bytes from a multipart field ``image`` or from a raw ``image/*`` body."""
    content_type = request.headers.get("content-type", "")
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime == "multipart/form-data":
        parser = _InMemoryMultiPartParser(request.headers, request.stream(), max_files=4, max_fields=16)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise BadRequest(f"malformed multipart body: {exc.message}") from exc
        try:
            field = form.get("image")
            if field is None:
                raise _missing_image()
            if isinstance(field, UploadFile):
                return await field.read()
            return field.encode("utf-8")
        finally:
            await form.close()
    if mime in ("", "application/octet-stream") or mime.startswith("image/"):
        return await request.body()
    raise UnsupportedMediaType(
        f"content type {mime!r} is not accepted: send the image as multipart field 'image' or as the raw body "
        "with an image/* content type"
    )


def _missing_image() -> EmotionError:
    return BadParameter("the multipart body has no field 'image': send the photo as form field 'image'")


# -------------------------------------------------------------------------------------------- the app
ClassifierName = Enum("ClassifierName", {n: n for n in classifier_names()}, type=str)  # type: ignore[misc]


def _classifier(value: Enum | None) -> str | None:
    return None if value is None else str(value.value)


def _analyze(data: bytes, classifier: str | None, min_face: int | None, max_faces: int | None) -> AnalysisResult:
    settings = get_settings()
    engine = get_engine(classifier)
    options = default_options(min_face, max_faces)
    return engine.analyze_bytes(data, options, settings.max_pixels, settings.max_side)


def _annotate(
    data: bytes, classifier: str | None, min_face: int | None, max_faces: int | None, fmt: str
) -> tuple[bytes, int]:
    settings = get_settings()
    engine = get_engine(classifier)
    options = default_options(min_face, max_faces)
    bgr = decode_image(data, max_pixels=settings.max_pixels, max_side=settings.max_side)
    result = engine.analyze_array(bgr, options)
    return encode_image(annotate(bgr, result), fmt), len(result.faces)


async def run_engine(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """Run a CPU-bound engine call: inline under Lambda, in the threadpool otherwise.

    Under Mangum an execution environment serves one request at a time, so a worker-thread hop buys nothing
    and costs two thread wake-ups (milliseconds on a busy host). Under uvicorn the hop keeps the event loop
    (health checks, static files, other requests' I/O) responsive while a photo is analysed.
    """
    if request.scope.get("aws.context") is not None:
        return fn(*args)
    return await run_in_threadpool(fn, *args)


def warm_up() -> None:
    """Build the default engine and run it once, so the first request is as fast as the rest."""
    try:
        engine = get_engine(None)
        engine.analyze_array(np.zeros((64, 64, 3), dtype=np.uint8), default_options())
    except EmotionError as exc:
        log.warning("engine not ready at start-up (%s); requests will answer %s", exc.message, exc.status)


def _as_context_manager(hook: Any, app: FastAPI) -> AbstractAsyncContextManager[Any]:
    if hasattr(hook, "__aenter__"):
        return hook
    if callable(hook):
        takes_app = bool(inspect.signature(hook).parameters)
        return hook(app) if takes_app else hook()
    raise TypeError(f"lifespan hook {hook!r} is neither an async context manager nor a factory of one")


def _jobs_module() -> Any | None:
    """``emotion.api.jobs_routes`` when it exists and imports (the jobs adapter is optional)."""
    if importlib.util.find_spec("emotion.api.jobs_routes") is None:
        return None
    try:
        return importlib.import_module("emotion.api.jobs_routes")
    except ImportError:
        log.exception("emotion.api.jobs_routes does not import; the jobs API is disabled")
        return None


def _body_limit_for(prefixes: Iterable[tuple[str, int]]) -> Callable[[str], int]:
    overrides = sorted(prefixes, key=lambda kv: -len(kv[0]))

    def limit(path: str) -> int:
        for prefix, max_bytes in overrides:
            if path.startswith(prefix):
                return max_bytes
        return get_settings().max_body_bytes

    return limit


def create_app() -> FastAPI:
    """A new app instance (tests build their own after changing settings)."""
    jobs = _jobs_module()
    hooks = list(getattr(jobs, "lifespan_hooks", []) or [])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        await run_in_threadpool(warm_up)
        async with AsyncExitStack() as stack:
            for hook in hooks:
                await stack.enter_async_context(_as_context_manager(hook, app))
            yield

    app = FastAPI(
        title="Facial emotion recognition",
        version=__version__,
        description=(
            "Detect faces in a photo and estimate each face's emotion (FER+ vocabulary). Errors are "
            '`{"error": {"code", "message"}}` with the matching status.'
        ),
        lifespan=lifespan,
    )
    app.add_middleware(RequestGuard, limits=_body_limit_for(dict(getattr(jobs, "body_limits", {}) or {}).items()))
    _install_error_handlers(app)

    protected = [Depends(require_api_key)]

    @app.post(
        "/v1/analyze",
        response_model=AnalysisResult,
        responses=IMAGE_ERROR_RESPONSES,
        openapi_extra=IMAGE_REQUEST_BODY,
        dependencies=protected,
        tags=["analysis"],
        summary="Faces and emotions in one image (JSON)",
    )
    async def analyze_image(
        request: Request,
        min_face: int | None = Query(None, ge=0, le=20_000, description="drop faces smaller than this (px)"),
        max_faces: int | None = Query(None, ge=1, le=1000, description="keep at most this many faces"),
        classifier: ClassifierName | None = Query(None, description="emotion classifier (default: server's)"),
    ) -> Response:
        data = await read_image(request)
        result = await run_engine(request, _analyze, data, _classifier(classifier), min_face, max_faces)
        return Response(result.model_dump_json(), media_type="application/json")

    @app.post(
        "/v1/annotate",
        response_class=Response,
        responses={
            200: {
                "description": "The image with each face boxed and labelled (JPEG, or PNG when asked)",
                "content": {"image/jpeg": {"schema": _BINARY}, "image/png": {"schema": _BINARY}},
            },
            **IMAGE_ERROR_RESPONSES,
        },
        openapi_extra=IMAGE_REQUEST_BODY,
        dependencies=protected,
        tags=["analysis"],
        summary="The image with faces boxed and labelled",
    )
    async def annotate_image(
        request: Request,
        min_face: int | None = Query(None, ge=0, le=20_000, description="drop faces smaller than this (px)"),
        max_faces: int | None = Query(None, ge=1, le=1000, description="keep at most this many faces"),
        classifier: ClassifierName | None = Query(None, description="emotion classifier (default: server's)"),
        format: Literal["jpeg", "png"] | None = Query(
            None, description="output format; default JPEG, or PNG when the Accept header asks for image/png"
        ),
    ) -> Response:
        data = await read_image(request)
        fmt = format or ("png" if _prefers_png(request.headers.get("accept", "")) else "jpeg")
        body, faces = await run_engine(request, _annotate, data, _classifier(classifier), min_face, max_faces, fmt)
        return Response(body, media_type=f"image/{fmt}", headers={"x-faces": str(faces)})

    @app.get(
        "/v1/models",
        response_model=ModelsResponse,
        responses=ERROR_RESPONSES,
        dependencies=protected,
        tags=["models"],
        summary="Models in use: versions, labels, licences",
    )
    def models() -> ModelsResponse:
        return _models_response()

    @app.get("/healthz", response_model=Health, tags=["health"], summary="Liveness (no API key needed)")
    def healthz() -> Health:
        return Health(version=__version__, engine_loaded=engines_loaded() > 0)

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    if jobs is not None:
        router = getattr(jobs, "router", None)
        if router is not None:
            app.include_router(router, dependencies=protected, responses=ERROR_RESPONSES)
        public = getattr(jobs, "public_router", None)
        if public is not None:
            # Validation errors everywhere answer the service's error JSON; document it instead of FastAPI's.
            app.include_router(public, responses={422: ERROR_RESPONSES[422]})
    return app


# The page loads nothing from elsewhere; uploads/results may use presigned https URLs (S3) in AWS mode.
PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' blob: data: https:; media-src 'self' blob: https:; "
        "connect-src 'self' https:; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'self'; form-action 'self' https:; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def _prefers_png(accept: str) -> bool:
    types = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    return "image/png" in types and ("image/jpeg" not in types or types.index("image/png") < types.index("image/jpeg"))


def _models_response() -> ModelsResponse:
    manifest = load_manifest()
    settings = get_settings()
    in_use = {manifest.default_detector, settings.classifier}
    infos = []
    for spec in manifest.models:
        infos.append(
            ModelInfo(
                name=spec.name,
                version=spec.version,
                role=spec.role,
                licence=spec.licence,
                labels=spec.labels,
                input=spec.input.model_dump(),
                urls=spec.urls,
                default=spec.name in in_use,
                available=(settings.model_dir / spec.file).is_file(),
            )
        )
    return ModelsResponse(detector=manifest.default_detector, classifier=settings.classifier, models=infos)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmotionError)
    async def emotion_error(request: Request, exc: EmotionError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        return error_response(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "bad_parameter", _validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        if exc.status_code == 404:
            message = f"no such path: {request.url.path}"
        elif exc.status_code == 405:
            message = f"method {request.method} is not allowed on {request.url.path}"
        return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")


def _validation_message(errors: Iterable[Any]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",)) or "request"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)[:1000] or "invalid request"


app = create_app()
