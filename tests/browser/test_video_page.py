"""The video section of the page in a real Chromium against `emotion serve`: a job on a real clip, the annotated
H.264 video playing inline, one card per person; the same for a result too large to inline (result_url)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import serve_fresh

pytestmark = pytest.mark.browser

CLIP = "fr_short_hamilton_clip.mp4"


@pytest.fixture(scope="module")
def small_inline_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server whose inline limit is 2 kB, so every video result goes by result_url."""
    yield from serve_fresh(tmp_path_factory.mktemp("emotion-data-url"), EMOTION_JOB_INLINE_RESULT_BYTES="2000")


def _run_job(page, server: str, clip: Path, fps: str = "5", classifier: str = "") -> tuple[dict, dict]:
    """Submit the clip through the page with the chosen sampling and classifier; returns (the final job status,
    the result the page drew)."""
    statuses: list[dict] = []
    results: list[dict] = []

    def on_response(response) -> None:
        if "/v1/jobs/" in response.url and response.request.method == "GET" and response.ok:
            statuses.append(response.json())
        elif "/files/results/" in response.url and response.url.split("?")[0].endswith(".json"):
            results.append(json.loads(response.body()))

    page.on("response", on_response)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server)
    page.wait_for_selector("#video-classifier option[value='mobilefacenet']", state="attached", timeout=30_000)
    page.select_option("#video-fps", fps)
    page.select_option("#video-classifier", classifier)
    page.set_input_files("#video-file", str(clip))
    page.click("#video-submit")
    page.wait_for_selector(".person-card", timeout=180_000)
    assert page.locator("#video-error").is_hidden(), page.locator("#video-error").inner_text()
    assert not errors, errors
    done = statuses[-1]
    assert done["status"] == "succeeded"
    return done, done["result"] or results[-1]


def _check_page(page, result: dict) -> None:
    # The annotated video plays inline: decoded far enough to show a frame, with the clip's duration.
    page.wait_for_function(
        "() => { const v = document.querySelector('#video-player'); return v && v.readyState >= 2; }", timeout=30_000)
    player = page.evaluate("() => { const v = document.querySelector('#video-player');"
                           " return {duration: v.duration, width: v.videoWidth, height: v.videoHeight,"
                           " error: v.error && v.error.message}; }")
    assert player["error"] is None
    assert abs(player["duration"] - result["video"]["duration_ms"] / 1000) < 0.2, player
    assert (player["width"], player["height"]) == (640, 360)

    # One card per person, each with its face, a chart with lines, time ticks and a legend with swatches.
    cards = page.locator(".person-card")
    assert cards.count() == len(result["persons"]) >= 2
    labels = len(result["persons"][0]["timeline"][0]["emotions"])
    for i, person in enumerate(result["persons"]):
        card = cards.nth(i)
        assert card.get_attribute("data-person-id") == str(person["id"])
        assert card.locator("h3").inner_text() == f"Person {person['id']}"
        assert card.locator("img.person-face").evaluate("img => img.complete && img.naturalWidth") == 96
        assert card.locator("svg.chart polyline").count() >= 1
        ticks = card.locator("svg.chart text.tick").evaluate_all("els => els.map(e => e.textContent)")
        assert "0 s" in ticks and "100%" in ticks and "0%" in ticks
        assert card.locator(".legend li").count() == labels
        assert card.locator(".legend li svg rect").count() == labels
        assert person["summary"]["dominant_emotion"] in card.locator(".dominant").inner_text()
    # The person seen in two shots says so.
    joined = [p for p in result["persons"] if len(p["track_ids"]) > 1]
    assert joined and "joined by face identity" in cards.nth(result["persons"].index(joined[0])).inner_text()


def test_video_job_plays_inline_with_one_card_per_person(server: str, browser_context, shared_dir: Path,
                                                         artifacts_dir: Path) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    done, result = _run_job(page, server, shared_dir / "data" / "videos" / CLIP)
    assert done["result"] is not None and done["result_url"] is None  # small enough to inline
    _check_page(page, result)
    page.locator("#video-jobs").screenshot(path=str(artifacts_dir / "browser_video_light.png"))
    page.emulate_media(color_scheme="dark")
    page.locator("#video-jobs").screenshot(path=str(artifacts_dir / "browser_video_dark.png"))
    page.emulate_media(color_scheme="light")
    # On a phone-sized screen the player and the cards fit without sideways scrolling.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert page.locator("#video-player").bounding_box()["width"] <= 390
    page.locator("#video-jobs").screenshot(path=str(artifacts_dir / "browser_video_phone.png"))
    page.close()


def test_large_result_is_fetched_from_result_url(small_inline_server: str, browser_context, shared_dir: Path) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    done, result = _run_job(page, small_inline_server, shared_dir / "data" / "videos" / CLIP, fps="2",
                            classifier="ferplus")
    assert done["result"] is None and done["result_url"]  # over the inline limit
    # The choices made on the page were sent with the job and used.
    assert result["video"]["sample_fps"] == 2 and 18 <= result["video"]["frames_processed"] <= 20
    assert result["models"]["classifier"].startswith("ferplus")
    assert "contempt" in result["persons"][0]["timeline"][0]["emotions"]  # ferplus has 8 emotions
    _check_page(page, result)
    page.close()
