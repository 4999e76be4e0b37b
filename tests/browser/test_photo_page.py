"""The photo page as a person uses it, in a real Chromium against `emotion serve`: group photos at desktop and
phone width (labels never overlap, one numbering: the JSON's), bar contrast in both themes, the card and box
linked, downloads, and a photo too large for the service scaled down in the browser."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import block_external

pytestmark = pytest.mark.browser

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


def analyse(page, path: Path) -> dict:
    """Upload through the file input; the JSON the page received from v1/analyze."""
    with page.expect_response(lambda r: "/v1/analyze" in r.url) as answer:
        page.set_input_files("#file-input", str(path))
    result = answer.value.json()
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#faces canvas.crop').length > 0 || "
                           "document.querySelector('#result').dataset.faces === '0'")
    return result


def rects(page, selector: str) -> list[dict]:
    return page.locator(selector).evaluate_all(
        "els => els.map(e => { const r = e.getBoundingClientRect(); "
        "return {x: r.left, y: r.top, w: r.width, h: r.height}; })"
    )


def overlaps(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


def contrast(rgb_a: tuple[int, ...], rgb_b: tuple[int, ...]) -> float:
    def lum(rgb: tuple[int, ...]) -> float:
        c = [v / 255 for v in rgb[:3]]
        c = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in c]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    hi, lo = sorted((lum(rgb_a), lum(rgb_b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def parse_rgb(css: str) -> tuple[int, ...]:
    return tuple(int(float(v)) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])


@pytest.mark.parametrize("photo", ["fp_multiface.jpg", "fa_bbt1.jpg"])
@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_group_photo_labels_never_overlap_and_follow_the_json_order(
    server: str, browser_context, scenes: Path, artifacts_dir: Path, photo: str, viewport: str
) -> None:
    page = browser_context.new_page()
    page.set_viewport_size(VIEWPORTS[viewport])
    blocked = block_external(page, server)
    page.goto(server)
    result = analyse(page, scenes / photo)
    faces = result["faces"]
    assert len(faces) >= 4  # fp_multiface: 6, fa_bbt1: 4

    # One numbering: card i and box i are faces[i] of the JSON.
    headings = page.locator("#faces > li h3").all_inner_texts()
    assert headings == [f"Face {i + 1}: {f['dominant_emotion']} {round(f['emotions'][f['dominant_emotion']] * 100)}%"
                        for i, f in enumerate(faces)]
    stage = page.locator("#stage").bounding_box()
    assert stage is not None
    scale = stage["width"] / result["image"]["width"]
    for i, (face, box) in enumerate(zip(faces, rects(page, "#overlay .face-box"), strict=True)):
        assert abs(box["x"] - stage["x"] - face["box"]["x"] * scale) <= 2, i
        assert abs(box["y"] - stage["y"] - face["box"]["y"] * scale) <= 2, i
        assert abs(box["w"] - face["box"]["width"] * scale) <= 2, i
    tags = page.locator("#overlay .tag").all_inner_texts()
    assert [t.split()[0] for t in tags] == [str(i + 1) for i in range(len(faces))]

    # No two labels overlap, and every label stays on the photo.
    labels = rects(page, "#overlay .tag")
    for i, a in enumerate(labels):
        assert stage["x"] - 1 <= a["x"] and a["x"] + a["w"] <= stage["x"] + stage["width"] + 1, (i, a)
        assert stage["y"] - 1 <= a["y"] and a["y"] + a["h"] <= stage["y"] + stage["height"] + 1, (i, a)
        for j, b in enumerate(labels[:i]):
            assert not overlaps(a, b), (tags[j], tags[i], b, a)
    # Labels carry the percentage where there is room; at least half do on these photos.
    assert sum("%" in t for t in tags) >= len(tags) / 2, tags
    # Legible: at least 12 px text.
    assert min(page.locator("#overlay .tag").evaluate_all(
        "els => els.map(e => parseFloat(getComputedStyle(e).fontSize))")) >= 12

    # Top 3 emotions shown per face; the rest behind "All N emotions".
    first = page.locator("#faces > li").first
    assert first.locator(".bars").first.locator(".bar").count() == 3
    assert first.locator("details.more summary").inner_text().startswith("All ")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert not blocked, blocked
    page.screenshot(path=str(artifacts_dir / f"photo_{Path(photo).stem}_{viewport}.png"), full_page=True)
    page.close()


def test_bars_meet_contrast_in_both_themes_and_cards_link_to_boxes(
    server: str, browser_context, scenes: Path, artifacts_dir: Path, tmp_path: Path
) -> None:
    page = browser_context.new_page()
    page.set_viewport_size(VIEWPORTS["desktop"])
    page.goto(server)
    result = analyse(page, scenes / "fp_multiface.jpg")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        pairs = page.locator("#faces .bar i").evaluate_all(
            "els => els.map(e => [e.dataset.emotion, getComputedStyle(e).backgroundColor, "
            "getComputedStyle(e.parentElement).backgroundColor])"
        )
        seen = {name for name, _, _ in pairs}
        assert {"neutral", "happiness", "surprise", "sadness"} <= seen
        for name, fill, track in pairs:
            assert contrast(parse_rgb(fill), parse_rgb(track)) >= 3.0, (scheme, name, fill, track)
        page.screenshot(path=str(artifacts_dir / f"photo_bars_{scheme}.png"), full_page=False)
    page.emulate_media(color_scheme="light")

    # Hovering a card highlights its box; clicking a box focuses its card.
    page.locator("#face-3").hover()
    assert "active" in page.locator('#overlay .face-box[data-index="2"]').get_attribute("class")
    assert page.locator("#overlay .face-box.active").count() == 1
    page.locator('#overlay .face-box[data-index="4"]').click(force=True)
    assert page.evaluate("document.activeElement.id") == "face-5"

    # Each card shows a crop of its face (not a blank canvas).
    spread = page.locator("#faces canvas.crop").evaluate_all(
        "els => els.map(c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; "
        "let lo = 255, hi = 0; for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i]); "
        "hi = Math.max(hi, d[i]); } return hi - lo; })"
    )
    assert len(spread) == len(result["faces"]) and min(spread) > 40

    # Downloads: the JSON the page shows, and the annotated image from v1/annotate.
    with page.expect_download() as download:
        page.click("#download-json")
    saved = tmp_path / "result.json"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "fp_multiface.emotions.json"
    assert json.loads(saved.read_text())["faces"] == result["faces"]
    with page.expect_download() as download:
        page.click("#download-annotated")
    annotated = tmp_path / "annotated.jpg"
    download.value.save_as(annotated)
    with Image.open(annotated) as img:
        assert img.format == "JPEG" and img.size == (1200, 630)
    assert "mobilefacenet" in page.locator("#caption").inner_text()  # the model's name, not its internal id
    page.close()


def test_a_photo_over_the_limit_is_scaled_down_in_the_browser_and_boxes_land_on_the_original(
    server: str, browser_context, scenes: Path, artifacts_dir: Path, tmp_path: Path
) -> None:
    import httpx

    # 8000x6000: the group photo scaled up 6.67x on a noisy canvas (48 MP, over the 40 MP and 6 MB limits).
    big = tmp_path / "big_group.jpg"
    offset = (0, 900)
    factor = 8000 / 1200
    rng = np.random.default_rng(0)  # sensor-like noise, so the file is as large as a real 48 MP photo
    noise = rng.integers(96, 160, (6000, 8000, 3), dtype=np.uint8)
    with Image.open(scenes / "fp_multiface.jpg") as src:
        canvas = Image.fromarray(noise)
        canvas.paste(src.resize((8000, round(630 * factor)), Image.Resampling.LANCZOS), offset)
        canvas.save(big, quality=90)
    assert big.stat().st_size > 6_000_000
    expected = httpx.post(server + "v1/analyze", files={"image": (scenes / "fp_multiface.jpg").read_bytes()},
                          timeout=60).json()["faces"]

    page = browser_context.new_page()
    page.set_viewport_size(VIEWPORTS["desktop"])
    sent: list[int] = []
    page.on("request", lambda r: sent.append(len(r.post_data_buffer or b"")) if "/v1/analyze" in r.url else None)
    page.goto(server)
    result = analyse(page, big)
    assert sent and max(sent) < 6_000_000  # what went over the wire fits the limit
    assert result["image"]["width"] <= 4096  # the server saw the browser's smaller copy
    note = page.locator("#resize-note")
    assert note.is_visible()
    assert "8000×6000" in note.inner_text() and "scaled down in this browser" in note.inner_text()
    assert "8000×6000 px" in page.locator("#caption").inner_text()

    # The boxes the page shows, in the original's pixels, land on the faces of the original.
    stage = page.locator("#stage").bounding_box()
    assert stage is not None
    shown = [{"x": (r["x"] - stage["x"]) * 8000 / stage["width"], "y": (r["y"] - stage["y"]) * 6000 / stage["height"],
              "w": r["w"] * 8000 / stage["width"], "h": r["h"] * 6000 / stage["height"]}
             for r in rects(page, "#overlay .face-box")]
    assert len(shown) == len(expected)

    def iou(a: dict, b: dict) -> float:
        ix = max(0.0, min(a["x"] + a["w"], b["x"] + b["w"]) - max(a["x"], b["x"]))
        iy = max(0.0, min(a["y"] + a["h"], b["y"] + b["h"]) - max(a["y"], b["y"]))
        inter = ix * iy
        return inter / (a["w"] * a["h"] + b["w"] * b["h"] - inter)

    for face in expected:
        b = face["box"]
        truth = {"x": b["x"] * factor + offset[0], "y": b["y"] * factor + offset[1], "w": b["width"] * factor,
                 "h": b["height"] * factor}
        assert max(iou(truth, s) for s in shown) > 0.6, (truth, shown)
    page.screenshot(path=str(artifacts_dir / "photo_downscaled_8000x6000.png"), full_page=False)
    page.close()


def test_a_file_too_large_to_shrink_is_refused_before_upload(server: str, browser_context, tmp_path: Path) -> None:
    big = tmp_path / "scan.tiff"  # Chromium cannot decode TIFF, so it cannot shrink it either
    big.write_bytes(b"II*\x00" + bytes(7_000_000))
    page = browser_context.new_page()
    uploads: list[str] = []
    page.on("request", lambda r: uploads.append(r.url) if "/v1/analyze" in r.url else None)
    page.goto(server)
    page.set_input_files("#file-input", str(big))
    error = page.locator("#error")
    error.wait_for(state="visible", timeout=30_000)
    assert "7.0 MB" in error.inner_text() and "Save the photo as a JPEG" in error.inner_text()
    assert uploads == []
    page.close()


def test_a_heic_photo_is_analysed_and_shown(server: str, browser_context, scenes: Path, tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="HEIC support comes from pillow-heif (runtime dependency)")
    pillow_heif.register_heif_opener()
    heic = tmp_path / "IMG_0001.HEIC"
    with Image.open(scenes / "fr_two_people.jpg") as img:
        img.save(heic, format="HEIF", quality=85)
    page = browser_context.new_page()
    page.goto(server)
    result = analyse(page, heic)
    assert len(result["faces"]) == 2 and page.locator("#error").is_hidden()
    # Chromium cannot show HEIC: the page shows the server's JPEG of it, at the photo's size.
    assert page.locator("#photo").evaluate("img => [img.naturalWidth, img.naturalHeight]") == [1126, 661]
    assert page.locator("#overlay .face-box").count() == 2
    page.close()


def test_cards_show_pose_and_quality_and_warn_on_an_unreliable_face(
    server: str, browser_context, scenes: Path, artifacts_dir: Path, tmp_path: Path
) -> None:
    # Two people; the right half darkened to a tenth, so the right face is too dark to read reliably.
    photo = np.asarray(Image.open(scenes / "fr_two_people.jpg").convert("RGB")).copy()
    photo[:, 563:] = (photo[:, 563:] * 0.1).astype(np.uint8)
    path = tmp_path / "one_dark.jpg"
    Image.fromarray(photo).save(path, quality=92)
    page = browser_context.new_page()
    page.set_viewport_size(VIEWPORTS["desktop"])
    blocked = block_external(page, server)
    page.goto(server)
    faces = analyse(page, path)["faces"]
    assert sorted((f["box"]["x"] < 563, f["quality"]["reliable"]) for f in faces) == [(False, False), (True, True)]
    lines = page.locator("#faces > li .pose-quality").all_inner_texts()
    assert len(lines) == len(faces) == 2
    def js_round(value: float) -> int:  # Math.round: halves go up (Python's round goes to even)
        return math.floor(value + 0.5)

    for face, line in zip(faces, lines, strict=True):
        pose, quality = face["pose"], face["quality"]
        assert f"yaw {js_round(pose['yaw'])}°, pitch {js_round(pose['pitch'])}°, roll {js_round(pose['roll'])}°" in line
        assert f"brightness {js_round(quality['brightness'])}/255" in line and f"size {quality['size']} px" in line
        assert ("Low quality" in line) is (not quality["reliable"])
    page.locator("#faces").screenshot(path=str(artifacts_dir / "photo_cards_pose_quality.png"))
    assert blocked == []
