"""Process-wide settings (pydantic-settings). Env names (EMOTION_*) are shared with infra/."""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_model_dir() -> Path:
    """Inside the virtual environment the package is installed into (``.venv/share/emotion-models``); for an
    install outside any venv, the per-user cache folder (``platformdirs``). EMOTION_MODEL_DIR overrides both."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "share" / "emotion-models"
    from platformdirs import user_cache_path

    return user_cache_path("emotion-service", appauthor=False) / "models"


def _default_classifier() -> str:
    from emotion.core.manifest import load_manifest

    return load_manifest().default_classifier


class Settings(BaseSettings):
    """Every tunable of the service; read from EMOTION_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="EMOTION_", extra="ignore")

    # Models
    model_dir: Path = Field(default_factory=_default_model_dir)
    classifier: str = Field(default_factory=_default_classifier)  # the manifest's default_classifier
    providers: str = "CPUExecutionProvider"  # comma list; requested ∩ available, CPU last resort
    intra_op_threads: int = 0  # 0 = onnxruntime default (all cores)
    # Which form of a classifier that has both runs: int8 (the same integers on every CPU) or fp32 (the same
    # weights, float activations). auto: int8 where onnxruntime has a fast integer path (x86-64 AVX2 or better,
    # ARM dotprod), else fp32 (emotion.core.cpu.preferred_precision).
    classifier_precision: Literal["auto", "int8", "fp32"] = "auto"

    # Detection
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    min_face: int = 0  # minimum face side in input pixels; smaller faces are dropped
    max_faces: int = 100
    # Images are downscaled to this longest side for detection: 1024 keeps WIDER full-resolution AP (80.8)
    # while bounding the detector's activations (peak RSS) on large photos.
    detect_max_side: int = 1024
    # Video frames are detected at up to full HD: in a 1080p crowd the small faces score higher and logos
    # and hair score lower than at 1024 px (fp_video.mp4). Larger frames (or frames over the area of a 16:9
    # frame this wide) are downscaled as they are decoded, and all the analysis (classification, tracking,
    # identity) runs on them: memory stays bounded for any accepted frame size (a 36 MP frame is 108 MB as BGR).
    video_detect_max_side: int = 1920
    # The annotated video is written at the source size up to this long side and a 16:9 frame's area (an 8K
    # source is written at 1920x1080, a 6000x6000 one at 1440x1440: the encoder's buffers scale with the frame).
    video_annotate_max_side: int = 1920
    # An image where no face is found is detected again turned 30 degrees each way, then framed (emotion.core.engine):
    # tilted heads and tight crops. 2.6-7.7x the detection time on images without a face. Video frames never do.
    rotated_retry: bool = True
    # An image with a side under 112 px is enlarged (bicubic, to a short side of at least 256 px) before detection
    # and alignment (emotion.core.align.enlarged): a 48 px face crop sent as it is gets a face (FER+ PublicTest:
    # 2,771 -> 3,188 of 3,191) and the answer the dev figures report. Its cost is false faces on small face-free
    # images (benchmarks/retry_false_positives.py). Video frames are never enlarged.
    enlarge_small_images: bool = True

    # Input limits
    max_pixels: int = 40_000_000  # decompression-bomb guard, checked from the header before decoding
    max_body_bytes: int = 6_000_000  # Lambda's synchronous payload is 6 MB
    max_side: int = 20_000
    # Memory one image decode may take, estimated from the header before decoding (imageio.decode_cost):
    # a 40 MP baseline JPEG needs 240 MB, a 40 MP PNG 280 MB; tiny files declaring huge images cost this much.
    max_decode_bytes: int = 512_000_000
    # Scans one JPEG may have: real encoders write at most about 20, and each is a full decoding pass.
    jpeg_max_scans: int = 100
    # Analyses running at once under `emotion serve` (0 = the CPU cores, fewer when half the memory cannot
    # hold that many at max_decode_bytes), and how many more may wait (-1 = 8 per slot); beyond: 429.
    engine_concurrency: int = 0
    engine_queue: int = -1
    # Lambda's synchronous payload limit (request event and response, bodies base64-encoded when binary):
    # behind API Gateway request bodies are held to 3/4 of it and larger responses answer a typed 413.
    lambda_payload_bytes: int = 6_291_456

    # Shared dev data (tests, benchmarks, `models fetch --from`)
    shared_dir: Path = Path("../shared")

    # HTTP API
    api_key: str | None = None  # when set, the app itself requires x-api-key (self-hosting)
    # The web page, its static files, /docs and /openapi.json need no key (the page asks for one when the API
    # answers 401). False: they need the key like the API, so browsers get no page (infra's public_page).
    public_page: bool = True
    # Base URL of upload and status links (e.g. https://emotion.example.com); empty = API Gateway's own domain
    # from the event, or the local server's bound address. Never the request's Host header (spoofable).
    public_base_url: str = ""
    # `emotion serve` connections: a request's line and headers must arrive within http_header_timeout_s (else
    # closed), a body that stops arriving for http_body_timeout_s is closed, idle keep-alive connections close
    # after http_keep_alive_s. Beyond http_max_connections (0: half the open-file limit, which serve raises
    # to its hard limit at start; a larger value is lowered to that) the oldest connection still waiting for
    # its headers is closed to make room: idle sockets must not take every file descriptor.
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 60.0
    http_keep_alive_s: int = 5
    http_max_connections: int = 0

    # Storage / jobs
    storage: Literal["local", "s3"] = "local"
    data_dir: Path = Path(".emotion-data")  # local storage root
    inputs_bucket: str = ""
    results_bucket: str = ""
    max_upload_bytes: int = 500_000_000
    upload_expires_s: int = 900
    video_fps: float = 5.0
    # Video frames analysed at once, each on one core (0 = one per CPU core). Each worker adds its own
    # activations: peak RSS on the Hamilton clip 187 MB with 1, 255 MB with 2.
    video_workers: int = 0
    # Video bounds, checked from the container before decoding and again while reading: frames over max_pixels
    # are refused, as are videos longer than these (a 7 MB file can hold 6 h of tiny frames). Frames held at
    # once are capped by bytes too: sampled frames in flight (at the analysis size), and the decoder's own
    # full-size frames (its threads are cut for large frames: a 36 MP frame is 54 MB as YUV).
    video_max_duration_s: float = 3600.0
    video_max_frames: int = 216_000  # 1 h at 60 fps
    video_buffer_bytes: int = 256_000_000

    # Jobs (async processing)
    job_inline_result_bytes: int = 256_000  # larger results are returned as a presigned result_url
    job_max_attempts: int = 2  # deliveries that may start processing one upload (poison inputs end as failed)
    job_stale_s: int = 900  # a job 'processing' for longer without an update is assumed crashed
    job_url_expires_s: int = 3600  # presigned GETs for results and annotated output
    lambda_video_max_bytes: int = 200_000_000  # larger videos go to the Batch video job (or are refused)
    # The deployment has the Batch GPU video path (infra's gpu_video): video jobs are routed to it by key;
    # without it, videos over lambda_video_max_bytes are refused at job creation (no worker would take them).
    gpu_video: bool = False
    job_image_max_bytes: int = 60_000_000  # image jobs: declared (and so uploaded) size at most this
    job_sweep_interval_s: float = 60.0  # local mode: how often the sweep looks for stale or lost jobs

    # Collections (an archive of many photos, emotion.jobs.collection): checked as a whole before any work
    # (entries, unpacked bytes), entry by entry (compression ratio, bytes; pixels by the image guards above),
    # then analysed in chunks of at most this many images and bytes, on AWS one SQS message per chunk.
    collection_max_images: int = 10_000
    collection_max_uncompressed_bytes: int = 2_000_000_000
    collection_max_ratio: float = 100.0  # an entry over 1 MB unpacking to more than this x its packed size
    collection_chunk_images: int = 50
    collection_chunk_bytes: int = 64_000_000
    collection_queue_url: str = ""  # AWS: the SQS queue of chunk messages (set by the stack)
    # Local mode: chunks analysed at once by the embedded worker (0 = the engine slots of `emotion serve`).
    collection_workers: int = 0


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, built once; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
