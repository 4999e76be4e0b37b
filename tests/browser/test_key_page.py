"""The page on a server that needs an API key (as behind API Gateway), in a real Chromium against `emotion serve`
with EMOTION_API_KEY set: the page, its static files and /docs load without a key; the page asks for the key as
soon as the API answers 401, says how to get one, refuses a wrong key, keeps the right one for this tab only
(sessionStorage) and then works; a photo sent before the key was entered is analysed once it is."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import block_external, serve_fresh

pytestmark = pytest.mark.browser

KEY = "browser-test-key-7f3a"


@pytest.fixture(scope="module")
def keyed_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from serve_fresh(tmp_path_factory.mktemp("emotion-data-key"), EMOTION_API_KEY=KEY)


def test_page_docs_and_static_need_no_key_but_the_api_does(keyed_server: str) -> None:
    for path in ("", "static/app.js", "static/style.css", "docs", "docs/swagger-ui.css", "openapi.json", "healthz"):
        assert httpx.get(keyed_server + path, timeout=10).status_code == 200, path
    r = httpx.get(keyed_server + "v1/models", timeout=10)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert httpx.get(keyed_server + "v1/models", headers={"x-api-key": KEY}, timeout=10).status_code == 200


def test_page_asks_for_the_key_keeps_it_for_the_tab_and_works(
    keyed_server: str, browser_context, scenes: Path, artifacts_dir: Path
) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    blocked = block_external(page, keyed_server)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    sent_keys: list[str | None] = []
    page.on("request", lambda r: sent_keys.append(r.headers.get("x-api-key")) if "/v1/" in r.url else None)

    # On load the page's v1/models call answers 401: the key form opens, with how to get a key.
    page.goto(keyed_server)
    panel = page.locator("#key-panel")
    panel.wait_for(state="visible", timeout=30_000)
    text = panel.inner_text()
    assert "needs an API key" in text and "this browser tab only" in text
    assert "get-api-key" in text and "EMOTION_API_KEY" in text
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.screenshot(path=str(artifacts_dir / "key_asked.png"), full_page=False)

    # A photo chosen before a key was given: the error says why, and the photo waits for the key.
    with page.expect_response(lambda r: "/v1/analyze" in r.url) as first:
        page.set_input_files("#file-input", str(scenes / "fr_two_people.jpg"))
    assert first.value.status == 401
    page.locator("#error").wait_for(state="visible")
    assert "needs an API key" in page.locator("#error").inner_text()
    assert page.locator("#result").is_hidden()

    # A wrong key is refused, dropped, and asked for again.
    page.fill("#api-key", "not-the-key")
    with page.expect_response(lambda r: "/v1/models" in r.url) as wrong:
        page.click("#key-form button[type=submit]")
    assert wrong.value.status == 401
    panel.wait_for(state="visible")
    assert "not accepted" in page.locator("#key-reason").inner_text()
    assert page.evaluate("sessionStorage.getItem('emotion-api-key')") is None
    assert page.locator("#result").is_hidden()

    # The right key: the form closes, the classifier lists fill, and the waiting photo is analysed.
    page.fill("#api-key", KEY)
    with page.expect_response(lambda r: "/v1/analyze" in r.url and r.status == 200, timeout=60_000) as done:
        page.click("#key-form button[type=submit]")
    assert len(done.value.json()["faces"]) == 2
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert panel.is_hidden() and page.locator("#error").is_hidden()
    assert page.locator("#faces .face-card").count() == 2
    page.wait_for_selector("#classifier option[value='mobilefacenet']", state="attached")
    page.wait_for_selector("#video-classifier option[value='mobilefacenet']", state="attached")
    for select in ("#classifier", "#video-classifier"):  # an fp32 form is chosen by precision, not offered
        offered = page.eval_on_selector_all(f"{select} option", "els => els.map(e => e.value)")
        assert "mobilefacenet8" in offered and not [v for v in offered if v.endswith("_fp32")], offered
    assert page.locator("#key-set").get_attribute("hidden") is None  # "An API key is set for this tab" in Options
    page.screenshot(path=str(artifacts_dir / "key_working.png"), full_page=False)

    # Kept for this tab only: sessionStorage, never localStorage or a cookie; a reload keeps it.
    assert page.evaluate("sessionStorage.getItem('emotion-api-key')") == KEY
    assert page.evaluate("localStorage.length") == 0
    assert browser_context.cookies() == []
    assert sent_keys[-1] == KEY
    page.reload()
    page.wait_for_selector("#classifier option[value='mobilefacenet']", state="attached", timeout=30_000)
    assert panel.is_hidden()

    # Another tab has its own session: it asks again.
    other = browser_context.new_page()
    other.goto(keyed_server)
    other.locator("#key-panel").wait_for(state="visible", timeout=30_000)
    other.close()

    # "Forget the key" removes it; the next call asks again.
    page.click("#options summary")
    assert page.locator("#key-set").is_visible()
    page.click("#key-forget")
    assert page.evaluate("sessionStorage.getItem('emotion-api-key')") is None
    with page.expect_response(lambda r: "/v1/analyze" in r.url) as again:
        page.set_input_files("#file-input", str(scenes / "fr_two_people.jpg"))
    assert again.value.status == 401
    panel.wait_for(state="visible")

    assert not blocked and not errors, (blocked, errors)
    page.close()
