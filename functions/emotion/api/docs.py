"""``/docs`` and ``/openapi.json``: Swagger UI from files the service ships (the pinned ``swagger-ui-bundle-v2``
package), not a CDN.

Every URL in the page is relative, so the docs work behind an API Gateway stage prefix (``/prod/docs``), and
the page's script (``static/docs.js``) points the "Try it out" requests at the same prefix.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from swagger_ui_bundle import swagger_ui_path

SWAGGER_UI_DIR = Path(str(swagger_ui_path))
# The files of the Swagger UI dist the page loads; nothing else of the package is served.
ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css"}

# As strict as the photo page: only this origin's scripts and styles; data: images are Swagger UI's icons.
DOCS_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
        "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Facial emotion recognition - API documentation</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="docs/swagger-ui.css">
  <script src="docs/swagger-ui-bundle.js" defer></script>
  <script src="static/docs.js" defer></script>
</head>
<body>
  <noscript>The API documentation needs JavaScript; the raw description is at <a href="openapi.json">openapi.json</a>.
  </noscript>
  <div id="swagger-ui" data-spec="openapi.json"></div>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def docs_page() -> HTMLResponse:
    return HTMLResponse(_PAGE, headers={**DOCS_HEADERS, "cache-control": "no-cache"})


@router.get("/docs/{name}")
def docs_asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404)
    # The files change only with the pinned package version: let browsers keep them for a day.
    return FileResponse(SWAGGER_UI_DIR / name, media_type=ASSETS[name],
                        headers={**DOCS_HEADERS, "cache-control": "public, max-age=86400"})


@router.get("/openapi.json")
def openapi(request: Request) -> JSONResponse:
    """The OpenAPI description (served here rather than by FastAPI, so the page's dependencies apply to it)."""
    return JSONResponse(request.app.openapi())
