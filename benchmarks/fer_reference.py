"""Reference timing of the PyPI library ``fer`` on the scene photos, single-threaded (prints JSON).

    /tmp/fervenv/bin/python benchmarks/fer_reference.py --scenes /work/shared/data/scenes --repeats 10 [--mtcnn]

Run it from its own virtualenv: ``fer`` needs TensorFlow (and pulls PyTorch), which this project does
not depend on, so it must never go into the project's .venv. Setup used (fer 25.10.3 imports
``pkg_resources``, which setuptools>=81 no longer ships)::

    python3 -m venv /tmp/fervenv && /tmp/fervenv/bin/pip install fer "setuptools<81"

The detector is built once with fer's defaults, ``FER()``: OpenCV Haar cascade
(haarcascade_frontalface_default.xml) for faces, quantized TFLite model for emotions. ``--mtcnn`` uses
``FER(mtcnn=True)`` (facenet-pytorch MTCNN, on CPU) instead. One timed call per photo is: read the file's bytes,
``cv2.imdecode``, ``detector.detect_emotions(img)``. One warm-up pass over all photos, then ``--repeats``
timed passes. Reports median and p95 ms over all timed calls, the median ms per photo and the faces found.
Everything is pinned to one thread; the TFLite interpreter fer would create itself gets no thread count,
so the script pre-loads fer's interpreter cache with the same model file built with ``num_threads=1``.
Imports nothing from the project but the stdlib-only ``functions/emotion/core/cpu.py``, loaded by its path.
"""

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
             "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
    os.environ[_var] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402


def cpu_info() -> dict:
    """The project's CPU description (model, cores, int8 instruction sets), without importing its package."""
    path = Path(__file__).resolve().parents[1] / "functions" / "emotion" / "core" / "cpu.py"
    spec = importlib.util.spec_from_file_location("emotion_cpu", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cpu_info()

if "--mtcnn" in sys.argv:  # torch/triton must load before TensorFlow, else the import segfaults
    import torch
    from facenet_pytorch import MTCNN  # noqa: F401

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
cv2.setNumThreads(1)
warnings.filterwarnings("ignore")

import fer  # noqa: E402
from fer.fer import FER  # noqa: E402


def build_detector(mtcnn: bool) -> FER:
    model = Path(fer.__file__).parent / "data" / "emotion_model_quantized.tflite"
    interpreter = tf.lite.Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    FER._tflite_interpreter_cache = interpreter  # FER() reuses this instead of building its own
    return FER(mtcnn=True) if mtcnn else FER()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=Path, default=Path("/work/shared/data/scenes"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--mtcnn", action="store_true", help="FER(mtcnn=True) instead of the default")
    args = parser.parse_args()

    photos = sorted(args.scenes.glob("*.jpg"))
    detector = build_detector(args.mtcnn)

    def run(photo: Path) -> tuple[float, int]:
        t = time.perf_counter()
        img = cv2.imdecode(np.frombuffer(photo.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        faces = detector.detect_emotions(img)
        return (time.perf_counter() - t) * 1000, len(faces)

    for photo in photos:  # warm-up pass
        run(photo)
    per_photo: dict[str, list[float]] = {p.name: [] for p in photos}
    faces: dict[str, int] = {}
    for _ in range(args.repeats):
        for photo in photos:
            ms, faces[photo.name] = run(photo)
            per_photo[photo.name].append(ms)

    all_ms = [ms for values in per_photo.values() for ms in values]
    print(json.dumps({
        "cpu": cpu_info(),
        "fer_version": fer.__version__,
        "tensorflow_version": tf.__version__,
        "opencv_version": cv2.__version__,
        "face_detector": "mtcnn (facenet-pytorch)" if args.mtcnn
        else "opencv haar cascade (haarcascade_frontalface_default.xml)",
        "emotion_model": "emotion_model_quantized.tflite (TFLite, num_threads=1)",
        "photos": len(photos),
        "repeats": args.repeats,
        "timed_calls": len(all_ms),
        "median_ms": round(statistics.median(all_ms), 2),
        "p95_ms": round(float(np.percentile(all_ms, 95)), 2),
        "per_photo_median_ms": {name: round(statistics.median(v), 2) for name, v in per_photo.items()},
        "faces": faces,
    }, indent=2))


if __name__ == "__main__":
    main()
