"""Video analysis: stream frames, sample by container timestamps, detect + classify frames in parallel, track faces.

Frames are read one at a time with OpenCV (``grab`` for every frame, ``retrieve`` only for the frames that
are used), so memory does not grow with the video's length: at most ``batch_frames`` sampled frames, plus
up to ``max_pending`` source frames when an annotated video is being written, are held at once. The
per-track timelines are kept as compact numpy rows and become the result models only at the end.

Output: video metadata, ``tracks`` (one per person, with a timeline and a summary), a whole-video
summary and per-stage timings. Undecodable frames are skipped and counted; a file that is not a video
raises :class:`~emotion.core.errors.UnsupportedVideo`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, Field

from emotion.core.annotate import COLOURS, draw_face
from emotion.core.engine import DetectOptions, Engine, default_options, get_engine
from emotion.core.errors import BadParameter, UnsupportedVideo
from emotion.core.imageio import sniff_format
from emotion.core.results import Box, ModelsUsed
from emotion.core.tracking import FaceTracker, Track
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
    emotions: dict[str, float]
    dominant_emotion: str


class EmotionSummary(BaseModel):
    samples: int = Field(description="timeline points summarised")
    mean_emotions: dict[str, float] = Field(description="mean probability per emotion over the samples")
    dominant_emotion: str | None = Field(description="emotion with the highest mean probability")
    dominant_share: float = Field(description="share of samples whose own dominant emotion is this one")


class VideoTrack(BaseModel):
    id: int
    first_ms: float
    last_ms: float
    timeline: list[TimelinePoint] = Field(description="one point per processed frame the face was seen on, by time")
    summary: EmotionSummary


class VideoSummary(EmotionSummary):
    tracks: int
    frames_with_faces: int


class VideoResult(BaseModel):
    video: VideoInfo
    tracks: list[VideoTrack]
    summary: VideoSummary
    models: ModelsUsed
    timings_ms: dict[str, float] = Field(description="per stage: decode, detect, classify, track, annotate, "
                                         "total; detect and classify are summed over the worker threads, so "
                                         "they can add up to more than total")
    frames_per_second: float = Field(description="processed frames per wall-clock second")


# ----------------------------------------------------------------------------------------------- pipeline


@dataclass
class VideoOptions:
    fps: float | None = 5.0  # None = every frame
    batch_frames: int = 8  # sampled frames in flight before the tracker takes their results (bounds memory)
    max_pending: int = 32  # source frames held while annotating
    iou_threshold: float = 0.25
    max_gap_ms: float = 1000.0  # a track survives this long without a detection
    min_hits: int = 2  # tracks seen on fewer processed frames are dropped (single false detections)
    min_track_score: float = 0.7  # tracks whose mean detector score is lower are dropped (look-alikes)
    max_consecutive_errors: int = 50  # undecodable frames in a row before the rest of the stream is given up
    workers: int = 0  # frames analysed at once (onnxruntime releases the GIL); 0 = the video_workers setting


def _workers(options: VideoOptions) -> int:
    return options.workers or get_settings().video_workers or os.cpu_count() or 1


_FrameAnalysis = tuple[np.ndarray, np.ndarray, float, float]  # detections, probabilities, detect ms, classify ms


@dataclass
class _Pending:
    index: int
    t_ms: float
    frame: np.ndarray | None
    sampled: bool
    analysis: Future[_FrameAnalysis] | None = None


class _Timer:
    def __init__(self) -> None:
        self.ms: dict[str, float] = {"decode": 0.0, "detect": 0.0, "classify": 0.0, "track": 0.0, "annotate": 0.0}

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.ms[stage] += (now - since) * 1000
        return now


def _open(path: Path) -> cv2.VideoCapture:
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
    if not cap.isOpened():
        cap.release()
        raise UnsupportedVideo("not a video OpenCV/FFmpeg can decode (expected e.g. MP4, MOV, AVI, WebM, MKV)")
    return cap


def _fourcc(cap: cv2.VideoCapture) -> str:
    code = int(cap.get(cv2.CAP_PROP_FOURCC))
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and text.strip() else "unknown"


class VideoAnalyzer:
    """Runs one video through the engine and a :class:`FaceTracker`."""

    def __init__(self, engine: Engine, detect: DetectOptions, options: VideoOptions):
        if options.fps is not None and not 0 < options.fps <= 1000:
            raise BadParameter("fps must be > 0 (or 'all' for every frame)")
        self.engine = engine
        self.detect_options = detect
        self.options = options
        self._pool: ThreadPoolExecutor | None = None

    def run(self, path: Path, annotate_path: Path | None = None, progress: bool = False,
            on_progress: ProgressCallback | None = None) -> VideoResult:
        start = time.perf_counter()
        cap = _open(path)
        workers = min(_workers(self.options), self.options.batch_frames)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="video") if workers > 1 else None
        try:
            return self._run(cap, start, annotate_path, progress, on_progress)
        finally:
            cap.release()
            if self._pool is not None:
                self._pool.shutdown()

    def _run(self, cap: cv2.VideoCapture, start: float, annotate_path: Path | None, progress: bool,
             on_progress: ProgressCallback | None) -> VideoResult:
        opts = self.options
        src_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
        if not np.isfinite(src_fps) or src_fps <= 0 or src_fps > 1000:
            src_fps = 25.0
        declared = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        width, height = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        codec = _fourcc(cap)
        step_ms = None if opts.fps is None else 1000.0 / opts.fps
        frame_ms = 1000.0 / src_fps

        tracker = FaceTracker(opts.iou_threshold, opts.max_gap_ms, min_hits=opts.min_hits,
                              min_track_score=opts.min_track_score)
        shots = ShotChangeDetector()
        self.cuts = 0
        timer = _Timer()
        writer: cv2.VideoWriter | None = None
        pending: list[_Pending] = []
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=declared or None, unit="frame", desc="video", leave=False)

        index = -1  # index of the latest frame read (or skipped as undecodable)
        read = processed = corrupt = failed_in_a_row = 0
        last_t = -1.0
        next_due = 0.0
        last_report = 0.0
        with_faces = 0

        def flush() -> None:
            nonlocal writer, processed, with_faces
            sampled = [p for p in pending if p.sampled]
            processed += len(sampled)
            with_faces += self._process(sampled, tracker, shots, timer, pending, annotate_path is not None)
            if annotate_path is not None:
                t = time.perf_counter()
                for item in pending:
                    if item.frame is not None:
                        if writer is None:
                            writer = self._writer(annotate_path, src_fps, item.frame)
                        writer.write(self._fit(item.frame, writer_size))
                timer.add("annotate", t)
            pending.clear()

        writer_size = (width, height)
        try:
            while True:
                t = time.perf_counter()
                ok = cap.grab()
                if not ok:
                    failed_in_a_row += 1
                    if declared and index + failed_in_a_row < declared - 1 \
                            and failed_in_a_row <= opts.max_consecutive_errors:
                        continue
                    break
                index += failed_in_a_row + 1
                corrupt += failed_in_a_row  # failures followed by a good frame were bad frames, not the end
                failed_in_a_row = 0
                t_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
                if not np.isfinite(t_ms) or t_ms < 0 or (read and t_ms <= last_t):
                    t_ms = max(last_t + frame_ms, index * frame_ms) if read else index * frame_ms
                sampled = step_ms is None or t_ms + 0.5 >= next_due
                frame = None
                if sampled or annotate_path is not None:
                    ok, frame = cap.retrieve()
                    if not ok or frame is None or frame.size == 0 or frame.ndim != 3:
                        corrupt += 1
                        timer.add("decode", t)
                        continue
                    if not width or not height:
                        height, width = frame.shape[:2]
                        writer_size = (width, height)
                read += 1
                last_t = t_ms
                timer.add("decode", t)
                if sampled and step_ms is not None:
                    next_due += step_ms
                    if next_due <= t_ms:
                        next_due = t_ms + step_ms
                # Sampled frames start on the workers now, while the next frames are decoded.
                analysis = self._submit(frame) if sampled and frame is not None else None
                pending.append(_Pending(index, t_ms, frame, sampled, analysis))
                if sum(p.sampled for p in pending) >= opts.batch_frames or len(pending) >= opts.max_pending:
                    flush()
                if bar is not None:
                    bar.update(1)
                if on_progress is not None and declared and time.perf_counter() - last_report > 1.0:
                    last_report = time.perf_counter()
                    on_progress(min(0.99, (index + 1) / declared))
            flush()
        finally:
            if writer is not None:
                writer.release()
            if bar is not None:
                bar.close()

        if read == 0:
            raise UnsupportedVideo("the file opened as a video but no frame could be decoded")
        tracks = tracker.finish()
        labels = self.engine.classifier.labels
        t = time.perf_counter()
        video_tracks = [_track_model(track, labels) for track in tracks]
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
        return VideoResult(
            video=info,
            tracks=video_tracks,
            summary=_video_summary(tracks, labels, with_faces),
            models=ModelsUsed(detector=self.engine.detector_version, classifier=self.engine.classifier.spec.version),
            timings_ms=timings,
            frames_per_second=round(processed / max(total_ms / 1000, 1e-9), 2),
        )

    def _process(self, sampled: list[_Pending], tracker: FaceTracker, shots: ShotChangeDetector, timer: _Timer,
                 pending: list[_Pending], annotating: bool) -> int:
        """Detect and classify the sampled frames (one per worker at a time), update the tracker in time
        order, and draw the tracks on the pending frames when annotating. Returns frames with faces."""
        classifier = self.engine.classifier
        per_frame: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for p in sampled:
            assert p.analysis is not None  # sampled frames always carry pixels and were submitted
            faces, probs, detect_ms, classify_ms = p.analysis.result()
            per_frame[p.index] = (faces, probs)
            timer.ms["detect"] += detect_ms
            timer.ms["classify"] += classify_ms
        with_faces = 0
        for item in pending:
            if item.sampled:
                t = time.perf_counter()
                faces, probs = per_frame[item.index]
                with_faces += bool(len(faces))
                if item.frame is not None and shots.is_cut(item.frame):
                    tracker.cut()
                    self.cuts += 1
                tracker.update(item.t_ms, item.index, faces, probs)
                timer.add("track", t)
            if annotating and item.frame is not None:
                t = time.perf_counter()
                _draw_tracks(item.frame, tracker, item.t_ms, classifier.labels)
                timer.add("annotate", t)
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

    @staticmethod
    def _writer(path: Path, fps: float, frame: np.ndarray) -> cv2.VideoWriter:
        height, width = frame.shape[:2]
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, (width, height))
        if not writer.isOpened():
            raise BadParameter(f"cannot write an MP4 video to {path}")
        return writer

    @staticmethod
    def _fit(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if (frame.shape[1], frame.shape[0]) != size:
            return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        return frame


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


def _draw_tracks(frame: np.ndarray, tracker: FaceTracker, t_ms: float, labels: list[str]) -> None:
    """Boxes of the tracks visible at ``t_ms`` (moved along their motion between processed frames)."""
    height, width = frame.shape[:2]
    unit = max(1.0, max(height, width) / 800.0)
    for track in tracker.visible():
        probs = track.probabilities
        if probs is None:
            continue
        k = int(np.argmax(probs))
        x, y, w, h = (int(round(v)) for v in track.predict(t_ms))
        text = f"#{track.id} {labels[k]} {probs[k] * 100:.0f}%"
        draw_face(frame, x, y, w, h, text, COLOURS.get(labels[k], (255, 255, 255)), unit)


def _summary(probs: np.ndarray, labels: list[str]) -> dict:
    if len(probs) == 0:
        return {"samples": 0, "mean_emotions": {}, "dominant_emotion": None, "dominant_share": 0.0}
    mean = probs.mean(axis=0)
    k = int(np.argmax(mean))
    share = float(np.mean(np.argmax(probs, axis=1) == k))
    ordered = sorted(zip(labels, mean.tolist(), strict=True), key=lambda kv: -kv[1])
    return {"samples": len(probs), "mean_emotions": {label: round(v, 4) for label, v in ordered},
            "dominant_emotion": labels[k], "dominant_share": round(share, 4)}


def _track_model(track: Track, labels: list[str]) -> VideoTrack:
    rows = np.stack(track.rows) if track.rows else np.zeros((0, 7 + len(labels)))
    points = []
    for row in rows:
        probs = row[7:].astype(np.float64)
        emotions = sorted(zip(labels, probs.tolist(), strict=True), key=lambda kv: -kv[1])
        x, y, w, h = (int(round(float(v))) for v in row[2:6])
        points.append(TimelinePoint(
            t_ms=round(float(row[0]), 1), frame=int(row[1]),
            box=Box(x=max(0, x), y=max(0, y), width=max(0, w), height=max(0, h)),
            confidence=round(float(row[6]), 4),
            emotions={label: round(p, 4) for label, p in emotions},
            dominant_emotion=emotions[0][0],
        ))
    return VideoTrack(id=track.id, first_ms=round(track.first_ms, 1), last_ms=round(track.last_ms, 1),
                      timeline=points, summary=EmotionSummary(**_summary(rows[:, 7:], labels)))


def _video_summary(tracks: list[Track], labels: list[str], with_faces: int) -> VideoSummary:
    probs = [np.stack(t.rows)[:, 7:] for t in tracks if t.rows]
    stacked = np.concatenate(probs) if probs else np.zeros((0, len(labels)))
    return VideoSummary(tracks=len(tracks), frames_with_faces=with_faces, **_summary(stacked, labels))


def analyze_video_file(path: Path, fps: float | None = None, classifier: str | None = None,
                       annotate_path: Path | None = None, progress: bool = False,
                       on_progress: ProgressCallback | None = None,
                       options: VideoOptions | None = None) -> VideoResult:
    """Track faces through the video at ``path`` and classify their emotions over time.

    ``fps``: frames sampled per second by container timestamps (None: every frame). ``annotate_path``:
    write an MP4 with the source frame rate and size showing each track's box, id and emotion.
    ``progress``: a tqdm bar on stderr. ``on_progress``: called with the fraction done, about once a second.
    """
    opts = options or VideoOptions()
    opts.fps = fps
    detect = dataclasses.replace(default_options(), max_side=get_settings().video_detect_max_side)
    # Frames run in parallel on single-threaded sessions: on 2 cores every-frame analysis of the Hamilton clip
    # took 3.7 s this way against 4.4 s with 2-thread sessions and 7.1 s one frame at a time.
    parallel = _workers(opts) > 1
    analyzer = VideoAnalyzer(get_engine(classifier, threads=1 if parallel else None), detect, opts)
    return analyzer.run(Path(path), annotate_path, progress, on_progress)
