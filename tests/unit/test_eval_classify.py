"""`emotion eval-classify` on small folders built from real dev crops: crop modes, no_face, ECE, group-by, labels
a 7-class model lacks, and the held-out film rule."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from emotion.model.crops import engine_input, upscale_factor, validation_groups
from emotion.model.evaluate import evaluate_classifier, expected_calibration_error


def _sfew_rows(shared_dir: Path) -> list[dict[str, str]]:
    with open(shared_dir / "data/sfew_train/labels.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def film_folder(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 SFEW crops of 3 classes from 4 clips, a labels CSV with a clip column, and one real photo patch with no
    face in it (labelled happiness)."""
    root = tmp_path_factory.mktemp("films")
    rows = _sfew_rows(shared_dir)
    chosen: list[dict[str, str]] = []
    for label in ("happiness", "anger", "surprise"):
        chosen += [r for r in rows if r["label"] == label][:4]
    out_rows = []
    for r in chosen:
        dest = root / r["image"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_dir / "data/sfew_train" / r["image"], dest)
        out_rows.append({"image": r["image"], "label": r["label"], "clip": r["clip"]})
    scene = cv2.imread(str(shared_dir / "data/scenes/fr_two_people.jpg"))
    (root / "happiness").mkdir(exist_ok=True)
    cv2.imwrite(str(root / "happiness" / "no_face_patch.png"), scene[-181:, -143:])  # floor/background corner
    out_rows.append({"image": "happiness/no_face_patch.png", "label": "happiness", "clip": "patch"})
    with open(root / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["image", "label", "clip"])
        writer.writeheader()
        writer.writerows(out_rows)
    return root


@pytest.fixture(scope="module")
def contempt_folder(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FER+ PublicTest 48 px crops: 3 contempt and 3 happiness (majority labels)."""
    root = tmp_path_factory.mktemp("contempt")
    with open(shared_dir / "data/fer2013_publictest/labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for label in ("contempt", "happiness"):
        (root / label).mkdir()
        for r in [r for r in rows if r["ferplus_majority"] == label][:3]:
            shutil.copy(shared_dir / "data/fer2013_publictest" / r["ferplus_png"], root / label)
    return root


def test_upscale_rule_depends_only_on_the_crop_size() -> None:
    assert upscale_factor(48, 48) == 6  # FER crops -> 288 px
    assert upscale_factor(181, 143) == 1  # SFEW crops stay as they are
    assert upscale_factor(100, 300) == 3
    assert upscale_factor(10, 1000) == 4  # the long side bounds it: 4,000 px, not 26 x
    assert upscale_factor(10, 20_000) == 1
    crop = np.zeros((60, 48, 3), np.uint8)
    assert engine_input(crop).shape == (360, 288, 3)
    assert engine_input(crop, pad=0.5).shape == (720, 576, 3)


def test_validation_films_are_a_fixed_every_fifth_rule(shared_dir: Path) -> None:
    rows = _sfew_rows(shared_dir)
    films = validation_groups([r["movie"] for r in rows])
    assert len(films) == 10 and "50_50" in films and "Bridesmaids" in films
    assert sum(r["movie"] in films for r in rows) == 183
    assert validation_groups(list(reversed([r["movie"] for r in rows]))) == films


def test_ece_of_known_cases() -> None:
    assert expected_calibration_error(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0
    # one bin holding two answers at 0.9, one right: |0.5 - 0.9|
    assert expected_calibration_error(np.array([0.9, 0.9]), np.array([1.0, 0.0])) == pytest.approx(0.4)
    # two bins, half the weight each: 0.5 * |1 - 0.95| + 0.5 * |0 - 0.35|
    ece = expected_calibration_error(np.array([0.95, 0.35]), np.array([1.0, 0.0]))
    assert ece == pytest.approx(0.5 * 0.05 + 0.5 * 0.35)


def test_ece_floor_of_a_calibrated_model_shrinks_with_the_set_and_flags_overconfidence() -> None:
    from emotion.model.evaluate import ece_if_calibrated

    rng = np.random.default_rng(3)
    small, large = rng.uniform(0.3, 1.0, 183), rng.uniform(0.3, 1.0, 3000)
    floor_small = ece_if_calibrated(small, 0.0, draws=300)
    floor_large = ece_if_calibrated(large, 0.0, draws=300)
    assert floor_small["median"] > 0.04 > floor_large["median"] > 0.0  # a perfect model is not at 0 on 183 crops
    honest = (rng.random(len(small)) < small).astype(float)
    assert ece_if_calibrated(small, expected_calibration_error(small, honest), draws=300)["p_value"] > 0.01
    overconfident = np.minimum(small + 0.3, 1.0)  # the same answers, claimed 0.3 surer
    seen = expected_calibration_error(overconfident, honest)
    assert ece_if_calibrated(overconfident, seen, draws=300)["p_value"] < 0.01


def test_as_sent_and_in_a_frame_with_no_face_and_groups(model_dir: Path, film_folder: Path) -> None:
    kwargs = {"classifier": "mobilefacenet", "labels_csv": film_folder / "labels.csv", "group_by": "clip"}
    sent = evaluate_classifier(film_folder, **kwargs)
    framed = evaluate_classifier(film_folder, pad=0.5, **kwargs)
    for report in (sent, framed):
        assert report["n"] == 13 and report["upscaled"] == 0
        assert 0.0 <= report["ece_if_calibrated"]["median"] <= report["ece_if_calibrated"]["p95"] <= 1.0
        assert report["no_face"] >= 1  # the background patch
        assert report["confusion"]["happiness"].get("no_face", 0) >= 1
        right = sum(row.get(label, 0) for label, row in report["confusion"].items())
        assert report["accuracy"] == pytest.approx(right / 13, abs=1e-4)  # no_face counted as wrong
        recalls = [c["recall"] for c in report["per_class"].values() if c["n"]]
        assert report["macro_recall"] == pytest.approx(np.mean(recalls), abs=1e-3)
        assert 0.0 <= report["ece"] <= 1.0
        groups = report["groups"]
        assert groups["by"] == "clip" and groups["accuracy"]["patch"] == 0.0
        assert set(groups["accuracy"]) >= {"patch"} and groups["n"] == len(groups["accuracy"])
    assert sent["mode"] == "as sent" and framed["mode"] == "in a frame (pad 0.5)"
    # tight film crops fill the image: YuNet finds at least as many of them once they sit in a frame
    assert framed["no_face"] <= sent["no_face"]


def test_labels_a_seven_class_model_lacks(model_dir: Path, contempt_folder: Path) -> None:
    wrong = evaluate_classifier(contempt_folder, classifier="mobilefacenet")
    assert wrong["n"] == 6 and wrong["upscaled"] == 6
    assert wrong["labels_missing_from_classifier"] == {"labels": ["contempt"], "policy": "counted as wrong"}
    assert wrong["per_class"]["contempt"] == {"recall": 0.0, "precision": 0.0, "n": 3}
    assert wrong["accuracy"] <= 0.5
    shared = evaluate_classifier(contempt_folder, classifier="mobilefacenet", only_shared=True)
    assert shared["n"] == 3 and "contempt" not in shared["per_class"]
    assert shared["labels_missing_from_classifier"]["policy"] == "left out (--only-shared)"
    eight = evaluate_classifier(contempt_folder, classifier="ferplus")
    assert eight["labels_missing_from_classifier"]["labels"] == []


def test_cli_reads_labels_from_a_csv_column(model_dir: Path, shared_dir: Path, tmp_path: Path) -> None:
    from emotion.cli import main

    folder = shared_dir / "data/sfew_train"
    out = tmp_path / "r.json"
    code = main(["eval-classify", str(folder), "--labels", str(folder / "labels.csv"), "--validation-split-by",
                 "movie", "--group-by", "movie", "--limit", "2", "--pad", "0.5", "--json", str(out)])
    report = json.loads(out.read_text())
    assert code == 0 and report["n"] == 14 and report["mode"] == "in a frame (pad 0.5)"
    assert set(report["groups"]["accuracy"]) <= validation_groups([r["movie"] for r in _sfew_rows(shared_dir)])
    assert main(["eval-classify", str(folder), "--group-by", "movie"]) == 2  # needs --labels


def test_shipped_eight_class_model_through_the_engine(model_dir: Path, shared_dir: Path) -> None:
    from emotion.core.engine import get_engine
    from emotion.core.vocabulary import EMOTIONS

    engine = get_engine("mobilefacenet8")
    model = engine.classifier
    assert model.labels == list(EMOTIONS) and model.spec.preprocessing == "align112_rgb_pm1"
    md = dict(model.session.get_modelmeta().custom_metadata_map)
    assert json.loads(md["labels"]) == list(EMOTIONS) and float(md["temperature"]) > 0
    assert not isinstance(model.session.get_inputs()[0].shape[0], int)  # symbolic batch
    # int8 in QDQ form, so the engine must load it with QDQ fusion on (the manifest says so)
    assert model.spec.qdq_graph and "QDQ" in md["quantization"]
    # the held-out films in a frame: measured 55.2% (v4.1; mobilefacenet 51.9%); a broken export or wrong
    # preprocessing falls far below
    folder = shared_dir / "data/sfew_train"
    report = evaluate_classifier(folder, "mobilefacenet8", pad=0.5, labels_csv=folder / "labels.csv",
                                 validation_split_by="movie")
    assert report["n"] == 183 and report["accuracy"] >= 0.53


def test_report_counts_false_contempt_and_the_seven_basic_classes() -> None:
    from emotion.model.evaluate import classification_report

    truth = ["contempt"] * 4 + ["happiness"] * 4 + ["anger"] * 2
    pred = ["contempt", "contempt", "neutral", "no_face", "happiness", "happiness", "contempt", "happiness",
            "anger", "contempt"]
    labels = ["neutral", "happiness", "anger", "contempt"]
    report = classification_report(truth, pred, labels)
    assert report["false_contempt"] == {"n": 6, "called_contempt": 2, "rate": 0.3333}
    assert report["basic7"] == {"n": 6, "accuracy": 0.6667, "macro_recall": 0.625}  # happiness 3/4, anger 1/2
    assert report["per_class"]["contempt"] == {"recall": 0.5, "precision": 0.5, "n": 4}
    assert report["per_class"]["happiness"] == {"recall": 0.75, "precision": 1.0, "n": 4}
    assert report["confusion"]["contempt"] == {"contempt": 2, "neutral": 1, "no_face": 1}
    assert report["accuracy"] == 0.6 and report["macro_recall"] == pytest.approx((0.5 + 0.75 + 0.5) / 3, abs=1e-4)


def test_new_columns_and_a_candidate_file_on_a_small_folder(model_dir: Path, contempt_folder: Path,
                                                           tmp_path: Path) -> None:
    from emotion.cli import main
    from emotion.core.manifest import load_manifest
    from emotion.core.model_files import runnable_model_path

    report = evaluate_classifier(contempt_folder, classifier="mobilefacenet8")
    confusion = report["confusion"]
    called = sum(row.get("contempt", 0) for label, row in confusion.items() if label != "contempt")
    assert report["false_contempt"] == {"n": 3, "called_contempt": called, "rate": round(called / 3, 4)}
    assert report["basic7"]["n"] == 3
    assert report["basic7"]["accuracy"] == round(confusion["happiness"].get("happiness", 0) / 3, 4)
    as_contempt = sum(row.get("contempt", 0) for row in confusion.values())
    hits = confusion["contempt"].get("contempt", 0)
    assert report["per_class"]["contempt"]["precision"] == (round(hits / as_contempt, 4) if as_contempt else 0.0)
    # the installed graph run as a candidate file gives the same answers
    installed = runnable_model_path(load_manifest().get("mobilefacenet8"), model_dir)
    out = tmp_path / "r.json"
    assert main(["eval-classify", str(contempt_folder), "--classifier", "mobilefacenet8", "--classifier-file",
                 str(installed), "--json", str(out)]) == 0
    same = json.loads(out.read_text())
    assert same["confusion"] == confusion and same["classifier_file"] == str(installed)
    # a file whose labels or preprocessing disagree with the entry is refused with a clear error
    ferplus = runnable_model_path(load_manifest().get("ferplus"), model_dir)
    assert main(["eval-classify", str(contempt_folder), "--classifier", "mobilefacenet8", "--classifier-file",
                 str(ferplus)]) == 2
