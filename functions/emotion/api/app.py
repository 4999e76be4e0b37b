"""The FastAPI app: the analysis routes, the jobs routes and the web page, behind one middleware stack.

The same app runs under ``emotion serve`` (uvicorn) and in Lambda (Mangum, ``emotion.api.lambda_handler``).

Contracts (see DESIGN.md): every error is ``{"error": {"code", "message"}}`` with its status; bad input is
always a 4xx. Request bodies are capped at ``max_body_bytes`` *before* they are read in full (the
``Content-Length`` header is checked first; streamed bodies are counted as they arrive; ``jobs_routes.body_limits``
overrides it for the local upload stand-in). Images are decoded in memory and never written to disk.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import numpy as np
from fastapi import Depends, FastAPI
from starlette.concurrency import run_in_threadpool

from emotion import __version__
from emotion.api import docs, jobs_routes, routes
from emotion.api.auth import require_api_key
from emotion.api.errors import install_error_handlers
from emotion.api.middleware import RequestGuard, body_limit_for
from emotion.api.openapi_docs import ERROR_RESPONSES
from emotion.core.engine import default_options, get_engine
from emotion.core.errors import EmotionError
from emotion.settings import get_settings

log = logging.getLogger("emotion.api")


def warm_up() -> None:
    """Build the default engine and run it once, so the first request is as fast as the rest."""
    try:
        engine = get_engine(None)
        engine.analyze_array(np.zeros((64, 64, 3), dtype=np.uint8), default_options())
    except EmotionError as exc:
        log.warning("engine not ready at start-up (%s); requests will answer %s", exc.message, exc.status)


def create_app() -> FastAPI:
    """A new app instance (tests build their own after changing settings)."""
    settings = get_settings()
    api_key = settings.api_key
    if api_key is not None and not api_key.strip():
        # An empty EMOTION_API_KEY used to switch auth off silently: refuse to start instead.
        raise RuntimeError("EMOTION_API_KEY is set but empty: set a key, or unset the variable to run without one")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(warm_up)
        async with AsyncExitStack() as stack:
            for hook in jobs_routes.lifespan_hooks:
                await stack.enter_async_context(hook())
            yield

    app = FastAPI(
        title="Facial emotion recognition",
        version=__version__,
        description=(
            "Detect faces in a photo and estimate each face's emotion (FER+ vocabulary). Errors are "
            '`{"error": {"code", "message"}}` with the matching status.'
        ),
        lifespan=lifespan,
        docs_url=None,  # /docs is served from the pinned Swagger UI package (emotion.api.docs), not a CDN
        redoc_url=None,
        openapi_url=None,  # served by emotion.api.docs with the page's dependencies
    )
    # The page, its static files, /docs and /openapi.json: public by default (the page asks for the key when the
    # API answers 401); behind the key like the API when the operator switches the public page off.
    page_dependencies = [] if settings.public_page else [Depends(require_api_key)]
    app.add_middleware(RequestGuard, limits=body_limit_for(jobs_routes.body_limits.items()))
    install_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(routes.public_router)
    app.include_router(routes.page_router, dependencies=page_dependencies)
    app.include_router(docs.router, dependencies=page_dependencies)
    app.include_router(jobs_routes.router, dependencies=routes.router.dependencies, responses=ERROR_RESPONSES)
    # The upload stand-in carries its own signed policy (no API key). Validation errors everywhere answer the
    # service's error JSON; document it instead of FastAPI's.
    app.include_router(jobs_routes.public_router, responses={422: ERROR_RESPONSES[422]})
    return app


app = create_app()
