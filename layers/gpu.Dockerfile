# syntax=docker/dockerfile:1
# GPU video job image for AWS Batch (g4dn / g5: NVIDIA T4 / A10G). CUDA 12 + cuDNN 9 runtime, which is what
# the onnxruntime-gpu wheels on PyPI are built against. Build context: the repository root, e.g.
#   docker build -f layers/gpu.Dockerfile -t emotion-video .
# Models are fetched and sha256-verified at build time into /opt/models; nothing is downloaded at run time.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    EMOTION_MODEL_DIR=/opt/models \
    EMOTION_STORAGE=s3 \
    EMOTION_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

# Ubuntu 24.04 ships Python 3.12, the same minor version as the Lambda image. Distribution packages follow
# the pinned base image's release (exact apt pins break as soon as the archive moves on).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 python3.12-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3.12 -m venv /opt/venv

COPY layers/requirements-gpu.txt /tmp/requirements.txt
RUN pip install --only-binary=:all: -r /tmp/requirements.txt && rm /tmp/requirements.txt

# --no-deps: the project declares the CPU `onnxruntime`, which must not shadow onnxruntime-gpu.
COPY pyproject.toml README.md /tmp/src/
COPY functions /tmp/src/functions
COPY model /tmp/src/model
RUN pip install --no-deps /tmp/src && rm -rf /tmp/src

COPY layers/verify_models.py model[s] /tmp/models/
RUN if ls /tmp/models/*.onnx >/dev/null 2>&1; then \
        emotion models fetch --from /tmp/models; \
    else \
        emotion models fetch yunet mobilefacenet mobilefacenet8 mobilefacenet8_fp32 mobilefacenet8_wild mobilefacenet8_wild_fp32 ferplus ferplus_int8 sface; \
    fi \
 && python /tmp/models/verify_models.py "$EMOTION_MODEL_DIR" \
 && rm -rf /tmp/models

RUN useradd --system --uid 10001 --home-dir /tmp worker
USER 10001
WORKDIR /tmp

# AWS Batch overrides the command with `--bucket Ref::bucket --key Ref::key` (infra/components/video.py).
CMD ["python", "-m", "emotion.jobs.video_job"]
