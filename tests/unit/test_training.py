"""Training pipeline end to end on a tiny sample: train one short epoch, export, load the ONNX, classify."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from emotion.core.model_files import verify_metadata  # noqa: E402
from emotion.model.training import PREPROCESSING_NAME, VOCABULARY, canonical_label  # noqa: E402
from emotion.model.training.config import DataConfig, ModelConfig, TrainConfig, load_config  # noqa: E402
from emotion.model.training.data import ferplus_distribution, ferplus_majority, load_imagefolder  # noqa: E402
from emotion.model.training.onnx_meta import read_metadata  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("EMOTION_SHARED_DIR", REPO.parent / "shared"))
TRAIN_DIR = SHARED / "data" / "ferplus_train"
VAL_DIR = SHARED / "data" / "fer2013_publictest" / "ferplus_png"


def test_ferplus_label_rules() -> None:
    # neutral 4, sadness 1 (dropped), anger 3, disgust 2 -> 9 votes left, neutral 4/9 is no majority
    assert ferplus_majority(np.array([4, 0, 0, 1, 3, 2, 0, 0, 0, 0])) == -1
    assert ferplus_majority(np.array([9, 0, 0, 1, 0, 0, 0, 0, 0, 0])) == 0
    assert ferplus_majority(np.array([0, 0, 0, 0, 0, 0, 0, 0, 2, 8])) == -1  # NF
    dist = ferplus_distribution(np.array([6, 0, 1, 1, 0, 0, 0, 0, 2, 0]))
    assert dist is not None and dist[0] == pytest.approx(1.0)
    assert ferplus_distribution(np.array([1, 0, 0, 0, 0, 0, 0, 0, 9, 0])) is None
    assert canonical_label("Happy") == "happiness" and canonical_label("fearful") == "fear"
    assert canonical_label("nope") is None


def test_shipped_config_parses() -> None:
    cfg = load_config(REPO / "model" / "configs" / "ferplus.json")
    assert cfg.data.label_mode == "probability"


def test_imagefolder_synonyms(tmp_path: Path) -> None:
    import cv2

    for name in ("happy", "angry", "contempt", "not_an_emotion"):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "a.png"), np.full((60, 50, 3), 100, np.uint8))
    ds = load_imagefolder(tmp_path)
    assert ds.images.shape == (3, 48, 48)
    assert sorted(VOCABULARY[i] for i in ds.labels) == ["anger", "contempt", "happiness"]


@pytest.mark.skipif(not (TRAIN_DIR / "label.csv").exists(), reason="FER+ training data not staged")
def test_train_export_load(tmp_path: Path) -> None:
    from emotion.model.training.export import main as export_main
    from emotion.model.training.train import train

    cfg = TrainConfig(
        out_dir=str(tmp_path / "run"),
        epochs=1,
        batch_size=32,
        num_threads=2,
        progress=False,
        ema_decay=None,
        data=DataConfig(
            train_dir=str(TRAIN_DIR),
            val_dir=str(VAL_DIR) if VAL_DIR.exists() else str(TRAIN_DIR),
            limit_train=200,
            limit_val=100,
            cache_dir=None,
        ),
        net=ModelConfig(channels=[8, 16, 16, 32], convs_per_stage=[1, 1, 1, 1], dropout=0.1),
    )
    final = train(cfg)
    assert 0.0 <= final["val_accuracy"] <= 1.0
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert events == ["config", "epoch", "final"]

    onnx_path = tmp_path / "ferplus.onnx"
    rc = export_main(
        [
            "--checkpoint",
            str(tmp_path / "run" / "best.pt"),
            "--out",
            str(onnx_path),
            "--no-eval",
            "--report",
            str(tmp_path / "report.json"),
        ]
    )
    assert rc == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["agreement"]["argmax_agreement"] == 1.0

    md = read_metadata(str(onnx_path))
    verify_metadata(md, VOCABULARY, PREPROCESSING_NAME, "logits")
    with pytest.raises(ValueError):
        verify_metadata(md, list(reversed(VOCABULARY)), PREPROCESSING_NAME)

    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((5, 1, 48, 48), dtype=np.float32)
    logits = sess.run(None, {"input": x})[0]
    assert logits.shape == (5, 8)

    # The normal classifier path of the runtime engine, where it knows this preprocessing.
    from emotion.core import classifiers
    from emotion.core.manifest import InputSpec, ModelSpec

    if PREPROCESSING_NAME not in classifiers.PREPROCESSORS:
        pytest.skip(f"runtime engine has no {PREPROCESSING_NAME} yet")
    spec = ModelSpec(
        name="ferplus",
        version="test",
        role="classifier",
        file=onnx_path.name,
        size=onnx_path.stat().st_size,
        sha256="0" * 64,
        licence="test",
        input=InputSpec(name="input", shape=["N", "1", "48", "48"], layout="NCHW", color="GRAY"),
        labels=list(VOCABULARY),
        output="logits",
        preprocessing=PREPROCESSING_NAME,
    )
    clf = classifiers.classifier_for(spec, sess)
    bgr = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    faces = np.zeros((2, 15), np.float32)
    faces[0, :4] = [30, 20, 50, 60]
    faces[1, :4] = [140, 100, 40, 40]  # partly outside the image
    probs = clf.classify(bgr, faces)
    assert probs.shape == (2, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_crop_gray48_ferplus_reference() -> None:
    import cv2

    from emotion.model.training.preprocess import crop_gray48_ferplus, square_crop

    gray = np.arange(48 * 48, dtype=np.int64).reshape(48, 48).astype(np.uint8)
    bgr = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    out = crop_gray48_ferplus(bgr, [0, 0, 48, 48])  # a FER-sized crop whose box is the frame: identity
    assert out.shape == (1, 48, 48) and out.dtype == np.float32
    np.testing.assert_allclose(out[0] * 255.0, gray, atol=1e-3)
    img = np.random.default_rng(0).integers(0, 255, (100, 120, 3), dtype=np.uint8)
    assert square_crop(img, [10, 10, 40, 50]).shape == (50, 50, 3)  # square around the box centre
    np.testing.assert_array_equal(square_crop(img, [10, 10, 40, 50]), img[10:60, 5:55])
    for box in ([-30, -20, 50, 60], [200, 200, 10, 10], [100, 80, 60, 60]):  # partly / wholly outside
        p = crop_gray48_ferplus(img, box)
        assert p.shape == (1, 48, 48) and 0.0 <= p.min() <= p.max() <= 1.0
