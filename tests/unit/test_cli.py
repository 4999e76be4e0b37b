"""The `emotion` console script end to end, in subprocesses, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.corpus import bad_inputs

EMOTION = shutil.which("emotion", path=str(Path(sys.executable).parent)) or "emotion"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([EMOTION, *args], capture_output=True, text=True, timeout=600, env=os.environ.copy())
    if check and proc.returncode != 0:
        raise AssertionError(f"emotion {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def test_analyze_prints_the_result_and_writes_an_annotated_image(model_dir, scenes, tmp_path):
    out = tmp_path / "annotated.png"
    proc = run("analyze", str(scenes / "fr_two_people.jpg"), "--annotate", str(out))
    result = json.loads(proc.stdout)
    assert len(result["faces"]) == 2 and result["image"] == {"width": 1126, "height": 661}
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_several_images_with_the_light_classifier(model_dir, scenes, tmp_path):
    target = tmp_path / "r.json"
    run("analyze", str(scenes / "fa_bbt3.jpg"), str(scenes / "fp_multiface.jpg"), "--classifier", "mini_xception",
        "--json", str(target))
    results = json.loads(target.read_text())
    assert [len(r["faces"]) for r in results] == [5, 6]
    assert all(r["models"]["classifier"].startswith("oarriaga") for r in results)


def test_bad_file_reports_an_error_and_keeps_going(model_dir, scenes, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(bad_inputs()["jpeg_truncated"][0])
    proc = run("analyze", str(bad), str(scenes / "fr_two_people.jpg"), check=False)
    assert proc.returncode == 1
    results = [json.loads(line) for line in proc.stdout.splitlines()]  # JSON Lines: one result per input
    assert results[0]["error"]["code"] == "undecodable_image"
    assert len(results[1]["faces"]) == 2
    assert "Traceback" not in proc.stderr


def test_unknown_classifier_is_a_clear_error(model_dir, scenes):
    proc = run("analyze", str(scenes / "fr_two_people.jpg"), "--classifier", "nope", check=False)
    assert proc.returncode == 2 and "invalid choice: 'nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_models_list(model_dir):
    listing = json.loads(run("models", "list").stdout)
    names = {m["name"]: m for m in listing["models"]}
    assert {"yunet", "mobilefacenet", "mini_xception"} <= set(names)
    assert all(m["present"] for m in names.values())


def test_eval_classify_small_subset(model_dir, shared_dir):
    report = json.loads(run("eval-classify", str(shared_dir / "data/fer2013_publictest/jpg"), "--limit", "8").stdout)
    assert report["n"] == 56 and 0.0 <= report["accuracy"] <= 1.0
    seven = {"anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"}
    assert set(report["per_class"]) == seven | {"contempt"}  # the 8-class default's labels, though no crop shows it
    assert report["per_class"]["contempt"]["n"] == 0
    assert report["upscaled"] == 56 and 0 <= report["no_face"] <= 56  # 48 px crops: enlarged for the detector


def test_eval_detect_keeps_published_level_on_full_resolution_wider(model_dir, shared_dir):
    folder = shared_dir / "data/detection/wider_val_fullres"
    report = json.loads(run("eval-detect", str(folder / "images"), "--gt", str(folder / "gt_boxes.csv")).stdout)
    assert report["n_images"] == 4 and report["n_faces"] == 327
    # Raw YuNet measured 80.7 AP here; the default detection size may cost at most 3 points.
    assert report["ap50"] >= 77.7


@pytest.mark.slow
def test_bench_prints_the_figures(model_dir):
    report = json.loads(run("bench", "--repeats", "2", "--threads", "single").stdout)
    single = report["single_thread"]
    for key in ("warm_ms", "per_face_ms", "scenes_ms", "cold_start_s", "peak_rss_mb"):
        assert key in single
    assert single["warm_ms"]["median"] > 0 and single["peak_rss_mb"] > 50
    stages = single["scene_stages_ms"]
    assert set(stages) == {"decode", "detect", "classify", "decode_and_detect"}
    assert all(0 < stages[s]["median"] < single["scenes_ms"]["p95"] for s in stages)


def test_train_and_export_hand_their_options_to_the_training_tools():
    assert "--checkpoint" in run("export", "--help").stdout
    assert "--max-minutes" in run("train", "--help").stdout
    proc = run("analyze", "--no-such-option", "x.jpg", check=False)
    assert proc.returncode == 2 and "unrecognized arguments" in proc.stderr


def test_our_ferplus_model_reports_eight_emotions(model_dir, scenes):
    result = json.loads(run("analyze", str(scenes / "fp_multiface.jpg"), "--classifier", "ferplus").stdout)
    assert len(result["faces"]) == 6
    assert all(set(face["emotions"]) >= {"contempt", "neutral", "happiness"} for face in result["faces"])
    assert sum(face["dominant_emotion"] == "happiness" for face in result["faces"]) >= 4
