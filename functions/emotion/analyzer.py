"""The Python library: ``emotion.Analyzer``, ``emotion.analyze`` and ``emotion.analyze_video``.

The CLI, the HTTP app and the jobs run the same core functions; this module adds what a notebook user needs:
any kind of image input, models loaded once per analyzer, and typed results whose ``model_dump()`` is the
service's JSON.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np

from emotion.core.annotate import annotate as draw_annotations
from emotion.core.engine import default_options, get_engine
from emotion.core.errors import BadParameter, InputNotFound
from emotion.core.image_input import ImageInput, load_image
from emotion.core.imageio import encode_image
from emotion.core.results import AnalysisResult
from emotion.core.video import VideoOptions, VideoResult, analyze_video_file
from emotion.settings import get_settings

# Written formats of Analyzer.annotate(path=...), chosen by the extension.
ANNOTATE_FORMATS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp"}


class Analyzer:
    """Finds every face in an image and estimates its emotions; builds its ONNX sessions once.

    Every argument defaults to the ``EMOTION_*`` settings: ``classifier`` (a name from ``emotion models
    list``), ``score_threshold`` (detector score 0-1), ``min_face`` (px), ``max_faces``, ``threads``
    (onnxruntime intra-op threads, 0 = all cores), ``providers`` (e.g. ``"CUDAExecutionProvider"``; CPU is
    always the fallback), ``model_dir`` (where ``emotion models fetch`` put the models).

    Images may be a path (``str`` or ``os.PathLike``), encoded bytes, a numpy array in OpenCV's **BGR** order
    (pass ``rgb=True`` for RGB arrays; grey arrays are accepted) or a ``PIL.Image``. Bad input raises the
    typed errors of ``emotion.errors`` (all subclasses of ``emotion.EmotionError``).
    """

    def __init__(
        self,
        classifier: str | None = None,
        score_threshold: float | None = None,
        min_face: int | None = None,
        max_faces: int | None = None,
        threads: int | None = None,
        providers: str | list[str] | None = None,
        model_dir: str | os.PathLike[str] | None = None,
    ):
        self.options = default_options(min_face, max_faces, score_threshold)
        self.engine = get_engine(
            classifier,
            threads=threads,
            providers=",".join(providers) if isinstance(providers, list) else providers,
            model_dir=None if model_dir is None else Path(model_dir),
            score_floor=self.options.score_threshold,
        )

    @property
    def labels(self) -> list[str]:
        """The emotions this analyzer's classifier reports (FER+ vocabulary)."""
        return list(self.engine.classifier.labels)

    def _pixels(self, image: ImageInput, rgb: bool) -> np.ndarray:
        settings = get_settings()
        return load_image(image, rgb=rgb, max_pixels=settings.max_pixels, max_side=settings.max_side)

    def analyze(self, image: ImageInput, *, rgb: bool = False) -> AnalysisResult:
        """Every face in ``image``: box, landmarks, confidence and emotion probabilities."""
        start = time.perf_counter()
        bgr = self._pixels(image, rgb)
        decoded = time.perf_counter()
        result = self.engine.analyze_array(bgr, self.options)
        _add_decode_time(result, start, decoded)
        return result

    def analyze_many(self, images: Iterable[ImageInput], *, rgb: bool = False,
                     batch_size: int = 8) -> Iterator[AnalysisResult]:
        """Results for ``images`` in order, as they are ready.

        Faster than a loop over :meth:`analyze`: the next images are read and decoded on a background thread
        while the current ones are analysed, and the faces of ``batch_size`` images share classifier batches.
        The first bad input raises its typed error (results before it have been yielded).
        """
        if batch_size < 1:
            raise BadParameter("batch_size must be at least 1")

        def load(image: ImageInput) -> tuple[np.ndarray, float]:
            start = time.perf_counter()
            return self._pixels(image, rgb), (time.perf_counter() - start) * 1000

        with ThreadPoolExecutor(1, thread_name_prefix="emotion-decode") as pool:
            pending: list[Future[tuple[np.ndarray, float]]] = []
            source = iter(images)
            exhausted = False
            while True:
                while not exhausted and len(pending) < 2 * batch_size:  # bounded read-ahead
                    try:
                        pending.append(pool.submit(load, next(source)))
                    except StopIteration:
                        exhausted = True
                if not pending:
                    return
                group, pending = pending[:batch_size], pending[batch_size:]
                loaded = [f.result() for f in group]
                for result, (_, decode_ms) in zip(
                    self.engine.analyze_arrays([bgr for bgr, _ in loaded], self.options), loaded, strict=True
                ):
                    result.timings_ms["decode"] = round(decode_ms, 2)
                    result.timings_ms["total"] = round(result.timings_ms["total"] + decode_ms, 2)
                    yield result

    def annotate(self, image: ImageInput, *, rgb: bool = False, path: str | os.PathLike[str] | None = None,
                 result: AnalysisResult | None = None) -> np.ndarray:
        """``image`` with each face boxed and labelled with its dominant emotion and probability.

        Returns the pixels in the order given (BGR by default, RGB with ``rgb=True``). ``path``: also write the
        image there, as JPEG, PNG or WebP by its extension. ``result``: draw this earlier :meth:`analyze`
        result of the same image instead of analysing it again.
        """
        fmt = None
        if path is not None:
            fmt = ANNOTATE_FORMATS.get(Path(path).suffix.lower())
            if fmt is None:
                raise BadParameter(f"{os.fspath(path)!r}: the extension picks the format; use .jpg, .png or .webp")
        bgr = self._pixels(image, rgb)
        drawn = draw_annotations(bgr, result or self.engine.analyze_array(bgr, self.options))
        if path is not None and fmt is not None:
            Path(path).write_bytes(encode_image(drawn, fmt))
        return drawn[:, :, ::-1].copy() if rgb else drawn


@lru_cache(maxsize=4)
def _default_analyzer(classifier: str | None, score_threshold: float | None, min_face: int | None,
                      max_faces: int | None) -> Analyzer:
    return Analyzer(classifier, score_threshold, min_face, max_faces)


def analyze(image: ImageInput, *, rgb: bool = False, classifier: str | None = None,
            score_threshold: float | None = None, min_face: int | None = None,
            max_faces: int | None = None) -> AnalysisResult:
    """One call: :meth:`Analyzer.analyze` on an analyzer cached per set of options."""
    return _default_analyzer(classifier, score_threshold, min_face, max_faces).analyze(image, rgb=rgb)


def analyze_video(path: str | os.PathLike[str], fps: float | None = 5.0,
                  progress: Callable[[float], None] | bool | None = None, *, classifier: str | None = None,
                  annotate: str | os.PathLike[str] | None = None, min_face: int | None = None) -> VideoResult:
    """Faces tracked through a video file, with one emotion timeline per track.

    ``fps``: frames sampled per second (``None``: every frame). ``progress``: a callable receiving the
    fraction done (0-1, about once a second), or ``True`` for a progress bar on stderr. ``annotate``: also
    write an MP4 with each track's box, id and emotion. ``min_face``: faces smaller than this many pixels (the
    box's smaller side, in the video's pixels) are not tracked (default: the ``min_face`` setting).
    """
    video = Path(path)
    if not video.exists():
        raise InputNotFound(f"no such file: {video}")
    if video.is_dir():
        raise BadParameter(f"{video} is a folder, not a video file")
    return analyze_video_file(
        video,
        fps=fps,
        classifier=classifier,
        annotate_path=None if annotate is None else Path(annotate),
        progress=progress is True,
        on_progress=progress if callable(progress) else None,
        options=VideoOptions(min_face=min_face),
    )


def _add_decode_time(result: AnalysisResult, start: float, decoded: float) -> None:
    result.timings_ms["decode"] = round((decoded - start) * 1000, 2)
    result.timings_ms["total"] = round((time.perf_counter() - start) * 1000, 2)
