"""The engine: detector + classifier loaded once per process, and the per-image analysis."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import cast

import cv2
import numpy as np

from emotion.core.align import enlarged
from emotion.core.classifiers import EmotionClassifier, classifier_for
from emotion.core.cpu import preferred_precision
from emotion.core.detector import YuNetDetector, to_input_pixels, working_size
from emotion.core.errors import BadParameter
from emotion.core.facemeasures import face_pose, face_quality
from emotion.core.imageio import decode_image
from emotion.core.manifest import ModelSpec, load_manifest
from emotion.core.model_files import check_metadata, runnable_model_path
from emotion.core.results import AnalysisResult, Box, EmotionLabel, Face, ImageSize, Landmarks, ModelsUsed, Quality
from emotion.core.runtime import create_session, resolve_providers
from emotion.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectOptions:
    score_threshold: float = 0.6
    min_face: int = 0
    max_faces: int = 100
    max_side: int = 1024
    rotated_retry: bool = False
    enlarge_small: bool = False  # align.enlarged before detection (Engine.detect_enlarged)


# YuNet finds faces up to about 30 degrees from upright. An image where it finds none is tried again turned
# this much each way, which reaches heads tilted up to about 60 degrees (a person lying down, a tight crop).
RETRY_DEGREES = (30.0, -30.0)
# Still none: tried once more, upright, inside a black frame of this much of its size on every side (scaled
# back to the image's own size, so it costs one more upright pass). A face cropped edge to edge has no context
# around it, and YuNet misses some such crops: of 6,000 random FER+ train crops, 16 had no face after the turned
# retry; framed at 0.25 it found 5 of them, at 0.5 4 (FER+ train only was used to choose).
RETRY_FRAME = 0.25


class Engine:
    """Decode → (enlarge a small image) → detect → align/crop → classify all faces in one batch →
    :class:`AnalysisResult`."""

    def __init__(self, detector: YuNetDetector, detector_version: str, classifier: EmotionClassifier):
        self.detector = detector
        self.detector_version = detector_version
        self.classifier = classifier

    def models_used(self) -> ModelsUsed:
        spec = self.classifier.spec
        return ModelsUsed(detector=self.detector_version, classifier=spec.version, classifier_precision=spec.precision)

    def analyze_bytes(self, data: bytes, options: DetectOptions, max_pixels: int, max_side: int) -> AnalysisResult:
        start = time.perf_counter()
        bgr = decode_image(data, max_pixels=max_pixels, max_side=max_side)
        decode_ms = (time.perf_counter() - start) * 1000
        result = self.analyze_array(bgr, options)
        result.timings_ms["decode"] = round(decode_ms, 2)
        result.timings_ms["total"] = round((time.perf_counter() - start) * 1000, 2)
        return result

    def detect(self, bgr: np.ndarray, options: DetectOptions) -> np.ndarray:
        # Downscaled once: the retries turn and frame the detector's working copy, not a large original.
        small, scale = working_size(bgr, options.max_side)

        def kept(rows: np.ndarray) -> np.ndarray:
            return self._keep(to_input_pixels(rows, scale), options)

        faces = kept(self.detector.detect(small))
        if len(faces) == 0 and options.rotated_retry:
            turned = [kept(self.detector.detect_rotated(small, d, options.max_side)) for d in RETRY_DEGREES]
            faces = self.detector.suppress(np.concatenate(turned))
            if len(faces) == 0:
                faces = kept(self.detector.detect_framed(small, RETRY_FRAME, options.max_side))
        return faces[: options.max_faces]

    @staticmethod
    def _keep(faces: np.ndarray, options: DetectOptions) -> np.ndarray:
        faces = faces[faces[:, 14] >= options.score_threshold]
        if options.min_face:
            faces = faces[np.minimum(faces[:, 2], faces[:, 3]) >= options.min_face]
        return faces

    def detect_enlarged(self, bgr: np.ndarray, options: DetectOptions) -> tuple[np.ndarray, np.ndarray, int]:
        """The image as detection and the classifier see it (enlarged when it is small: ``align.enlarged``), the
        faces in that image's pixels (``min_face`` still counts the input's pixels), and the factor."""
        work, factor = enlarged(bgr) if options.enlarge_small else (bgr, 1)
        if factor > 1 and options.min_face:
            options = dataclasses.replace(options, min_face=options.min_face * factor)
        return work, self.detect(work, options), factor

    def analyze_array(self, bgr: np.ndarray, options: DetectOptions) -> AnalysisResult:
        t0 = time.perf_counter()
        work, faces, factor = self.detect_enlarged(bgr, options)
        t1 = time.perf_counter()
        probs = self.classifier.classify(work, faces)
        qualities = [face_quality(work, face, 1 / factor) for face in faces]
        t2 = time.perf_counter()
        height, width = bgr.shape[:2]
        rows = to_input_pixels(faces, factor)
        return AnalysisResult(
            image=ImageSize(width=width, height=height),
            faces=[self._face(row, p, q, width, height) for row, p, q in zip(rows, probs, qualities, strict=True)],
            models=self.models_used(),
            timings_ms={
                "decode": 0.0,
                "detect": round((t1 - t0) * 1000, 2),
                "classify": round((t2 - t1) * 1000, 2),
                "total": round((t2 - t0) * 1000, 2),
            },
        )

    def analyze_arrays(self, images: list[np.ndarray], options: DetectOptions) -> list[AnalysisResult]:
        """Several images: each detected on its own, the faces of all of them classified in shared batches
        (one ``session.run`` per ``max_batch`` faces instead of at least one per image)."""
        t0 = time.perf_counter()
        prepared = [self.detect_enlarged(bgr, options) for bgr in images]
        t1 = time.perf_counter()
        crops = [self.classifier.preprocess(work, faces) for work, faces, _ in prepared if len(faces)]
        probs = self.classifier.postprocess(self.classifier.infer(np.concatenate(crops))) if crops else None
        qualities = [[face_quality(work, face, 1 / factor) for face in faces] for work, faces, factor in prepared]
        t2 = time.perf_counter()
        results, start = [], 0
        share = {"detect": (t1 - t0) * 1000 / max(1, len(images)), "classify": (t2 - t1) * 1000 / max(1, len(images))}
        for bgr, (_, faces, factor), quality in zip(images, prepared, qualities, strict=True):
            height, width = bgr.shape[:2]
            none = np.zeros((0, len(self.classifier.labels)))
            mine = probs[start : start + len(faces)] if probs is not None else none
            start += len(faces)
            rows = to_input_pixels(faces, factor)
            results.append(AnalysisResult(
                image=ImageSize(width=width, height=height),
                faces=[self._face(row, p, q, width, height) for row, p, q in zip(rows, mine, quality, strict=True)],
                models=self.models_used(),
                # Shared batches: each image is credited an equal share of the group's stage times.
                timings_ms={"decode": 0.0, **{k: round(v, 2) for k, v in share.items()},
                            "total": round(share["detect"] + share["classify"], 2)},
            ))
        return results

    def _face(self, row: np.ndarray, probs: np.ndarray, quality: Quality, width: int, height: int) -> Face:
        x0, y0 = max(0, int(round(row[0]))), max(0, int(round(row[1])))
        x1, y1 = min(width, int(round(row[0] + row[2]))), min(height, int(round(row[1] + row[3])))
        points = [(round(float(row[i]), 1), round(float(row[i + 1]), 1)) for i in range(4, 14, 2)]
        # The labels are vocabulary names (mapped when the manifest is read); Face validates them again.
        emotions = {cast(EmotionLabel, label): float(p) for label, p in zip(self.classifier.labels, probs, strict=True)}
        return Face(
            box=Box(x=x0, y=y0, width=max(0, x1 - x0), height=max(0, y1 - y0)),
            confidence=round(float(row[14]), 4),
            landmarks=Landmarks(
                right_eye=points[0], left_eye=points[1], nose=points[2], mouth_right=points[3], mouth_left=points[4]
            ),
            pose=face_pose(row),
            quality=quality,
            emotions=dict(sorted(emotions.items(), key=lambda kv: -kv[1])),
            dominant_emotion=max(emotions, key=emotions.__getitem__),
        )


def load_detector(score_threshold: float, nms_threshold: float, providers: list[str], threads: int,
                  model_dir: Path | None = None) -> YuNetDetector:
    """A YuNet detector on its own session (the engine's, or one with other thresholds for evaluation)."""
    manifest = load_manifest()
    spec = manifest.get(manifest.default_detector)
    session = create_session(runnable_model_path(spec, model_dir or get_settings().model_dir), providers, threads)
    return YuNetDetector(session, score_threshold, nms_threshold)


def classifier_names() -> list[str]:
    return load_manifest().names("classifier")


def get_engine(classifier: str | None = None, threads: int | None = None, providers: str | None = None,
               model_dir: Path | None = None, score_floor: float | None = None) -> Engine:
    """The process's engine for a classifier (default: the setting), built once per process and configuration.

    ``threads``: onnxruntime intra-op threads of its sessions (default: the setting). The video pipeline asks
    for 1 and runs one frame per core instead, which uses the cores better than splitting each small run.
    ``providers`` (comma list), ``model_dir``: override the settings. ``score_floor``: the lowest detector
    score a caller will ask for (detections below the settings' threshold are kept only when asked).
    """
    settings = get_settings()
    floor = settings.score_threshold if score_floor is None else min(score_floor, settings.score_threshold)
    return _engine_for(
        classifier or settings.classifier,
        settings.intra_op_threads if threads is None else threads,
        settings.providers if providers is None else providers,
        Path(settings.model_dir if model_dir is None else model_dir),
        floor,
        settings.classifier_precision,
    )


def clear_engines() -> None:
    """Forget the built engines (tests that change settings call this)."""
    _engine_for.cache_clear()


def engines_loaded() -> int:
    return _engine_for.cache_info().currsize


def classifier_form(name: str, precision: str) -> ModelSpec:
    """The manifest entry that runs for classifier ``name`` at ``precision`` (auto|int8|fp32): its fp32 form when
    fp32 is wanted (or auto prefers it on this CPU) and it has one; otherwise the classifier itself (a classifier
    with one form runs that form whatever is asked)."""
    manifest = load_manifest()
    spec = manifest.get(name)
    wanted = preferred_precision() if precision == "auto" else precision
    if spec.precision != wanted and spec.fp32_form and wanted == "fp32":
        return manifest.get(spec.fp32_form)
    return spec


@lru_cache(maxsize=4)
def _engine_for(name: str, threads: int, providers_text: str, model_dir: Path, score_floor: float,
                precision: str = "auto") -> Engine:
    """Keyed by the resolved values, so get_engine() and get_engine("mobilefacenet8") share one engine."""
    settings = get_settings()
    manifest = load_manifest()
    if name not in classifier_names():
        raise BadParameter(f"unknown classifier {name!r}; choose one of {', '.join(classifier_names())}")
    cv2.setNumThreads(settings.intra_op_threads if settings.intra_op_threads > 0 else -1)
    providers = resolve_providers(providers_text)
    det_spec = manifest.get(manifest.default_detector)
    detector = load_detector(score_floor, settings.nms_threshold, providers, threads, model_dir)
    spec = classifier_form(name, precision)
    session = create_session(runnable_model_path(spec, model_dir), providers, threads, spec.qdq_graph)
    check_metadata(spec, session.get_modelmeta().custom_metadata_map)
    log.info("engine ready: detector %s, classifier %s (%s), providers %s", det_spec.version, spec.version,
             spec.precision, providers)
    return Engine(detector, det_spec.version, classifier_for(spec, session))


def default_options(
    min_face: int | None = None, max_faces: int | None = None, score_threshold: float | None = None
) -> DetectOptions:
    """Detection options from settings, with per-request overrides validated."""
    s = get_settings()
    options = DetectOptions(
        score_threshold=s.score_threshold if score_threshold is None else score_threshold,
        min_face=s.min_face if min_face is None else min_face,
        max_faces=s.max_faces if max_faces is None else max_faces,
        max_side=s.detect_max_side,
        rotated_retry=s.rotated_retry,
        enlarge_small=s.enlarge_small_images,
    )
    if not 0.0 <= options.score_threshold <= 1.0:
        raise BadParameter("score_threshold must be between 0 and 1")
    if options.min_face < 0 or options.max_faces < 1:
        raise BadParameter("min_face must be >= 0 and max_faces >= 1")
    return options


def analyze(
    data: bytes, classifier: str | None = None, min_face: int | None = None, max_faces: int | None = None
) -> AnalysisResult:
    """Analyse one encoded image with the process's cached engine."""
    settings = get_settings()
    engine = get_engine(classifier)
    return engine.analyze_bytes(data, default_options(min_face, max_faces), settings.max_pixels, settings.max_side)
