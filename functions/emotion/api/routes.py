"""The analysis routes (``/v1/analyze``, ``/v1/annotate``, ``/v1/models``), ``/healthz`` and the web page.

The page and its static files are on ``page_router``: public unless ``settings.public_page`` is off (the app
then puts them behind the API key, as API Gateway does with infra's ``public_page``)."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from emotion import __version__
from emotion.api.auth import require_api_key
from emotion.api.inputs import read_image
from emotion.api.limits import engine_limiter
from emotion.api.openapi_docs import (
    _BINARY,
    ANALYSIS_EXAMPLE,
    ERROR_RESPONSES,
    IMAGE_ERROR_RESPONSES,
    IMAGE_REQUEST_BODY,
    example_response,
)
from emotion.api.schemas import CpuInfo, Health, Limits, ModelInfo, ModelsResponse
from emotion.core.annotate import annotate
from emotion.core.cpu import cpu_info
from emotion.core.engine import classifier_form, classifier_names, default_options, engines_loaded, get_engine
from emotion.core.imageio import decode_image, encode_image
from emotion.core.manifest import load_manifest
from emotion.core.results import AnalysisResult, EmotionLabel
from emotion.settings import get_settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
T = TypeVar("T")

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

ClassifierName = Enum("ClassifierName", {n: n for n in classifier_names()}, type=str)  # type: ignore[misc]

# Behind the API key (when one is set); the health check is public; the page is public unless switched off.
router = APIRouter(dependencies=[Depends(require_api_key)])
public_router = APIRouter()
page_router = APIRouter(include_in_schema=False)
_static_files = StaticFiles(directory=STATIC_DIR)


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
    """Run a CPU-bound engine call: inline under Lambda, in a bounded set of worker threads otherwise.

    Under Mangum an execution environment serves one request at a time, so a worker-thread hop buys nothing
    and costs two thread wake-ups (milliseconds on a busy host). Under uvicorn the hop keeps the event loop
    (health checks, static files, other requests' I/O) responsive while a photo is analysed.
    """
    if request.scope.get("aws.context") is not None:
        return fn(*args)
    return await engine_limiter.run(fn, *args)  # bounded: 429 + Retry-After when every slot and the queue are full


@router.post(
    "/v1/analyze",
    response_model=AnalysisResult,
    responses={**example_response(ANALYSIS_EXAMPLE, "Every face found: box, landmarks, pose, quality, emotions"),
               **IMAGE_ERROR_RESPONSES},
    openapi_extra=IMAGE_REQUEST_BODY,
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


@router.post(
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


@router.get(
    "/v1/models",
    response_model=ModelsResponse,
    responses=ERROR_RESPONSES,
    tags=["models"],
    summary="Models in use: versions, labels, licences",
)
def models() -> ModelsResponse:
    manifest = load_manifest()
    settings = get_settings()
    in_use = {manifest.default_detector, settings.classifier}
    infos = [
        ModelInfo(
            name=spec.name,
            version=spec.version,
            role=spec.role,
            licence=spec.licence,
            labels=cast(list[EmotionLabel], spec.labels),  # vocabulary names; ModelInfo validates them
            input=spec.input.model_dump(),
            urls=spec.urls,
            precision=spec.precision,
            form_of=spec.form_of,
            default=spec.name in in_use,
            available=(settings.model_dir / spec.file).is_file(),
        )
        for spec in manifest.models
    ]
    limits = Limits(max_body_bytes=settings.max_body_bytes, max_pixels=settings.max_pixels, max_side=settings.max_side)
    running = classifier_form(settings.classifier, settings.classifier_precision)
    return ModelsResponse(detector=manifest.default_detector, classifier=settings.classifier,
                          classifier_precision=running.precision, cpu=CpuInfo.model_validate(cpu_info()),
                          models=infos, limits=limits)


@public_router.get("/healthz", response_model=Health, tags=["health"], summary="Liveness (no API key needed)")
def healthz() -> Health:
    # Builds the default engine once: models missing or failing their checks raise ModelUnavailable, a 503
    used = get_engine(None).models_used()
    return Health(version=__version__, engine_loaded=engines_loaded() > 0, classifier=used.classifier,
                  classifier_precision=used.classifier_precision, cpu=CpuInfo.model_validate(cpu_info()))


@page_router.get("/")
def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=PAGE_HEADERS)


@page_router.get("/static/{path:path}")
async def static(path: str, request: Request) -> Response:
    """The page's scripts and styles (a route rather than a mount, so the page's dependencies apply)."""
    return await _static_files.get_response(path, request.scope)


def _prefers_png(accept: str) -> bool:
    types = [part.split(";", 1)[0].strip().lower() for part in accept.split(",")]
    return "image/png" in types and ("image/jpeg" not in types or types.index("image/png") < types.index("image/jpeg"))
