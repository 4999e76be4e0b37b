"""Live webcam mode in Chromium with a fake camera playing a Y4M made from a dev clip: frames are sent one at a
time, boxes are drawn over the live video, the frame rate is shown, and Stop stops it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.browser.conftest import launch

pytestmark = pytest.mark.browser


def write_y4m(video: Path, out: Path, seconds: float = 3.0, fps: int = 10, width: int = 640) -> int:
    """The first seconds of a clip as an uncompressed Y4M (4:2:0), the format Chromium's fake camera reads."""
    cap = cv2.VideoCapture(str(video))
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(src_fps / fps))
    frames = 0
    index = 0
    with out.open("wb") as f:
        while frames < seconds * fps:
            ok, bgr = cap.read()
            if not ok:
                break
            index += 1
            if (index - 1) % step:
                continue
            h = round(bgr.shape[0] * width / bgr.shape[1] / 2) * 2
            bgr = cv2.resize(bgr, (width, h), interpolation=cv2.INTER_AREA)
            if frames == 0:
                f.write(f"YUV4MPEG2 W{width} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            f.write(b"FRAME\n" + np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)).tobytes())
            frames += 1
    cap.release()
    return frames


def wait_until(check, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"not reached within {timeout_s} s"
        time.sleep(0.1)


def test_live_webcam_mode(server: str, playwright_instance, shared_dir: Path, tmp_path: Path,
                          artifacts_dir: Path) -> None:
    clip = tmp_path / "camera.y4m"
    assert write_y4m(shared_dir / "data" / "videos" / "fr_short_hamilton_clip.mp4", clip) == 30
    fake_camera = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                   f"--use-file-for-fake-video-capture={clip}"]
    # Its own Chromium: the fake camera is a launch flag.
    context = launch(playwright_instance, tmp_path / "profile", fake_camera, viewport={"width": 1280, "height": 800},
                     permissions=["camera"])
    try:
        page = context.new_page()
        in_flight = [0]
        most_in_flight = [0]

        def started(request) -> None:
            if "/v1/analyze" in request.url:
                in_flight[0] += 1
                most_in_flight[0] = max(most_in_flight[0], in_flight[0])

        def finished(request) -> None:
            if "/v1/analyze" in request.url:
                in_flight[0] -= 1

        page.on("request", started)
        page.on("requestfinished", finished)
        page.on("requestfailed", finished)
        page.goto(server)
        page.click("#camera-button")
        # Polled from here: the page's CSP (no 'unsafe-eval') refuses Playwright's string predicates.
        wait_until(lambda: page.locator("#camera-video").evaluate("v => v.videoWidth") > 0, 30)
        page.click("#live-button")
        wait_until(lambda: int(page.locator("#camera").get_attribute("data-frames") or 0) >= 10, 90)

        stats = page.locator("#live-stats").inner_text()
        match = re.match(r"Live: (\d+\.\d) frames/s analysed · \d+ ms per frame · \d+ faces?", stats)
        assert match and float(match.group(1)) > 0, stats
        assert float(match.group(1)) <= 5.5  # never more than the page's steady rate of 5 a second
        assert most_in_flight[0] == 1  # one frame in flight at a time
        # Boxes drawn over the live video: the overlay reports faces and has coloured pixels.
        overlay = page.locator("#camera-overlay")
        assert int(overlay.get_attribute("data-faces") or 0) >= 1
        painted = overlay.evaluate(
            "c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0; "
            "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }")
        assert painted > 500
        page.locator("#camera").screenshot(path=str(artifacts_dir / "webcam_live.png"))

        # Stop: no more frames go out.
        page.click("#live-button")
        assert page.locator("#live-button").inner_text() == "Start live"
        time.sleep(0.5)
        frames = int(page.locator("#camera").get_attribute("data-frames") or 0)
        time.sleep(1.5)
        assert int(page.locator("#camera").get_attribute("data-frames") or 0) == frames
        assert page.locator("#error").is_hidden()
    finally:
        context.close()
