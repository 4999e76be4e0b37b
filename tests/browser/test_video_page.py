"""The video section of the page in a real Chromium against `emotion serve`: a job on a real clip, the annotated
H.264 video playing inline, one card per person (what its numbers mean, the top emotions smoothed over time,
readable time labels at phone width), the result as JSON and CSV; the same for a result too large to inline
(result_url)."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import serve_fresh

pytestmark = pytest.mark.browser

CLIP = "fr_short_hamilton_clip.mp4"
TOP_LINES = 3  # emotions drawn per person (jobs.js)
SMOOTH_MS = 1000  # their centred moving average's window (jobs.js)


def pct(value: float) -> int:
    """A share as the page shows it: JavaScript's Math.round(value * 100) (halves round up)."""
    return math.floor(value * 100 + 0.5)


def _check_smoothing(page, result: dict) -> None:
    """The first card's strongest line is the centred moving average of its emotion, point by point: read its
    polylines (one per stretch on screen) back into (time, probability) and compare them with the average
    computed here."""
    person = result["persons"][0]
    means = person["summary"]["mean_emotions"]
    name = max(means, key=lambda n: means[n])
    chart = page.locator(".person-card").first.locator("svg.chart")
    width, height = (float(v) for v in chart.get_attribute("viewBox").split()[2:])
    left, right, top, bottom = 40, 10, 8, 26
    polylines = chart.locator(f"polyline[data-emotion='{name}']").evaluate_all("els => els.map(e => "
                                                                               "e.getAttribute('points'))")
    timeline = person["timeline"]
    steps = sorted(b["t_ms"] - a["t_ms"] for a, b in zip(timeline, timeline[1:], strict=False))
    half = max(SMOOTH_MS, 3 * steps[len(steps) // 2]) / 2
    gap = max(1200, 3 * steps[len(steps) // 2])
    stretches = [[timeline[0]]]
    for point in timeline[1:]:
        if point["t_ms"] - stretches[-1][-1]["t_ms"] > gap:
            stretches.append([])
        stretches[-1].append(point)
    assert len(polylines) == len(stretches)
    duration = result["video"]["duration_ms"]
    raw_jitter = smooth_jitter = 0.0
    for points, stretch in zip(polylines, stretches, strict=True):
        drawn = [tuple(float(v) for v in pair.split(",")) for pair in points.split()]
        if len(stretch) == 1:
            continue  # a single point is drawn as a 2 px dash
        assert len(drawn) == len(stretch)
        smooth = [1 - (y - top) / (height - top - bottom) for _, y in drawn]
        for (x, _), value, point in zip(drawn, smooth, stretch, strict=True):
            near = [q["emotions"][name] for q in stretch if abs(q["t_ms"] - point["t_ms"]) <= half]
            assert abs(value - sum(near) / len(near)) < 0.002
            assert abs((x - left) / (width - left - right) * duration - point["t_ms"]) < 0.002 * duration
        raw = [p["emotions"][name] for p in stretch]
        raw_jitter += sum(abs(b - a) for a, b in zip(raw, raw[1:], strict=False))
        smooth_jitter += sum(abs(b - a) for a, b in zip(smooth, smooth[1:], strict=False))
    assert smooth_jitter < raw_jitter  # the smoothed line moves less than the raw one


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
    # Background faces (the audience) are folded away in a closed <details>, the others shown in list order.
    background = [str(p["id"]) for p in result["persons"] if p["background"]]
    assert background and len(background) < len(result["persons"])
    folded = page.locator("details.background-persons")
    assert folded.get_attribute("open") is None
    assert folded.locator(".person-card").evaluate_all("els => els.map(e => e.dataset.personId)") == background
    assert f"{len(background)} background faces" in folded.locator("summary").inner_text()
    shown = page.locator(".persons:not(details .persons) > .person-card")
    assert shown.evaluate_all("els => els.map(e => e.dataset.personId)") == [
        str(p["id"]) for p in result["persons"] if not p["background"]]
    assert all(card.is_visible() for card in shown.all())
    folded.locator("summary").click()  # unfolded, every card reads the same
    for person in result["persons"]:
        card = page.locator(f".person-card[data-person-id='{person['id']}']")
        summary = person["summary"]
        means = summary["mean_emotions"]
        top = sorted(means, key=lambda name: -means[name])[:TOP_LINES]
        assert card.locator("h3").inner_text() == f"Person {person['id']}"
        assert card.locator("img.person-face").evaluate("img => img.complete && img.naturalWidth") == 96
        # Only the top emotions by mean are drawn, with filled swatches; the legend lists every emotion's mean.
        drawn = set(card.locator("svg.chart polyline").evaluate_all("els => els.map(e => e.dataset.emotion)"))
        assert drawn == set(top)
        ticks = card.locator("svg.chart text.tick").evaluate_all("els => els.map(e => e.textContent)")
        assert "0 s" in ticks and "100%" in ticks and "0%" in ticks
        legend = card.locator(".legend li").evaluate_all("els => els.map(e => e.textContent.trim())")
        assert legend == [f"{name} {pct(means[name])}%" for name in sorted(means, key=lambda n: -means[n])]
        assert len(legend) == labels and card.locator(".legend li svg rect").count() == labels
        assert card.locator(".legend li.drawn").count() == TOP_LINES
        # The headline and the legend use the same number (the mean); the frame share is named as such.
        dominant = summary["dominant_emotion"]
        text = card.inner_text()
        assert f"Mostly {dominant}: {pct(means[dominant])}% on average" in text
        assert (f"top emotion in {pct(summary['dominant_share'])}% of {summary['samples']} analysed "
                f"frame") in text
    assert "centred moving average" in page.locator(".reading").inner_text()
    _check_smoothing(page, result)
    # The person seen in two shots says so.
    joined = [p for p in result["persons"] if len(p["track_ids"]) > 1]
    assert joined and "joined by face identity" in page.locator(
        f".person-card[data-person-id='{joined[0]['id']}']").inner_text()


def test_video_job_plays_inline_with_one_card_per_person(server: str, browser_context, shared_dir: Path,
                                                         artifacts_dir: Path) -> None:
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    done, result = _run_job(page, server, shared_dir / "data" / "videos" / CLIP)
    assert done["result"] is not None and done["result_url"] is None  # small enough to inline
    _check_page(page, result)
    page.locator("#video-jobs").screenshot(path=str(artifacts_dir / "browser_video_light.png"))
    _check_downloads(page, result)
    page.emulate_media(color_scheme="dark")
    page.locator("#video-jobs").screenshot(path=str(artifacts_dir / "browser_video_dark.png"))
    page.emulate_media(color_scheme="light")
    # On a phone-sized screen the player and the cards fit without sideways scrolling.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert page.locator("#video-player").bounding_box()["width"] <= 390
    # The charts are redrawn at the card's width: time labels keep 12 px text and never overlap.
    page.wait_for_function("() => [...document.querySelectorAll('svg.chart')].every(c => "
                           "Math.abs(c.getBoundingClientRect().width - c.parentElement.clientWidth) < 2)")
    for chart in page.locator("svg.chart").all():
        labels = chart.locator("text.tick").evaluate_all(
            "els => els.filter(e => e.textContent.endsWith(' s')).map(e => { const r = e.getBoundingClientRect();"
            " return {x: r.left, w: r.width, h: r.height, size: getComputedStyle(e).fontSize}; })")
        assert len(labels) >= 2
        assert all(lab["size"] == "12px" and lab["h"] >= 11 for lab in labels), labels
        assert all(a["x"] + a["w"] + 4 <= b["x"] for a, b in zip(labels, labels[1:], strict=False)), labels
    page.locator("#video-jobs").screenshot(path=str(artifacts_dir / "browser_video_phone.png"))
    page.close()


def _check_downloads(page, result: dict) -> None:
    """The result as JSON (as received) and as CSV: one row per person per analysed frame."""
    with page.expect_download() as download:
        page.click("#video-download-json")
    assert download.value.suggested_filename == "fr_short_hamilton_clip.emotions.json"
    assert json.loads(Path(download.value.path()).read_text()) == result
    with page.expect_download() as download:
        page.click("#video-download-csv")
    assert download.value.suggested_filename == "fr_short_hamilton_clip.timeline.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    expected = [(p["id"], q) for p in result["persons"] for q in p["timeline"]]
    assert len(rows) == len(expected)
    tracks = {(t["person_id"], q["frame"]): t["id"] for t in result["tracks"] for q in t["timeline"]}
    for row, (person, point) in zip(rows, expected, strict=True):
        assert int(row["person"]) == person and int(row["frame"]) == point["frame"]
        assert int(row["track"]) == tracks[(person, point["frame"])]
        assert float(row["t_ms"]) == point["t_ms"] and int(row["x"]) == point["box"]["x"]
        assert row["dominant_emotion"] == point["dominant_emotion"]
        assert all(float(row[name]) == value for name, value in point["emotions"].items())


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


def test_a_large_video_is_annotated_at_1920_and_plays(server: str, browser_context, shared_dir: Path,
                                                      tmp_path: Path, artifacts_dir: Path) -> None:
    """A 3200x1800 upload (frames analysed at 1920x1080, boxes in the video's pixels): the annotated video is
    written at 1920x1080 and Chromium plays it inline."""
    import cv2

    photo = cv2.imread(str(shared_dir / "data" / "scenes" / "fr_two_people.jpg"))
    frame = cv2.resize(photo, (3200, 1800), interpolation=cv2.INTER_LINEAR)
    clip = tmp_path / "large.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (3200, 1800))
    for i in range(12):
        writer.write(np.roll(frame, 4 * i, axis=1))
    writer.release()
    page = browser_context.new_page()
    page.set_viewport_size({"width": 1280, "height": 900})
    _, result = _run_job(page, server, clip)
    assert (result["video"]["width"], result["video"]["height"]) == (3200, 1800)
    boxes = [p["box"] for t in result["tracks"] for p in t["timeline"]]
    assert boxes and max(b["x"] + b["width"] for b in boxes) > 1920  # source pixels, not the analysis size
    page.wait_for_function(
        "() => { const v = document.querySelector('#video-player'); return v && v.readyState >= 2; }", timeout=30_000)
    player = page.evaluate("() => { const v = document.querySelector('#video-player');"
                           " return {width: v.videoWidth, height: v.videoHeight, error: v.error && v.error.message}; }")
    assert player == {"width": 1920, "height": 1080, "error": None}
    page.locator("#video-player").screenshot(path=str(artifacts_dir / "browser_video_large.png"))
    page.close()
