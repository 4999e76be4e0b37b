"""Video pipeline on the shared clips: sampling by timestamps, tracks, annotated MP4, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.core.errors import BadParameter, UnsupportedVideo
from emotion.core.video import VideoOptions, analyze_video_file


@pytest.fixture(scope="module")
def videos(shared_dir: Path, model_dir: Path) -> Path:
    return shared_dir / "data" / "videos"


def _check_result(result, labels_sum_tol: float = 1e-3) -> None:
    for track in result.tracks:
        times = [p.t_ms for p in track.timeline]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert track.first_ms == times[0] and track.last_ms == times[-1]
        for point in track.timeline:
            assert abs(sum(point.emotions.values()) - 1.0) < labels_sum_tol
            assert point.dominant_emotion == max(point.emotions, key=point.emotions.__getitem__)
        assert track.summary.samples == len(track.timeline)
        assert 0 < track.summary.dominant_share <= 1
    assert [t.id for t in result.tracks] == list(range(1, len(result.tracks) + 1))


def test_every_frame_short_clip_with_annotation(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result = analyze_video_file(videos / "fa_test_video.mp4", fps=None, annotate_path=out)
    assert result.video.frames_read == 5 and result.video.frames_processed == 5
    assert result.video.sample_fps is None and result.video.frames_corrupt == 0
    assert (result.video.width, result.video.height) == (820, 460)
    assert result.tracks, "the clip shows faces"
    _check_result(result)
    assert result.summary.tracks == len(result.tracks)
    assert abs(sum(result.summary.mean_emotions.values()) - 1.0) < 1e-3
    assert {"decode", "detect", "classify", "track", "annotate", "total"} <= set(result.timings_ms)
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (820, 460)
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 23.976) < 0.05
    cap.release()
    json.dumps(result.model_dump())  # serialisable as-is


def test_sampled_clip_tracks_and_annotated_frame_count(videos: Path, tmp_path: Path, artifacts_dir: Path) -> None:
    out = artifacts_dir / "hamilton_annotated.mp4"
    result = analyze_video_file(videos / "fr_short_hamilton_clip.mp4", fps=5.0, annotate_path=out)
    info = result.video
    assert info.frames_read == 275 and info.frames_corrupt == 0
    # 5 fps by container timestamps over 9.18 s: one frame every 200 ms.
    assert 45 <= info.frames_processed <= 47
    assert info.shot_changes == 3  # the clip has three hard cuts
    _check_result(result)
    for track in result.tracks:
        gaps = np.diff([p.t_ms for p in track.timeline])
        assert (gaps <= 1000 + 1).all()
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 275
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 29.97) < 0.05
    cap.release()


def test_corrupt_frames_are_skipped_not_fatal(videos: Path, tmp_path: Path) -> None:
    # A 40-frame MP4 with a run of bytes in the middle overwritten: decodable frames still come out.
    src = cv2.VideoCapture(str(videos / "fr_short_hamilton_clip.mp4"))
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 29.97, (640, 360))
    for _ in range(40):
        ok, frame = src.read()
        writer.write(frame)
    writer.release()
    src.release()
    data = bytearray(clip.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 4000] = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    clip.write_bytes(bytes(data))
    result = analyze_video_file(clip, fps=None)
    assert 0 < result.video.frames_read <= 40
    assert result.video.frames_read + result.video.frames_corrupt <= 40
    # Truncated before the index (mp4v writes the moov atom last): a clear error, not a crash.
    clip.write_bytes(bytes(data[: len(data) * 3 // 4]))
    with pytest.raises(UnsupportedVideo):
        analyze_video_file(clip, fps=None)


@pytest.mark.parametrize("content", [b"", b"hello, this is not a video\n" * 100, b"\xff\xd8\xff\xe0" + b"\0" * 500])
def test_not_a_video_is_a_clear_error(tmp_path: Path, content: bytes, model_dir: Path) -> None:
    path = tmp_path / "input.mp4"
    path.write_bytes(content)
    with pytest.raises(UnsupportedVideo) as err:
        analyze_video_file(path, fps=5.0)
    assert err.value.code == "undecodable_video" and err.value.status == 400


def test_bad_fps(videos: Path) -> None:
    with pytest.raises(BadParameter):
        analyze_video_file(videos / "fa_test_video.mp4", fps=0.0)


def test_serial_and_parallel_frames_give_the_same_tracks(videos: Path) -> None:
    clip = videos / "fr_short_hamilton_clip.mp4"
    a = analyze_video_file(clip, fps=5.0, options=VideoOptions(batch_frames=1, workers=1))
    b = analyze_video_file(clip, fps=5.0, options=VideoOptions(batch_frames=8, workers=4))
    assert len(a.tracks) >= 10  # several shots with several faces each
    assert [len(t.timeline) for t in a.tracks] == [len(t.timeline) for t in b.tracks]
    for ta, tb in zip(a.tracks, b.tracks, strict=True):
        for pa, pb in zip(ta.timeline, tb.timeline, strict=True):
            assert pa.box == pb.box
            assert pa.emotions.keys() == pb.emotions.keys()
            assert all(abs(pa.emotions[k] - pb.emotions[k]) < 1e-3 for k in pa.emotions)


def test_cli_video_writes_json(videos: Path, tmp_path: Path) -> None:
    from emotion.cli import main

    out = tmp_path / "v.json"
    assert main(["video", str(videos / "fa_test_video.mp4"), "--fps", "all", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["video"]["frames_processed"] == 5 and data["tracks"]
