"""The "Many photos" section in a real Chromium against `emotion serve`: a folder of 30 photos chosen as a folder
→ progress bar → a sortable table with thumbnails → a chart of dominant emotions → the three downloads; and a
ZIP chosen as it is. Screenshots go to test-artifacts/."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory, shared_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("page") / "study"
    (root / "crops").mkdir(parents=True)
    for path in sorted((shared_dir / "data" / "scenes").glob("*.jpg")):
        shutil.copy(path, root / path.name)
    for path in sorted((shared_dir / "data" / "ferplus_train").glob("*.png"))[:21]:
        shutil.copy(path, root / "crops" / path.name)
    (root / "crops" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a real photo")
    assert len(list(root.rglob("*.*"))) == 30
    return root


def _open(browser_context, server: str):
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    statuses: list[dict] = []

    def on_response(response) -> None:
        if "/v1/jobs/" in response.url and response.request.method == "GET" and response.ok:
            statuses.append(response.json())

    page.on("response", on_response)
    page.goto(server)
    page.wait_for_selector("#collection-folder", state="attached")
    return page, errors, statuses


def _pass_through_processing(page) -> None:
    """A quiet machine can finish 30 photos before the page's first poll. Then the first finished status the page
    asks for is answered once as the processing status it passed through (the real total, half of it done), so
    the page's progress from the job's counts is exercised on every machine; every later poll is the server's."""
    shown = {"processing": False}

    def handle(route) -> None:
        response = route.fetch()
        body = response.json() if response.ok else None
        if route.request.method != "GET" or body is None or body.get("status") == "pending":
            route.fulfill(response=response)
            return
        if body["status"] == "processing":
            shown["processing"] = True
        elif not shown["processing"] and body.get("collection", {}).get("total"):
            shown["processing"] = True
            total = body["collection"]["total"]
            body = {**body, "status": "processing", "result": None, "files": None,
                    "collection": {**body["collection"], "done": total // 2, "failed": 0}}
        route.fulfill(response=response, json=body)

    page.route("**/v1/jobs/*", handle)


def test_folder_of_30_photos(browser_context, server: str, photo_folder: Path, artifacts_dir: Path) -> None:
    page, errors, statuses = _open(browser_context, server)
    _pass_through_processing(page)
    page.set_input_files("#collection-folder", str(photo_folder))
    page.wait_for_selector("#collection-progress:not([hidden])", timeout=30_000)
    page.locator("#collection-jobs").screenshot(path=str(artifacts_dir / "collection-progress.png"))
    page.wait_for_selector("#collection-table tbody tr", timeout=180_000)
    assert page.locator("#collection-error").is_hidden(), page.locator("#collection-error").inner_text()
    assert not errors, errors
    # Progress was shown from the job's counts while it ran.
    running = [s["collection"] for s in statuses if s["status"] == "processing" and s["collection"]["total"]]
    assert running and all(c["total"] == 30 and 0 <= c["done"] <= 30 for c in running)
    final = statuses[-1]
    assert final["status"] == "succeeded" and final["collection"]["done"] == 30
    summary = final["result"]
    assert page.locator("#collection-status").inner_text().startswith(f"Done: 30 photos, {summary['faces']} faces")

    rows = page.locator("#collection-table tbody tr")
    assert rows.count() == 30
    names = rows.evaluate_all("rs => rs.map(r => r.dataset.name)")
    assert names == sorted(names) and names[0].startswith("study/")
    thumbs = page.locator("#collection-table td.thumb img")
    assert thumbs.count() == 29  # every photo but the broken one
    page.wait_for_function("() => [...document.querySelectorAll('#collection-table td.thumb img')]"
                           ".slice(0, 8).every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
    broken = page.locator("#collection-table tr[data-name='study/crops/broken.jpg']")
    assert "undecodable_image" in broken.inner_text()
    two = page.locator("#collection-table tr[data-name='study/fr_two_people.jpg'] td.num").inner_text()
    assert int(two) >= 2

    # Sorting by faces: most first, then (clicked again) fewest first; a failed photo counts as none.
    def face_column() -> list[int]:
        return page.locator("#collection-table tbody td.num").evaluate_all(
            "cells => cells.map(c => c.textContent === '–' ? 0 : Number(c.textContent))")

    page.click("button.sort[data-sort='faces']")
    faces = face_column()
    assert faces == sorted(faces, reverse=True) and faces[0] >= 6
    assert page.locator("th[aria-sort='descending'] button[data-sort='faces']").count() == 1
    page.click("button.sort[data-sort='faces']")
    assert face_column() == sorted(faces)
    page.click("button.sort[data-sort='name']")
    assert rows.evaluate_all("rs => rs.map(r => r.dataset.name)") == names
    page.click("button.sort[data-sort='dominant']")
    assert page.locator("th[aria-sort='ascending'] button[data-sort='dominant']").count() == 1

    # The chart: one bar per emotion, lengths by the summary's counts.
    bars = page.locator("#collection-chart rect.bar")
    counts = {b.get_attribute("data-emotion"): int(b.get_attribute("data-count") or 0) for b in bars.all()}
    assert counts == {k: v for k, v in summary["dominant_emotions"].items()}
    widths = {b.get_attribute("data-emotion"): float(b.get_attribute("width") or 0) for b in bars.all()}
    top = max(counts, key=lambda k: counts[k])
    assert widths[top] == max(widths.values()) > 0

    # Downloads: the CSV, the JSONL and the summary as files.
    with page.expect_download() as download:
        page.click("#collection-faces_csv")
    data = Path(download.value.path()).read_text()
    assert download.value.suggested_filename == "faces.csv"
    assert len(list(csv.DictReader(io.StringIO(data)))) == summary["faces"] + summary["images_without_face"] + 1
    with page.expect_download() as download:
        page.click("#collection-results_jsonl")
    assert len(Path(download.value.path()).read_text().splitlines()) == 30
    with page.expect_download() as download:
        page.click("#collection-summary_json")
    assert json.loads(Path(download.value.path()).read_text()) == summary

    page.click("button.sort[data-sort='faces']")
    page.screenshot(path=str(artifacts_dir / "collection-page.png"), full_page=True)
    page.close()


def test_a_zip_as_it_is(browser_context, server: str, photo_folder: Path, artifacts_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "study.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(photo_folder.glob("*.jpg"))[:4]:
            zf.write(path, f"zipped/{path.name}")
        zf.writestr("../outside.jpg", (photo_folder / "fr_two_people.jpg").read_bytes())
    page, errors, _ = _open(browser_context, server)
    page.set_input_files("#collection-files", str(archive))
    page.wait_for_selector("#collection-table tbody tr", timeout=120_000)
    assert not errors, errors
    assert page.locator("#collection-table tbody tr").count() == 5
    assert "unsafe_name" in page.locator("#collection-table tr[data-name='../outside.jpg']").inner_text()
    assert page.locator("#collection-table td.thumb img").count() == 0  # no local files to show
    page.set_input_files("#collection-files", [str(photo_folder / "crops" / "broken.jpg")])
    page.wait_for_selector("#collection-status:has-text('Done: 1 photo, 0 faces; 1 photo could not')", timeout=60_000)
    page.set_input_files("#collection-files", [])
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.set_input_files("#collection-files", str(notes))
    page.wait_for_selector("#collection-error:not([hidden])", timeout=10_000)
    assert "Choose photos" in page.locator("#collection-error").inner_text()
    page.close()
