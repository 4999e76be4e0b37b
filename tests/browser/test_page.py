"""The web page in a real Chromium (Playwright) against `emotion serve` on a free loopback port (fixtures in
conftest.py)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def test_upload_two_people_then_a_text_file(
    server: str, browser_context, scenes: Path, artifacts_dir: Path, tmp_path: Path
) -> None:
    page = browser_context.new_page()
    requests: list[str] = []
    page_errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: page_errors.append(str(error)))

    page.goto(server)
    assert page.title() == "Facial emotion recognition"
    assert page.locator("section#video-jobs").count() == 1

    # A photo of two people: two faces listed, each with a dominant emotion and bars; two boxes drawn.
    page.set_input_files("#file-input", str(scenes / "fr_two_people.jpg"))
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    cards = page.locator("#faces > li")
    assert cards.count() == 2
    for i in range(2):
        card = cards.nth(i)
        heading = card.locator("h3").inner_text()
        assert re.match(rf"Face {i + 1}: ({'|'.join(EMOTIONS)}) \d+%", heading), heading
        assert card.locator(".bar").count() >= 7  # one bar per emotion of the classifier
        widths = card.locator(".bar i").evaluate_all("els => els.map(e => e.getBoundingClientRect().width)")
        assert max(widths) > 0
    assert "2 faces found" in page.locator("#summary").inner_text()

    photo = page.locator("#photo")
    photo_box = photo.bounding_box()
    assert photo.evaluate("img => img.complete && img.naturalWidth") > 0
    boxes = page.locator("#overlay .face-box")
    assert boxes.count() == 2
    for i in range(2):
        box = boxes.nth(i).bounding_box()
        assert box is not None and photo_box is not None
        assert box["width"] > 10 and box["height"] > 10
        assert photo_box["x"] <= box["x"] and box["x"] + box["width"] <= photo_box["x"] + photo_box["width"] + 1
        assert photo_box["y"] <= box["y"] and box["y"] + box["height"] <= photo_box["y"] + photo_box["height"] + 1
        assert re.match(rf"{i + 1} ({'|'.join(EMOTIONS)})", boxes.nth(i).inner_text())
    assert page.locator("#error").is_hidden()
    page.screenshot(path=str(artifacts_dir / "browser_two_people.png"), full_page=True)

    # On a phone-sized screen the page fits without sideways scrolling.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.screenshot(path=str(artifacts_dir / "browser_two_people_phone.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # A text file: an error message in words, and no stale result.
    text_file = tmp_path / "notes.txt"
    text_file.write_text("These are my notes, not a photo.\n")
    page.set_input_files("#file-input", str(text_file))
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    message = error.inner_text()
    assert "not a photo" in message and "JPEG" in message, message
    assert page.locator("#result").is_hidden()
    page.screenshot(path=str(artifacts_dir / "browser_text_file_error.png"), full_page=True)

    # Nothing external loads: every request went to the server (or stayed in the page as blob:/data:).
    external = [u for u in requests if not (u.startswith(server) or u.startswith(("blob:", "data:")))]
    assert not external, external
    assert not [e for e in page_errors if "app.js" in e or not e], page_errors
    page.close()


def test_server_prints_its_url_and_serves_the_page(server: str) -> None:
    import httpx

    start = time.perf_counter()
    response = httpx.get(server, timeout=10)
    assert response.status_code == 200 and "Facial emotion recognition" in response.text
    assert httpx.get(server + "healthz", timeout=10).json()["engine_loaded"] is True
    assert time.perf_counter() - start < 10
