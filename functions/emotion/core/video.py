"""Video analysis: stream frames, sample by container timestamps, detect + classify frames in parallel, track
faces, link the tracks of one person by identity, and optionally write an annotated H.264 MP4.

Frames are read one at a time with OpenCV (``grab`` for every frame, ``retrieve`` only for the frames that
are used), so memory does not grow with the video's length: at most ``batch_frames`` sampled frames are held
at once, and a closed track keeps only its mean identity embedding and a small JPEG of its face. The
per-track timelines are kept as compact numpy rows and become the result models only at the end.

Output: video metadata, ``tracks`` (one per continuous run of one face, each with its ``person_id``),
``persons`` (the tracks of one person joined across occlusions, exits and cuts by their SFace embeddings;
a face too small, dark or blurred to identify keeps its own person, ``identified: false``), a whole-video
summary and per-stage timings. Undecodable frames are skipped and counted; a file that is not a video
raises :class:`~emotion.core.errors.UnsupportedVideo`.

The annotated video is written in a second pass once persons are known, so its labels are the persons'
ids: H.264 (``avc1``, yuv420p, ``+faststart``) through PyAV, which browsers play inline.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from pydantic import BaseModel, Field

from emotion.core.annotate import COLOURS, draw_face
from emotion.core.engine import DetectOptions, Engine, default_options, get_engine
from emotion.core.errors import BadParameter, EmotionError, UnsupportedVideo
from emotion.core.identity import FaceEmbedder, get_embedder
from emotion.core.imageio import sniff_format
from emotion.core.results import Box, EmotionLabel, ModelsUsed
from emotion.core.tracking import Appearance, FaceTracker, Track, link_tracks
from emotion.settings import get_settings

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float], None]


# ----------------------------------------------------------------------------------------------- results


class VideoInfo(BaseModel):
    width: int
    height: int
    fps: float = Field(description="the container's frame rate")
    frame_count: int = Field(description="frames declared by the container (may be approximate)")
    duration_ms: float = Field(description="timestamp of the last frame read + one frame interval")
    codec: str
    sample_fps: float | None = Field(description="frames sampled per second; null = every frame")
    frames_read: int = Field(description="frames decoded from the stream")
    frames_processed: int = Field(description="frames that went through detection and classification")
    frames_corrupt: int = Field(description="frames that could not be decoded and were skipped")
    shot_changes: int = Field(0, description="hard cuts detected between processed frames (tracks end at a cut)")


class TimelinePoint(BaseModel):
    t_ms: float = Field(description="container timestamp of the frame, ms")
    frame: int = Field(description="index of the frame in the stream")
    box: Box
    confidence: float
    emotions: dict[EmotionLabel, float]
    dominant_emotion: EmotionLabel


class EmotionSummary(BaseModel):
    samples: int = Field(description="timeline points summarised")
    mean_emotions: dict[EmotionLabel, float] = Field(description="mean probability per emotion over the samples")
    dominant_emotion: EmotionLabel | None = Field(description="emotion with the highest mean probability")
    dominant_share: float = Field(description="share of samples whose own dominant emotion is this one")


class VideoTrack(BaseModel):
    id: int
    person_id: int = Field(description="the person (``persons[].id``) this run of a face belongs to")
    identified: bool = Field(description="some of this track's faces were good enough to identify; false when "
                             "every face was too small, dark, blurred or turned, and then it is never linked")
    first_ms: float
    last_ms: float
    timeline: list[TimelinePoint] = Field(description="one point per processed frame the face was seen on, by time")
    summary: EmotionSummary


class VideoPerson(BaseModel):
    id: int = Field(description="1..P, the persons' order: by how much of the video each fills (screen time x "
                    "face size), largest first")
    track_ids: list[int] = Field(description="the tracks joined into this person, by time")
    identified: bool = Field(description="false: a face that could not be identified, kept as its own person "
                             "rather than merged on a guess")
    first_ms: float
    last_ms: float
    face: str | None = Field(description="a small JPEG of the person's best face, base64")
    screen_ms: float = Field(0.0, description="how long the person's face is on screen: each track's span plus "
                             "one sampling interval, summed")
    face_size: int = Field(0, description="median face size (the box's larger side), source pixels")
    background: bool = Field(False, description="a face in the background (an audience, passers-by): it fills "
                             "under a quarter as much of the video as the most prominent person, or its face is "
                             "under 3 % of the frame's short side; a page may fold these away")
    timeline: list[TimelinePoint] = Field(description="the tracks' timelines joined, by time")
    summary: EmotionSummary


class VideoSummary(EmotionSummary):
    tracks: int
    persons: int
    frames_with_faces: int


class VideoModelsUsed(ModelsUsed):
    identity: str | None = Field(None, description="the face identity model that linked tracks into persons")


class VideoResult(BaseModel):
    video: VideoInfo
    tracks: list[VideoTrack]
    persons: list[VideoPerson]
    summary: VideoSummary
    models: VideoModelsUsed
    timings_ms: dict[str, float] = Field(description="per stage: decode, detect, classify, track (with identity), "
                                         "annotate (the second pass that writes the video), total; detect and "
                                         "classify are summed over the worker threads, so they can add up to "
                                         "more than total")
    frames_per_second: float = Field(description="processed frames per wall-clock second")


# ----------------------------------------------------------------------------------------------- pipeline


@dataclass
class VideoOptions:
    fps: float | None = 5.0  # None = every frame
    batch_frames: int = 8  # sampled frames in flight before the tracker takes their results (bounds memory)
    iou_threshold: float = 0.25
    max_gap_ms: float = 1000.0  # a track survives this long without a detection
    min_hits: int = 2  # tracks seen on fewer processed frames are dropped (single false detections)
    min_track_score: float = 0.7  # tracks whose mean detector score is lower are dropped (look-alikes)
    max_consecutive_errors: int = 50  # undecodable frames in a row before the rest of the stream is given up
    workers: int = 0  # frames analysed at once (onnxruntime releases the GIL); 0 = the video_workers setting
    identity: bool = True  # link tracks into persons with SFace (False: one person per track)
    min_face: int | None = None  # faces smaller than this (px of the source, the box's smaller side) are not
    # tracked; None: the min_face setting
    # Tracks whose mean embeddings agree this well are one person. Per tracklet, same-person pairs scored
    # 0.59-0.90 and different people at most 0.39 on the dev clips (MANIFEST section 4).
    link_threshold: float = 0.45


def _workers(options: VideoOptions) -> int:
    return options.workers or get_settings().video_workers or os.cpu_count() or 1


_FrameAnalysis = tuple[np.ndarray, np.ndarray, float, float]  # detections, probabilities, detect ms, classify ms


@dataclass
class _Pending:
    """A sampled frame whose analysis runs on the workers; the tracker takes it in time order."""

    index: int
    t_ms: float
    frame: np.ndarray | None  # dropped once the tracker has used it
    analysis: Future[_FrameAnalysis]


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {"decode": 0.0, "detect": 0.0, "classify": 0.0, "track": 0.0, "annotate": 0.0}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.ms[stage] += (now - since) * 1000
        return now


def _open(path: Path) -> cv2.VideoCapture:
    """The video at ``path`` in OpenCV's FFmpeg reader; for large frames with fewer decoder threads (see
    :func:`_decoder_threads`)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise UnsupportedVideo(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if not head:
        raise UnsupportedVideo("the file is empty")
    if sniff_format(head) is not None:
        raise UnsupportedVideo("this is a still image, not a video; analyse it as an image")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    threads = _decoder_threads(cap) if cap.isOpened() else 0
    if threads:
        cap.release()
        cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, threads])
    if not cap.isOpened():
        cap.release()
        raise UnsupportedVideo("not a video OpenCV/FFmpeg can decode (expected e.g. MP4, MOV, AVI, WebM, MKV)")
    return cap


def _fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else "unknown"


class VideoAnalyzer:
    """Runs one video through the engine, a :class:`FaceTracker` and (optionally) identity linking."""

    def __init__(self, engine: Engine, detect: DetectOptions, options: VideoOptions,
                 embedder: FaceEmbedder | None = None):
        if options.fps is not None and not 0 < options.fps <= 1000:
            raise BadParameter("fps must be > 0 (or 'all' for every frame)")
        if options.min_face is not None and options.min_face < 0:
            raise BadParameter("min_face must be >= 0 pixels")
        self.engine = engine
        self.detect_options = detect
        self.options = options
        self.embedder = embedder if options.identity else None
        self._pool: ThreadPoolExecutor | None = None
        # Frames are analysed (detected, classified, tracked, identified) at the detector's working size: larger
        # frames are downscaled as they are decoded, and boxes are scaled back to source pixels in the result.
        self._analysis_side = detect.max_side

    def run(self, path: Path, annotate_path: Path | None = None, progress: bool = False,
            on_progress: ProgressCallback | None = None) -> VideoResult:
        start = time.perf_counter()
        cap = _open(path)
        try:
            self._batch = _check_bounds(cap, self.options, self._analysis_side)
        except EmotionError:
            cap.release()
            raise
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        analysis_width = scaled_size(width, int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), self._analysis_side)[0]
        min_face = self.detect_options.min_face if self.options.min_face is None else self.options.min_face
        if width:  # asked for in source pixels; detection sees analysis pixels
            min_face = round(min_face * analysis_width / width)
        self.detect_options = dataclasses.replace(self.detect_options, min_face=min_face)
        workers = min(_workers(self.options), self._batch)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="video") if workers > 1 else None
        try:
            result = self._run(cap, start, progress, on_progress)
        finally:
            cap.release()
            if self._pool is not None:
                self._pool.shutdown()
        if annotate_path is not None:
            t = time.perf_counter()
            write_annotated(path, result, annotate_path)
            result.timings_ms["annotate"] = round((time.perf_counter() - t) * 1000, 1)
            result.timings_ms["total"] = round((time.perf_counter() - start) * 1000, 1)
        if on_progress is not None:
            on_progress(1.0)
        return result

    def _run(self, cap: cv2.VideoCapture, start: float, progress: bool,
             on_progress: ProgressCallback | None) -> VideoResult:
        opts = self.options
        src_fps = _fps(cap)
        declared = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        codec = _fourcc(cap)
        step_ms = None if opts.fps is None else 1000.0 / opts.fps
        frame_ms = 1000.0 / src_fps

        appearance = None
        if self.embedder is not None:
            appearance = Appearance(self.embedder.embed_aligned, self._pool.submit if self._pool is not None else None)
        tracker = FaceTracker(opts.iou_threshold, opts.max_gap_ms, min_hits=opts.min_hits,
                              min_track_score=opts.min_track_score, appearance=appearance)
        shots = ShotChangeDetector()
        self.cuts = 0
        timer = _Timer()
        pending: list[_Pending] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=declared or None, unit="frame", desc="video", leave=False)

        read = processed = corrupt = 0
        to_source = 0.0  # analysis pixels -> source pixels
        last_t = -1.0
        next_due = 0.0
        last_report = 0.0
        with_faces = 0

        def flush() -> None:
            nonlocal processed, with_faces
            processed += len(pending)
            with_faces += self._process(pending, tracker, shots, timer)
            pending.clear()

        try:
            for index, t_ms, frames_corrupt, frame_source in _frames(cap, declared, frame_ms, opts,
                                                                     self._analysis_side, timer):
                corrupt += frames_corrupt
                if bar is not None:
                    bar.update(1 + frames_corrupt)
                if on_progress is not None and declared and time.perf_counter() - last_report > 1.0:
                    last_report = time.perf_counter()
                    on_progress(min(0.99, (index + 1) / declared))
                _check_length(index, t_ms)
                sampled = step_ms is None or t_ms + 0.5 >= next_due
                if not sampled:
                    read += 1
                    last_t = t_ms
                    continue
                t = time.perf_counter()
                frame = frame_source()
                timer.add("decode", t)
                if frame is None:
                    corrupt += 1
                    continue
                if not width or not height:  # the container did not say: as decoded
                    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) or frame.shape[1]
                    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) or frame.shape[0]
                if not to_source:
                    to_source = width / frame.shape[1]
                read += 1
                last_t = t_ms
                if step_ms is not None:
                    next_due += step_ms
                    if next_due <= t_ms:
                        next_due = t_ms + step_ms
                # Sampled frames start on the workers now, while the next frames are decoded.
                pending.append(_Pending(index, t_ms, frame, self._submit(frame)))
                if len(pending) >= self._batch:
                    flush()
            flush()
        finally:
            if bar is not None:
                bar.close()

        if read == 0:
            raise UnsupportedVideo("the file opened as a video but no frame could be decoded")
        t = time.perf_counter()
        tracks = tracker.finish()
        groups = link_tracks(tracks, opts.link_threshold) if appearance is not None else [[tr] for tr in tracks]
        labels = self.engine.classifier.labels
        video_tracks, persons = _tracks_and_persons(groups, labels, to_source or 1.0, step_ms or frame_ms,
                                                    min(width, height))
        timer.add("track", t)
        total_ms = (time.perf_counter() - start) * 1000
        timings = {k: round(v, 1) for k, v in timer.ms.items()}
        timings["total"] = round(total_ms, 1)
        info = VideoInfo(
            width=width, height=height, fps=round(src_fps, 3), frame_count=declared or read + corrupt,
            duration_ms=round(last_t + frame_ms, 1), codec=codec, sample_fps=opts.fps, frames_read=read,
            frames_processed=processed, frames_corrupt=corrupt, shot_changes=self.cuts,
        )
        if corrupt:
            log.warning("video: %d undecodable frames skipped", corrupt)
        if appearance is not None:
            log.info("video: %d tracks, %d persons, %d associations vetoed by appearance",
                     len(tracks), len(persons), tracker.vetoes)
        return VideoResult(
            video=info,
            tracks=video_tracks,
            persons=persons,
            summary=_video_summary(tracks, labels, with_faces, len(persons)),
            models=VideoModelsUsed(**self.engine.models_used().model_dump(),
                                   identity=self.embedder.version if self.embedder is not None else None),
            timings_ms=timings,
            frames_per_second=round(processed / max(total_ms / 1000, 1e-9), 2),
        )

    def _process(self, sampled: list[_Pending], tracker: FaceTracker, shots: ShotChangeDetector,
                 timer: _Timer) -> int:
        """Collect the sampled frames' detections and probabilities (computed on the workers) and update the
        tracker in time order. Returns frames with faces."""
        with_faces = 0
        for item in sampled:
            faces, probs, detect_ms, classify_ms = item.analysis.result()
            timer.ms["detect"] += detect_ms
            timer.ms["classify"] += classify_ms
            t = time.perf_counter()
            with_faces += bool(len(faces))
            if item.frame is not None and shots.is_cut(item.frame):
                tracker.cut()
                self.cuts += 1
            tracker.update(item.t_ms, item.index, faces, probs, item.frame)
            item.frame = None  # the pixels are no longer needed
            timer.add("track", t)
        return with_faces

    def _submit(self, frame: np.ndarray) -> Future[_FrameAnalysis]:
        if self._pool is not None:
            return self._pool.submit(self._analyse_frame, frame)
        done: Future[_FrameAnalysis] = Future()
        done.set_result(self._analyse_frame(frame))
        return done

    def _analyse_frame(self, frame: np.ndarray) -> _FrameAnalysis:
        """Faces and their class probabilities on one frame, with the detect and classify times (ms)."""
        start = time.perf_counter()
        faces = self.engine.detect(frame, self.detect_options)
        detected = time.perf_counter()
        probs = self.engine.classifier.classify(frame, faces)
        return faces, probs, (detected - start) * 1000, (time.perf_counter() - detected) * 1000


class VideoTooLarge(EmotionError):
    """Frames over ``max_pixels``, or a video longer than ``video_max_duration_s`` / ``video_max_frames``."""

    code = "video_too_large"
    status = 413


def _check_bounds(cap: cv2.VideoCapture, opts: VideoOptions, analysis_side: int) -> int:
    """Refuse, from the container before decoding, frames over ``max_pixels`` and videos over the duration
    or frame caps; return the sampled frames to hold at once, ``batch_frames`` bounded by ``video_buffer_bytes``
    (frames in flight are at most ``analysis_side`` on their long side)."""
    settings = get_settings()
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    if width * height > settings.max_pixels:
        raise VideoTooLarge(f"video frames are {width}x{height} = {width * height:,} pixels; the limit is "
                            f"{settings.max_pixels:,} pixels per frame")
    declared = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
    if declared > settings.video_max_frames:
        raise VideoTooLarge(f"the video declares {declared:,} frames; the limit is {settings.video_max_frames:,}")
    if declared / _fps(cap) > settings.video_max_duration_s:
        raise VideoTooLarge(f"the video lasts about {declared / _fps(cap) / 60:,.0f} min; the limit is "
                            f"{settings.video_max_duration_s / 60:,.0f} min")
    analysis_width, analysis_height = scaled_size(width, height, analysis_side)
    frame_bytes = max(1, analysis_width * analysis_height * 3)
    return max(1, min(opts.batch_frames, settings.video_buffer_bytes // frame_bytes))


def _decoder_threads(cap: cv2.VideoCapture) -> int:
    """Decoder threads for this stream: FFmpeg's choice (0) unless its frames are large, then as many as keep
    the decoder's full-size frames in flight (one a thread, 1.5 bytes a pixel) within ``video_buffer_bytes``."""
    width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    per_frame = max(1, int(width * height * 1.5))
    fit = get_settings().video_buffer_bytes // per_frame
    return 0 if fit >= (os.cpu_count() or 1) else max(1, int(fit))


def _check_frame(frame: np.ndarray) -> None:
    """The pixel cap on what is really decoded (a container may under-declare its frame size)."""
    settings = get_settings()
    if frame.shape[0] * frame.shape[1] > settings.max_pixels:
        raise VideoTooLarge(f"a frame is {frame.shape[1]}x{frame.shape[0]} pixels; the limit is "
                            f"{settings.max_pixels:,} pixels per frame")


def _check_length(index: int, t_ms: float) -> None:
    """The frame and duration caps on what is really read (a container may under-declare its length)."""
    settings = get_settings()
    if index >= settings.video_max_frames or t_ms > settings.video_max_duration_s * 1000:
        raise VideoTooLarge(f"the video runs past the limit of {settings.video_max_frames:,} frames or "
                            f"{settings.video_max_duration_s / 60:,.0f} min")


def _fps(cap: cv2.VideoCapture) -> float:
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    return src_fps if np.isfinite(src_fps) and 0 < src_fps <= 1000 else 25.0


FrameSource = Callable[[], np.ndarray | None]


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled down, aspect kept, so that the long side is at most ``max_side`` and the area at
    most a 16:9 frame's of that width (1920: 1920x1080, 2.07 MP; a square frame: 1440x1440). Never up."""
    scale = min(max_side / max(width, height, 1), (max_side * max_side * 9 / 16 / max(1, width * height)) ** 0.5)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _frames(cap: cv2.VideoCapture, declared: int, frame_ms: float, opts: VideoOptions, max_side: int,
            timer: _Timer | None = None):
    """(index, t_ms, corrupt frames skipped before it, a function that decodes its pixels or None at a bad
    frame) for each frame of the stream: ``grab`` reads every frame, pixels are converted only when asked.

    Pixels come at most ``max_side`` on their long side: a larger frame is converted into one reused
    full-size buffer and downscaled at once (OpenCV's reader cannot scale in the decoder), so a 36 MP stream
    holds one full-size BGR frame, not one per frame in flight.

    Times are container timestamps, made increasing when the container's are missing or out of order.
    Failed grabs followed by a good frame count as corrupt frames; after ``max_consecutive_errors`` in a row
    (or at the declared end) the stream is over. The annotation pass uses the same function, so its frames
    carry the same indices and times as the analysis.
    """
    index = -1
    read = failed = 0
    last_t = -1.0

    full: list[np.ndarray | None] = [None]  # the reused full-size buffer, for frames that are downscaled

    def pixels() -> np.ndarray | None:
        ok, frame = cap.retrieve(full[0])
        if not ok or frame is None or not frame.size or frame.ndim != 3:
            return None
        _check_frame(frame)
        height, width = frame.shape[:2]
        size = scaled_size(width, height, max_side)
        if size == (width, height):
            full[0] = None  # handed on as it is: the next frame needs its own array
            return frame
        full[0] = frame
        return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)

    while True:
        t = time.perf_counter()
        ok = cap.grab()
        if timer is not None:
            timer.add("decode", t)
        if not ok:
            failed += 1
            if declared and index + failed < declared - 1 and failed <= opts.max_consecutive_errors:
                continue
            return
        index += failed + 1
        skipped, failed = failed, 0
        t_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
        if not np.isfinite(t_ms) or t_ms < 0 or (read and t_ms <= last_t):
            t_ms = max(last_t + frame_ms, index * frame_ms) if read else index * frame_ms
        read += 1
        last_t = t_ms
        yield index, t_ms, skipped, pixels


class ShotChangeDetector:
    """Hard cuts between consecutive processed frames, from tiny thumbnails.

    A cut needs both a colour change (HSV histogram correlation under ``min_correlation``) and a layout
    change (mean absolute difference of 16x9 grey thumbnails over ``min_difference`` grey levels); either
    alone also fires on pans and fast motion. Tracks end at a cut: after one, a face at the same place is
    usually somebody else.
    """

    def __init__(self, min_correlation: float = 0.9, min_difference: float = 18.0):
        self.min_correlation = min_correlation
        self.min_difference = min_difference
        self._previous: tuple[np.ndarray, np.ndarray] | None = None

    def is_cut(self, frame: np.ndarray) -> bool:
        small = cv2.resize(frame, (64, 36), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [8, 4, 4], [0, 180, 0, 256, 0, 256])
        hist = cv2.normalize(hist, hist).flatten()
        grey = cv2.cvtColor(cv2.resize(small, (16, 9), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        grey = grey.astype(np.float32)
        previous, self._previous = self._previous, (hist, grey)
        if previous is None:
            return False
        correlation = float(cv2.compareHist(previous[0], hist, cv2.HISTCMP_CORREL))
        difference = float(np.abs(previous[1] - grey).mean())
        return correlation < self.min_correlation and difference > self.min_difference


def _summary(probs: np.ndarray, labels: list[str]) -> dict:
    if len(probs) == 0:
        return {"samples": 0, "mean_emotions": {}, "dominant_emotion": None, "dominant_share": 0.0}
    mean = probs.mean(axis=0)
    k = int(np.argmax(mean))
    share = float(np.mean(np.argmax(probs, axis=1) == k))
    ordered = sorted(zip(labels, mean.tolist(), strict=True), key=lambda kv: -kv[1])
    return {"samples": len(probs), "mean_emotions": {label: round(v, 4) for label, v in ordered},
            "dominant_emotion": labels[k], "dominant_share": round(share, 4)}


def _rows(tracks: list[Track], labels: list[str], to_source: float = 1.0) -> np.ndarray:
    """The tracks' rows by time, their boxes scaled from analysis pixels to the source's by ``to_source``."""
    parts = [np.stack(t.rows) for t in tracks if t.rows]
    rows = np.concatenate(parts) if parts else np.zeros((0, 7 + len(labels)), dtype=np.float32)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    if to_source != 1.0:
        rows[:, 2:6] *= to_source
    return rows


def _timeline(rows: np.ndarray, labels: list[str]) -> list[TimelinePoint]:
    points = []
    for row in rows:
        probs = row[7:].astype(np.float64)
        emotions = sorted(zip(labels, probs.tolist(), strict=True), key=lambda kv: -kv[1])
        x, y, w, h = (int(round(float(v))) for v in row[2:6])
        points.append(TimelinePoint(
            t_ms=round(float(row[0]), 1), frame=int(row[1]),
            box=Box(x=max(0, x), y=max(0, y), width=max(0, w), height=max(0, h)),
            confidence=round(float(row[6]), 4),
            emotions={cast(EmotionLabel, label): round(p, 4) for label, p in emotions},
            dominant_emotion=cast(EmotionLabel, emotions[0][0]),
        ))
    return points


def _face_b64(tracks: list[Track]) -> str | None:
    """The best face of the person's tracks (by the rank :class:`Appearance` gave it), as base64 JPEG."""
    faces = [t.face for t in tracks if t.face is not None and isinstance(t.face[1], bytes)]
    if not faces:
        return None
    best = max(faces, key=lambda face: face[0])[1]
    assert isinstance(best, bytes)
    return base64.b64encode(best).decode("ascii")


# A person is in the background when it fills under this share of what the most prominent person fills
# (screen time x face size), or when its face is under this share of the frame's short side.
BACKGROUND_SHARE = 0.25
BACKGROUND_FACE = 0.03


def _tracks_and_persons(groups: list[list[Track]], labels: list[str], to_source: float, step_ms: float,
                        short_side: int) -> tuple[list[VideoTrack], list[VideoPerson]]:
    """Result models of the tracks (by id) and of the persons, ordered by how much of the video each fills
    (screen time x median face size, largest first; ids follow that order), background faces marked. Boxes in
    source pixels; ``step_ms``: the sampling interval."""
    tracks: list[VideoTrack] = []
    persons: list[VideoPerson] = []
    screen = [sum(t.last_ms - t.first_ms + step_ms for t in group) for group in groups]
    sizes = [float(np.median(np.maximum(rows[:, 4], rows[:, 5]))) if len(rows := _rows(group, labels, to_source))
             else 0.0 for group in groups]
    fills = [a * b for a, b in zip(screen, sizes, strict=True)]
    order = sorted(range(len(groups)), key=lambda i: (-fills[i], groups[i][0].first_ms))
    most = max(fills, default=0.0)
    for person_id, g in enumerate(order, start=1):
        group = groups[g]
        for track in group:
            rows = _rows([track], labels, to_source)
            tracks.append(VideoTrack(
                id=track.id, person_id=person_id, identified=track.identified, first_ms=round(track.first_ms, 1),
                last_ms=round(track.last_ms, 1), timeline=_timeline(rows, labels),
                summary=EmotionSummary(**_summary(rows[:, 7:], labels)),
            ))
        rows = _rows(group, labels, to_source)
        persons.append(VideoPerson(
            id=person_id, track_ids=[t.id for t in group], identified=all(t.identified for t in group),
            first_ms=round(min(t.first_ms for t in group), 1), last_ms=round(max(t.last_ms for t in group), 1),
            face=_face_b64(group), screen_ms=round(screen[g], 1), face_size=round(sizes[g]),
            background=fills[g] < BACKGROUND_SHARE * most or sizes[g] < BACKGROUND_FACE * short_side,
            timeline=_timeline(rows, labels), summary=EmotionSummary(**_summary(rows[:, 7:], labels)),
        ))
    tracks.sort(key=lambda t: t.id)
    return tracks, persons


def _video_summary(tracks: list[Track], labels: list[str], with_faces: int, persons: int) -> VideoSummary:
    rows = _rows(tracks, labels)
    return VideoSummary(tracks=len(tracks), persons=persons, frames_with_faces=with_faces,
                        **_summary(rows[:, 7:], labels))


# ----------------------------------------------------------------------------------------------- annotated video


class _Boxes:
    """Each track's box at any time: linear between its processed frames, none where it was not seen."""

    def __init__(self, result: VideoResult):
        step = 1000.0 / result.video.sample_fps if result.video.sample_fps else 1000.0 / max(result.video.fps, 1)
        self.hold = 0.75 * step  # a box stays this long after its last point (until the next sample is due)
        self.max_gap = 1.6 * step  # a longer gap between points: the face was not seen in between
        self.tracks = []
        for track in result.tracks:
            t = np.array([p.t_ms for p in track.timeline])
            boxes = np.array([[p.box.x, p.box.y, p.box.width, p.box.height] for p in track.timeline], dtype=float)
            self.tracks.append((track, t, boxes))

    def at(self, t_ms: float) -> list[tuple[VideoTrack, np.ndarray, TimelinePoint]]:
        shown = []
        for track, times, boxes in self.tracks:
            if t_ms < times[0] - 1 or t_ms > times[-1] + self.hold:
                continue
            i = int(np.searchsorted(times, t_ms, side="right")) - 1  # the last point at or before t
            if i < 0:
                i = 0
            if i + 1 < len(times) and times[i + 1] - times[i] <= self.max_gap and t_ms > times[i]:
                w = (t_ms - times[i]) / (times[i + 1] - times[i])
                box = boxes[i] * (1 - w) + boxes[i + 1] * w
            elif t_ms - times[i] <= self.hold:
                box = boxes[i]
            else:
                continue
            shown.append((track, box, track.timeline[i]))
        return shown


def annotated_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The annotated video's frame size: the source's scaled to at most ``max_side`` on its long side, each
    side rounded down to an even number (4:2:0 needs even ones; an odd source side loses a pixel)."""
    scaled = scaled_size(width, height, max_side)
    return max(2, scaled[0] // 2 * 2), max(2, scaled[1] // 2 * 2)


def write_annotated(source: Path, result: VideoResult, out: Path, crf: int = 23, max_side: int | None = None) -> None:
    """The source video with each person's box, id and dominant emotion, as a browser-playable MP4.

    H.264 (libx264 in PyAV's wheels, ``avc1`` in the MP4), yuv420p, ``+faststart`` (the index first, so a
    browser starts playing before the whole file has arrived), at the source frame rate, and at the source
    size up to ``max_side`` on the long side (default: the ``video_annotate_max_side`` setting, 1920; odd
    sizes are cropped by a pixel). The encoder's own buffers are bounded (its lookahead and frame threads hold
    frames of the output size). Frames are decoded the same way as for the analysis, so their indices and
    times match the result.
    """
    import av  # the annotation writer only

    side = max_side or get_settings().video_annotate_max_side
    cap = _open(source)
    src_fps = _fps(cap)
    boxes = _Boxes(result)
    labels = {t.id: t.person_id for t in result.tracks}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    size = annotated_size(result.video.width, result.video.height, side)
    scaled = scaled_size(result.video.width, result.video.height, side)
    to_output = scaled[0] / max(1, result.video.width)  # source pixels -> output pixels
    try:
        with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
            stream = container.add_stream("libx264", rate=Fraction(src_fps).limit_denominator(1001))
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            # veryfast: about 2x the speed of the default preset here for a file a few % larger. Its lookahead
            # (10 frames) and frame threads (x264's own choice, 1.5 per core, but at most 8) bound the frames
            # the encoder holds.
            stream.options = {"crf": str(crf), "preset": "veryfast", "rc-lookahead": "10",
                              "threads": str(min(8, max(1, (os.cpu_count() or 1) * 3 // 2)))}
            for _index, t_ms, _skipped, pixels in _frames(cap, result.video.frame_count, 1000.0 / src_fps,
                                                          VideoOptions(), side):
                frame = pixels()
                if frame is None:
                    continue
                frame = np.ascontiguousarray(frame[: size[1], : size[0]]) if frame.shape[1::-1] != size else frame
                if frame.shape[1::-1] != size:  # a stream whose frames change size: keep the first size
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
                _draw(frame, boxes.at(t_ms), labels, to_output)
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        os.replace(tmp, out)
    except av.FFmpegError as exc:
        raise BadParameter(f"cannot write an H.264 MP4 video to {out}: {exc}") from exc
    finally:
        cap.release()
        tmp.unlink(missing_ok=True)


def _draw(frame: np.ndarray, shown: list[tuple[VideoTrack, np.ndarray, TimelinePoint]],
          person_of: dict[int, int], scale: float = 1.0) -> None:
    height, width = frame.shape[:2]
    unit = max(1.0, max(height, width) / 800.0)
    for track, box, point in shown:
        x, y, w, h = (int(round(v * scale)) for v in box)
        emotion = point.dominant_emotion
        text = f"P{person_of[track.id]} {emotion} {point.emotions[emotion] * 100:.0f}%"
        draw_face(frame, x, y, w, h, text, COLOURS.get(emotion, (255, 255, 255)), unit)


def analyze_video_file(path: Path, fps: float | None = None, classifier: str | None = None,
                       annotate_path: Path | None = None, progress: bool = False,
                       on_progress: ProgressCallback | None = None,
                       options: VideoOptions | None = None) -> VideoResult:
    """Track faces through the video at ``path``, link them into persons and classify their emotions over time.

    ``fps``: frames sampled per second by container timestamps (None: every frame). ``annotate_path``:
    write an H.264 MP4 at the source frame rate (and size, up to ``video_annotate_max_side``) showing each
    person's box, id and emotion.
    ``progress``: a tqdm bar on stderr. ``on_progress``: called with the fraction done, about once a second.
    """
    opts = options or VideoOptions()
    opts.fps = fps
    # No rotated retry: frames without a face are common in video, and tracking bridges a missed frame.
    detect = dataclasses.replace(default_options(), max_side=get_settings().video_detect_max_side,
                                 rotated_retry=False)
    # Frames run in parallel on single-threaded sessions: on 2 cores every-frame analysis of the Hamilton clip
    # took 3.7 s this way against 4.4 s with 2-thread sessions and 7.1 s one frame at a time.
    parallel = _workers(opts) > 1
    threads = 1 if parallel else None
    embedder = get_embedder(threads) if opts.identity else None
    analyzer = VideoAnalyzer(get_engine(classifier, threads=threads), detect, opts, embedder)
    return analyzer.run(Path(path), annotate_path, progress, on_progress)
