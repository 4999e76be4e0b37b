"""/docs in a real Chromium with every request outside the server blocked: Swagger UI comes from the service."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import block_external

pytestmark = pytest.mark.browser

OPERATIONS = ["POST/v1/analyze", "POST/v1/annotate", "GET/v1/models", "POST/v1/jobs", "GET/v1/jobs/{job_id}",
              "GET/healthz"]


def _operations(page) -> list[str]:
    page.wait_for_selector(".opblock", timeout=30_000)
    return page.locator(".opblock-summary").evaluate_all(
        "els => els.map(e => e.querySelector('.opblock-summary-method').textContent + "
        "e.querySelector('.opblock-summary-path').getAttribute('data-path'))"
    )


def test_docs_render_offline_under_a_strict_csp(server: str, browser_context, artifacts_dir: Path) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 800})
    blocked = block_external(page, server)
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.on("pageerror", lambda error: console.append(str(error)))

    page.goto(server + "docs")
    assert sorted(_operations(page)) == sorted(OPERATIONS)
    assert "Facial emotion recognition" in page.locator(".info .title").inner_text()
    page.screenshot(path=str(artifacts_dir / "docs_offline.png"), full_page=False)

    # The analyze answer shows a real example with 4-decimal probabilities.
    page.locator("#operations-analysis-analyze_image_v1_analyze_post .opblock-summary").click()
    example = page.locator("#operations-analysis-analyze_image_v1_analyze_post .responses-wrapper")
    example.locator("text=0.9879").first.wait_for(timeout=10_000)
    assert "dominant_emotion" in example.inner_text()

    # "Try it out" on /healthz reaches the server (no absolute /openapi.json or CDN URL is involved).
    block = _try_healthz(page)
    assert '"status": "ok"' in block.locator(".live-responses-table .microlight").first.inner_text()

    assert not blocked, blocked
    violations = [m for m in console if "Content Security Policy" in m or "Refused" in m]
    assert not violations, violations
    page.close()


def test_docs_work_behind_a_stage_prefix(server: str, browser_context) -> None:
    """As behind API Gateway: the browser asks for /prod/..., the app sees the path without the stage."""
    page = browser_context.new_page()
    seen: list[str] = []

    def gateway(route) -> None:
        url = route.request.url
        if not url.startswith(server + "prod/"):
            route.abort()  # anything outside the stage (an absolute /openapi.json, a CDN) fails the test
            seen.append("outside " + url)
            return
        seen.append(url)
        route.fulfill(response=route.fetch(url=server + url[len(server + "prod/"):]))

    page.route("**/*", gateway)
    page.goto(server + "prod/docs")
    assert len(_operations(page)) == len(OPERATIONS)
    _try_healthz(page)
    assert not [u for u in seen if u.startswith("outside")], seen
    assert server + "prod/healthz" in seen and server + "prod/openapi.json" in seen
    page.close()


def _try_healthz(page):
    """Run "Try it out" on /healthz in Swagger UI; asserts a 200 and returns the operation's block."""
    block = page.locator("#operations-health-healthz_healthz_get")
    block.locator(".opblock-summary").click()
    block.locator("button.try-out__btn").click()
    block.locator("button.execute").click()
    status = block.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for(timeout=10_000)
    assert status.inner_text().strip() == "200"
    return block


def test_docs_page_and_assets_headers(server: str) -> None:
    page = httpx.get(server + "docs", timeout=10)
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    # Only relative URLs: nothing absolute, nothing on another host.
    assert not re.search(r'(src|href)="(/|https?:)', page.text), page.text
    for name in ("docs/swagger-ui-bundle.js", "docs/swagger-ui.css"):
        asset = httpx.get(server + name, timeout=10)
        assert asset.status_code == 200 and len(asset.content) > 100_000
    assert httpx.get(server + "docs/index.html", timeout=10).status_code == 404
    assert httpx.get(server + "redoc", timeout=10).status_code == 404  # dropped: one docs page, served offline
    spec = httpx.get(server + "openapi.json", timeout=10).json()
    labels = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
    face = spec["components"]["schemas"]["Face"]["properties"]
    assert face["dominant_emotion"]["enum"] == labels
    assert face["emotions"]["propertyNames"]["enum"] == labels
    assert json.dumps(spec).count('"example"') >= 8
