"""Video bounds (issue 12, rows 5 and 12): max_pixels applies to every frame, a duration and frame cap apply
from the container before decoding, and the sampled frames held at once are bounded by bytes.

The clips are generated here (OpenCV's MPEG-4 writer, a few seconds each). Memory is measured in a child
process (peak RSS, reset just before the analysis). The old code analysed 40 frames of 6000x6000 with 32 held
at once (+4.2 GB) and ran 6 h of 32x32 video to the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.core.errors import EmotionError


def _clip(path: Path, size: tuple[int, int], frames: int, fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    frame = np.full((size[1], size[0], 3), 90, np.uint8)
    for _ in range(frames):
        frame[:8, :8] = rng.integers(0, 255, (8, 8, 3))  # a little change per frame
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch):
    from emotion.settings import get_settings

    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def test_frames_over_max_pixels_are_refused_from_the_container(tmp_path: Path, model_dir: Path):
    from emotion.core.video import analyze_video_file

    clip = _clip(tmp_path / "big.mp4", (7000, 7000), 2)  # 49 MP frames, over the default 40 MP
    start = time.perf_counter()
    with pytest.raises(EmotionError) as info:
        analyze_video_file(clip, fps=None)
    assert time.perf_counter() - start < 2
    assert info.value.code == "video_too_large" and info.value.status == 413 and "pixels" in info.value.message


def test_duration_and_frame_caps_apply_before_decoding(tmp_path: Path, model_dir: Path, settings_env):
    from emotion.core.video import analyze_video_file
    from emotion.settings import get_settings

    clip = _clip(tmp_path / "long.mp4", (32, 32), 250)  # 10 s
    settings_env.setenv("EMOTION_VIDEO_MAX_DURATION_S", "5")
    get_settings.cache_clear()
    with pytest.raises(EmotionError) as info:
        analyze_video_file(clip, fps=None)
    assert info.value.code == "video_too_large" and "min" in info.value.message
    settings_env.setenv("EMOTION_VIDEO_MAX_DURATION_S", "3600")
    settings_env.setenv("EMOTION_VIDEO_MAX_FRAMES", "100")
    get_settings.cache_clear()
    with pytest.raises(EmotionError) as info:
        analyze_video_file(clip, fps=None)
    assert info.value.code == "video_too_large" and "250 frames" in info.value.message


def test_the_caps_also_hold_while_reading():
    from emotion.core.video import VideoTooLarge, _check_length
    from emotion.settings import get_settings

    settings = get_settings()
    _check_length(settings.video_max_frames - 1, 1000.0)
    with pytest.raises(VideoTooLarge):
        _check_length(settings.video_max_frames, 1000.0)  # a container that under-declared its length
    with pytest.raises(VideoTooLarge):
        _check_length(10, settings.video_max_duration_s * 1000 + 1)




def test_frames_held_at_once_are_bounded_by_bytes(tmp_path: Path):
    """Sampled frames in flight are analysis-size frames (at most 1920 px and a 16:9 frame's area), so any
    accepted frame size holds batch_frames of them; larger ones (4500x4500: 61 MB) fewer."""
    from emotion.core.video import VideoOptions, _check_bounds, scaled_size

    assert scaled_size(6000, 6000, 1920) == (1440, 1440)
    assert scaled_size(7680, 4320, 1920) == (1920, 1080)
    assert scaled_size(1280, 720, 1920) == (1280, 720)
    for size, side, expected in (((1920, 1080), 1920, 8), ((6000, 6000), 1920, 8), ((6000, 6000), 6000, 4)):
        clip = _clip(tmp_path / f"{size[0]}.mp4", size, 1)
        cap = cv2.VideoCapture(str(clip))
        try:
            assert _check_bounds(cap, VideoOptions(), side) == expected, size
        finally:
            cap.release()


_CHILD = r"""
import json, sys, tempfile
from pathlib import Path
import av
from emotion.core.video import analyze_video_file
def rss(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field)) * 1024
with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp) / "out.mp4"
    analyze_video_file(Path(sys.argv[1]), fps=None, annotate_path=out)  # warm: models loaded, pools created
    open("/proc/self/clear_refs", "w").write("5")
    base = rss("VmRSS")
    result = analyze_video_file(Path(sys.argv[1]), fps=None, annotate_path=out)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        size = [stream.width, stream.height]
print(json.dumps({"peak": rss("VmHWM") - base, "frames": result.video.frames_processed, "annotated": size,
                  "video": [result.video.width, result.video.height]}))
"""


def test_a_36_mp_video_is_analysed_and_annotated_in_bounded_memory(tmp_path: Path, model_dir: Path):
    """6000x6000 frames (36 MP, under max_pixels) are downscaled as they are decoded and the annotated video is
    written at 1440x1440: before, 40 such frames grew a job's RSS by 3.3 GB."""
    clip = _clip(tmp_path / "square.mp4", (6000, 6000), 6)
    env = dict(os.environ, EMOTION_VIDEO_WORKERS="2")
    done = subprocess.run([sys.executable, "-c", _CHILD, str(clip)], capture_output=True, text=True, env=env,
                          timeout=600, check=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["frames"] == 6 and report["video"] == [6000, 6000]
    assert report["annotated"] == [1440, 1440]
    assert report["peak"] < 1_000_000_000, report
