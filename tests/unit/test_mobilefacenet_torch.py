"""The dequantised MobileFaceNet against onnxruntime on real aligned faces, and the 8-class fine-tuning recipe on a
tiny cache: two steps, resume, temperature, ONNX export with checked metadata."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the fine-tuning tools need PyTorch (the train extra)")
pytest.importorskip("onnx", reason="the fine-tuning tools need onnx (the train extra)")

from emotion.model.training import VOCABULARY  # noqa: E402
from emotion.model.training.finetune import (  # noqa: E402
    SHARED_COLUMNS,
    FinetuneConfig,
    _deadline_seconds,
    augment,
    average_into,
    build_model,
    fit_temperature,
    to_input,
    train,
)
from emotion.model.training.mobilefacenet import UPSTREAM_LABELS, DequantisedMobileFaceNet  # noqa: E402

SOURCE = "facial_expression_recognition_mobilefacenet_2022july_int8.onnx"


@pytest.fixture(scope="module")
def faces_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 faces of each cached set, aligned by the real detector, with the teacher's logits."""
    from emotion.model.training.faces import build_all

    out = tmp_path_factory.mktemp("faces")
    build_all(out, limit=8)
    return out


def test_module_matches_onnxruntime_on_real_faces(shared_dir: Path, faces_dir: Path) -> None:
    from emotion.model.training.faces import load_faces, to_network
    from emotion.model.training.mobilefacenet import compare_with_onnxruntime

    images = np.concatenate([load_faces(faces_dir / f"{s}.npz")["images"] for s in
                             ("sfew_val", "sfew_train", "ferplus_publictest", "ferplus_train")])
    report = compare_with_onnxruntime(shared_dir / "models" / SOURCE, to_network(images))
    assert report["n"] == 32
    # int8 emulation reproduces onnxruntime's integer arithmetic: identical logits on nearly every face; the one
    # float conv (7x7 depthwise) may sum in another order and move a face by a couple of output steps (0.115)
    assert report["int8_emulated_faces_identical"] >= 30
    assert report["int8_emulated_max_abs_diff"] <= 0.35
    assert report["int8_emulated_argmax_agreement"] == 1.0
    # plain fp32 (what is trained): activations are no longer rounded, logits move but mostly keep their argmax
    assert report["fp32_argmax_agreement"] >= 0.8 and report["fp32_max_abs_diff"] < 5


def test_eight_class_head_starts_as_the_upstream_classifier(shared_dir: Path) -> None:
    cfg = FinetuneConfig(source_onnx=str(shared_dir / "models" / SOURCE))
    net = build_model(cfg).eval()
    upstream = DequantisedMobileFaceNet(shared_dir / "models" / SOURCE).eval()
    x = torch.rand(2, 3, 112, 112) * 2 - 1
    with torch.no_grad():
        eight, seven = net(x), upstream(x)
    assert eight.shape == (2, len(VOCABULARY)) and VOCABULARY[7] == "contempt"
    assert [VOCABULARY[c] for c in SHARED_COLUMNS] == list(UPSTREAM_LABELS)
    assert torch.allclose(eight[:, SHARED_COLUMNS], seven, atol=1e-4)
    frozen = [p for p in net.backbone.parameters() if not p.requires_grad]
    assert frozen and any(p.requires_grad for p in net.backbone.parameters())


def test_augmentations_keep_shape_and_range_and_swap_grey_and_colour() -> None:
    rng = np.random.default_rng(0)
    colour = rng.integers(0, 256, (4, 112, 112, 3), dtype=np.uint8)
    grey = np.repeat(rng.integers(0, 256, (4, 112, 112, 1), dtype=np.uint8), 3, axis=3)
    gen = torch.Generator().manual_seed(0)
    to_grey = FinetuneConfig(p_grey=1.0, p_tint=0.0, p_occlude=0.0, brightness=0.0, contrast=0.0)
    out = augment(to_input(colour), to_grey, gen)
    assert out.shape == (4, 3, 112, 112) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert float((out - out.mean(1, keepdim=True)).abs().max()) < 1e-5
    to_colour = FinetuneConfig(p_grey=0.0, p_tint=1.0, tint=0.2)
    out = augment(to_input(grey), to_colour, gen)
    assert float((out - out.mean(1, keepdim=True)).abs().amax(dim=(1, 2, 3)).min()) > 0.01


def test_temperature_fit_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (4000, 8)).astype(np.float32)
    p = np.exp(logits / 2.0)
    p /= p.sum(1, keepdims=True)
    labels = np.array([rng.choice(8, p=row) for row in p])
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)


def test_two_steps_resume_and_export(shared_dir: Path, faces_dir: Path, tmp_path: Path) -> None:
    from emotion.core.model_files import verify_metadata
    from emotion.model.training.export8 import main as export_main

    cfg = FinetuneConfig(source_onnx=str(shared_dir / "models" / SOURCE), faces_dir=str(faces_dir),
                         out_dir=str(tmp_path / "run"), batch_size=4, max_steps=2, eval_every=2, warmup_steps=1)
    first = train(cfg)
    assert first["step"] == 2 and first["temperature"] > 0
    second = train(cfg.model_copy(update={"max_steps": 3}))  # resumes from last.pt
    assert second["step"] == 3
    records = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records].count("config") == 1

    out = tmp_path / "m8.onnx"
    assert export_main(["--checkpoint", str(tmp_path / "run" / "final.pt"), "--out", str(out),
                        "--report", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["input_shape"][0] == "N" and report["agreement"]["max_abs_logit_diff"] < 1e-3
    assert report["prelu_rewritten"] == 33

    import onnxruntime as ort

    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    md = dict(sess.get_modelmeta().custom_metadata_map)
    verify_metadata(md, VOCABULARY, "align112_rgb_pm1", "logits")
    assert float(md["temperature"]) == pytest.approx(second["temperature"], rel=1e-3)
    logits = sess.run(None, {"data": np.zeros((3, 3, 112, 112), np.float32)})[0]
    assert logits.shape == (3, 8)


def test_sfew_rows_get_their_own_smoothing_and_distillation_weight() -> None:
    import torch.nn.functional as F

    from emotion.model.training.finetune import loss_fn

    gen = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(4, 8, generator=gen), torch.randn(4, 7, generator=gen)
    targets = torch.eye(8)[torch.tensor([0, 1, 2, 3])]
    is_sfew = torch.tensor([False, False, True, True])
    cfg = FinetuneConfig(distill_weight=0.1, sfew_distill_weight=0.5, sfew_label_smoothing=0.3)
    smoothed = torch.where(is_sfew.unsqueeze(1), targets * 0.7 + 0.3 / 8, targets)
    ce = -(smoothed * F.log_softmax(logits, 1)).sum(1)
    kd = F.kl_div(F.log_softmax(logits[:, SHARED_COLUMNS] / 2, 1), F.log_softmax(teacher / 2, 1),
                  log_target=True, reduction="none").sum(1) * 4
    expected = ce.mean() + (torch.tensor([0.1, 0.1, 0.5, 0.5]) * kd).mean()
    assert float(loss_fn(logits, targets, teacher, cfg, is_sfew)) == pytest.approx(float(expected), rel=1e-5)
    plain = FinetuneConfig(distill_weight=0.1)  # no SFEW options: every row alike
    assert float(loss_fn(logits, targets, teacher, plain, is_sfew)) == pytest.approx(
        float(loss_fn(logits, targets, teacher, plain)), rel=1e-6)


def test_ferplus_rows_move_towards_their_majority_label() -> None:
    import torch.nn.functional as F

    from emotion.model.training.finetune import loss_fn

    gen = torch.Generator().manual_seed(1)
    logits, teacher = torch.randn(3, 8, generator=gen), torch.randn(3, 7, generator=gen)
    votes = torch.tensor([[0.6, 0.3, 0.1, 0, 0, 0, 0, 0], [0.1, 0.2, 0.7, 0, 0, 0, 0, 0], [0, 0, 0, 1.0, 0, 0, 0, 0]])
    is_sfew = torch.tensor([False, False, True])
    cfg = FinetuneConfig(distill_weight=0.0, sfew_distill_weight=0.0, ferplus_majority_mix=0.5,
                         sfew_label_smoothing=0.2)
    by_hand = torch.tensor([[0.8, 0.15, 0.05, 0, 0, 0, 0, 0], [0.05, 0.1, 0.85, 0, 0, 0, 0, 0],
                            [0.025, 0.025, 0.025, 0.825, 0.025, 0.025, 0.025, 0.025]])
    expected = -(by_hand * F.log_softmax(logits, 1)).sum(1).mean()
    assert float(loss_fn(logits, votes, teacher, cfg, is_sfew)) == pytest.approx(float(expected), rel=1e-5)


def test_mean_of_sets_temperature_weighs_a_small_set_like_a_large_one() -> None:
    rng = np.random.default_rng(2)

    def sample(n: int, temperature: float) -> tuple[np.ndarray, np.ndarray]:
        logits = rng.normal(0, 3, (n, 8))
        p = np.exp(logits / temperature)
        p /= p.sum(1, keepdims=True)
        return logits, np.array([rng.choice(8, p=row) for row in p])

    big, small = sample(4000, 1.0), sample(400, 3.0)
    pooled = fit_temperature(np.concatenate([big[0], small[0]]), np.concatenate([big[1], small[1]]))
    balanced = fit_temperature([big[0], small[0]], [big[1], small[1]])
    assert pooled < 1.4 < balanced < 2.5  # the large set dominates the pooled fit, not the balanced one


def test_weight_averaging_meets_half_way_and_leaves_the_temperature(shared_dir: Path) -> None:
    cfg = FinetuneConfig(source_onnx=str(shared_dir / "models" / SOURCE))
    model, other = build_model(cfg), build_model(cfg)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
        other.temperature.fill_(3.0)
        model.temperature.fill_(1.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    average_into(model, other.state_dict(), 0.5)
    after = model.state_dict()
    assert torch.allclose(after["head.weight"], before["head.weight"] + 0.5)
    first_conv = next(k for k, v in after.items() if k.startswith("backbone.") and v.dim() == 4)
    assert torch.allclose(after[first_conv], before[first_conv] + 0.5)
    assert float(after["temperature"]) == 1.5


def test_flip_distillation_is_kl_from_the_mirror_ensemble(shared_dir: Path) -> None:
    from emotion.model.training.finetune import flip_distillation

    model = build_model(FinetuneConfig(source_onnx=str(shared_dir / "models" / SOURCE))).eval()
    x = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (3, 3, 112, 112)).astype(np.float32))
    with torch.no_grad():
        student = model.logits(x) + torch.tensor([0.5, 0, 0, 0, 0, 0, 0, -0.5])
        mirrored = model.logits(x.flip(3))
        loss = flip_distillation(student, model, x, temperature=2.0)
    target = (torch.softmax(model.logits(x).detach() / 2, 1) + torch.softmax(mirrored / 2, 1)) / 2
    by_hand = (target * (target.log() - torch.log_softmax(student / 2, 1))).sum(1).mean() * 4
    assert float(loss) > 0 and torch.allclose(loss, by_hand, rtol=1e-4)
    symmetric = (x + x.flip(3)) / 2  # a face that is its own mirror image: the ensemble is the network itself
    with torch.no_grad():
        assert float(flip_distillation(model.logits(symmetric), model, symmetric, 2.0)) < 1e-5


def test_a_deadline_earlier_in_the_day_means_tomorrow() -> None:
    late = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)
    assert _deadline_seconds("01:00", late) == 90 * 60
    assert _deadline_seconds("23:45", late) == 15 * 60
    assert _deadline_seconds(None, late) is None


def test_config_kind_picks_the_recipe() -> None:
    from emotion.model.training.recipes import is_finetune_config

    root = Path(__file__).resolve().parents[2] / "model" / "configs"
    assert all(is_finetune_config(root / f"mobilefacenet8{v}.json") for v in ("", "_v2", "_v3", "_v4", "_v6"))
    assert not is_finetune_config(root / "ferplus.json")
    from emotion.model.training.finetune import load_config

    stage6 = load_config(root / "mobilefacenet8_v6.json")  # unknown keys are refused
    assert stage6.affect_fraction > 0 and stage6.default_teacher == stage6.init_from == "model/mobilefacenet8.onnx"


def test_stage_two_starts_from_stage_one_and_exports_int8(shared_dir: Path, faces_dir: Path, tmp_path: Path) -> None:
    """``emotion train`` on a stage-2 config (init_from) and ``emotion export --int8``, through the CLI."""
    import onnx
    import onnxruntime as ort

    from emotion.cli import main as cli
    from emotion.model.optimize import prelu_sites
    from emotion.model.training.export import quantize_int8
    from emotion.model.training.export8 import calibration_feeds

    base = {"source_onnx": str(shared_dir / "models" / SOURCE), "faces_dir": str(faces_dir), "batch_size": 4,
            "eval_every": 1, "warmup_steps": 1}
    stage1 = tmp_path / "stage1.json"
    stage1.write_text(json.dumps({**base, "out_dir": str(tmp_path / "s1"), "max_steps": 1}))
    assert cli(["train", str(stage1)]) == 0
    stage2 = tmp_path / "stage2.json"
    stage2.write_text(json.dumps({**base, "out_dir": str(tmp_path / "s2"), "max_steps": 0, "distill_weight": 0.1,
                                  "init_from": str(tmp_path / "s1" / "final.pt"), "sfew_distill_weight": 0.5,
                                  "sfew_label_smoothing": 0.3, "temperature_fit": "mean_of_sets"}))
    assert cli(["train", str(stage2)]) == 0
    first = torch.load(tmp_path / "s1" / "final.pt", weights_only=False)["state_dict"]
    second = torch.load(tmp_path / "s2" / "final.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(first[k], second[k]) for k in first if k != "temperature")  # no step: stage 1's weights

    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({**base, "out_dir": str(tmp_path / "s3"), "init_from": str(tmp_path / "nope.pt")}))
    with pytest.raises(SystemExit, match="does not exist"):
        cli(["train", str(missing)])

    out, out8 = tmp_path / "m8.onnx", tmp_path / "m8_int8.onnx"
    assert cli(["export", "--checkpoint", str(tmp_path / "s2" / "final.pt"), "--out", str(out), "--int8", str(out8),
                "--calib", "4", "--report", str(tmp_path / "report.json")]) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["int8"]["accuracy_cost_points"]) >= {"sfew_val", "ferplus_holdout"}
    sess = ort.InferenceSession(str(out8), providers=["CPUExecutionProvider"])
    md = dict(sess.get_modelmeta().custom_metadata_map)
    assert "FER+ and SFEW" in md["quantization"] and json.loads(md["labels"]) == list(VOCABULARY)
    assert any(n.op_type == "DequantizeLinear" for n in onnx.load(str(out8)).graph.node)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    assert sess.run(None, {"data": x})[0].shape == (2, 8)
    # every PRelu computed on uint8 codes, the precise form where the calibration faces asked for it
    prelu = report["int8"]["prelu"]
    assert prelu["prelu_codes"] + prelu["prelu_split"] == 33 and len(prelu["precise"]) == prelu["prelu_split"]
    assert prelu_sites(onnx.load(str(out8))) == [] and "PRelu on uint8 codes" in md["quantization"]
    # an int8 graph from before the rewrite: --from-int8 rewrites it alone (no checkpoint); a rewritten one is refused
    plain = tmp_path / "plain_int8.onnx"
    fp32_md = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    quantize_int8(out, plain, calibration_feeds(faces_dir, 4, 0), fp32_md)
    again = tmp_path / "again.onnx"
    assert cli(["export", "--from-int8", str(plain), "--int8", str(again), "--faces-dir", str(faces_dir),
                "--calib", "4", "--report", str(tmp_path / "again.json")]) == 0
    assert prelu_sites(onnx.load(str(again))) == [] and prelu_sites(onnx.load(str(plain)))
    assert json.loads((tmp_path / "again.json").read_text())["prelu"]["prelu_codes"] > 0
    with pytest.raises(SystemExit) as refused:
        cli(["export", "--from-int8", str(out8), "--int8", str(tmp_path / "x.onnx"), "--faces-dir", str(faces_dir)])
    assert refused.value.code == 2

    # a later run can start from a shipped int8 file: the module then computes the graph's float-activation network
    from emotion.model.optimize import float_activations
    from emotion.model.training.faces import load_faces, to_network
    from emotion.model.training.finetune import build_model, load_int8_export, predict_logits

    images = load_faces(faces_dir / "sfew_val.npz")["images"]
    reference = ort.InferenceSession(float_activations(onnx.load(str(plain))).SerializeToString(),
                                     providers=["CPUExecutionProvider"])
    for graph in (plain, out8):  # before and after the PReLU rewrite (whose requantised biases move by < 1e-3)
        net = build_model(FinetuneConfig.model_validate(base))
        load_int8_export(net, graph)
        got = predict_logits(net, images) / float(net.temperature)
        want = reference.run(None, {"data": to_network(images)})[0]
        assert np.abs(got - want).max() < (1e-4 if graph == plain else 0.05)
    stage3 = tmp_path / "stage3.json"
    stage3.write_text(json.dumps({**base, "out_dir": str(tmp_path / "s4"), "max_steps": 0, "init_from": str(out8)}))
    assert cli(["train", str(stage3)]) == 0 and (tmp_path / "s4" / "final.pt").is_file()


def test_affect_rows_are_not_distilled_and_the_default_teaches_the_others() -> None:
    import torch.nn.functional as F

    from emotion.model.training.finetune import loss_fn

    gen = torch.Generator().manual_seed(3)
    logits, teacher, default = torch.randn(4, 8, generator=gen), torch.randn(4, 7, generator=gen), torch.randn(
        4, 8, generator=gen)
    targets = torch.eye(8)[torch.tensor([0, 1, 5, 7])]
    is_sfew = torch.tensor([False, True, False, False])
    is_affect = torch.tensor([False, False, True, True])
    cfg = FinetuneConfig(distill_weight=0.1, sfew_distill_weight=0.5, affect_label_smoothing=0.1,
                         default_teacher_weight=1.0)
    smooth = torch.tensor([0.0, 0.0, 0.1, 0.1]).unsqueeze(1)
    ce = -((targets * (1 - smooth) + smooth / 8) * F.log_softmax(logits, 1)).sum(1)
    kd7 = F.kl_div(F.log_softmax(logits[:, SHARED_COLUMNS] / 2, 1), F.log_softmax(teacher / 2, 1),
                   log_target=True, reduction="none").sum(1) * 4
    kd8 = F.kl_div(F.log_softmax(logits / 2, 1), F.log_softmax(default / 2, 1),
                   log_target=True, reduction="none").sum(1) * 4
    expected = ce.mean() + (torch.tensor([0.1, 0.5, 0, 0]) * kd7).mean() + (torch.tensor([1.0, 1, 0, 0]) * kd8).mean()
    got = loss_fn(logits, targets, teacher, cfg, is_sfew, is_affect, default)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)
    # without the new arguments nothing changes for the earlier stages
    assert float(loss_fn(logits, targets, teacher, cfg, is_sfew)) == pytest.approx(
        float(ce[:2].sum() / 4 + (-(targets[2:] * F.log_softmax(logits[2:], 1)).sum(1)).sum() / 4
              + (torch.tensor([0.1, 0.5, 0.1, 0.1]) * kd7).mean()), rel=1e-5)


def test_class_balanced_draws_treat_a_rare_class_like_a_common_one() -> None:
    from emotion.model.training.finetune import class_balanced_cdf

    labels = np.array([1] * 900 + [7] * 100)
    cdf = class_balanced_cdf(labels, 1.0)
    draws = labels[np.searchsorted(cdf, np.random.default_rng(0).random(4000), side="right")]
    assert 0.45 < (draws == 7).mean() < 0.55
    natural = class_balanced_cdf(labels, 0.0)
    assert natural[899] == pytest.approx(0.9)
    halved = class_balanced_cdf(labels, 1.0, {"contempt": 0.5})  # label 7 is contempt: drawn half as often
    assert halved[899] == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def affect_faces(shared_dir: Path, faces_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``faces_dir`` plus a small affect cache built by the real tool: 12 SFEW crops of 3 classes masked as the
    effectnet crops are, and 4 FER+ contempt crops with their background, each its own group."""
    import csv
    import shutil

    import cv2

    from emotion.model.training.affect import apply_mask, build_faces

    root = tmp_path_factory.mktemp("affect")
    data, faces = root / "data", root / "faces"
    shutil.copytree(faces_dir, faces)
    rows = []
    with open(shared_dir / "data/sfew_train/labels.csv", newline="") as fh:
        sfew = list(csv.DictReader(fh))
    ellipse = np.zeros((200, 200), np.uint8)
    cv2.ellipse(ellipse, (100, 108), (70, 90), 0, 0, 360, 1, -1)
    for label in ("happiness", "anger", "surprise"):
        for r in [r for r in sfew if r["label"] == label][:4]:
            crop = cv2.resize(cv2.imread(str(shared_dir / "data/sfew_train" / r["image"])), (200, 200))
            rows.append((f"{label}/effectnet_{len(rows)}.jpg", label, "effectnet", apply_mask(crop, ellipse == 1)))
    with open(shared_dir / "data/fer2013_publictest/labels.csv", newline="") as fh:
        fer = [r for r in csv.DictReader(fh) if r["ferplus_majority"] == "contempt"][:4]
    for r in fer:
        crop = cv2.resize(cv2.imread(str(shared_dir / "data/fer2013_publictest" / r["ferplus_png"])), (224, 224))
        rows.append((f"contempt/contempt_{len(rows)}.jpg", "contempt", "contempt", crop))
    data.mkdir()
    with open(data / "labels.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "label", "source", "group", "group_label_conflict"])
        for i, (name, label, source, image) in enumerate(rows):
            (data / name).parent.mkdir(exist_ok=True)
            cv2.imwrite(str(data / name), image)
            writer.writerow([name, label, source, f"g{i}", 0])
    build_faces(data, faces)
    return faces


def test_stage_six_trains_on_affect_faces_with_the_default_as_teacher(shared_dir: Path, affect_faces: Path,
                                                                       tmp_path: Path) -> None:
    import onnxruntime as ort

    from emotion.model.training.faces import load_faces, to_network

    val, train_set = load_faces(affect_faces / "affect_val.npz"), load_faces(affect_faces / "affect_train.npz")
    assert len(val["images"]) == 4 and len(train_set["images"]) == 12  # a group of each class in validation
    assert train_set["masked"].sum() == 9 and set(val["labels"]) == {1, 2, 4, 7}
    default = Path(__file__).resolve().parents[2] / "model" / "mobilefacenet8.onnx"
    cfg = FinetuneConfig(source_onnx=str(shared_dir / "models" / SOURCE), faces_dir=str(affect_faces),
                         out_dir=str(tmp_path / "s6"), batch_size=8, max_steps=2, eval_every=1, warmup_steps=1,
                         affect_fraction=0.5, default_teacher=str(default), default_teacher_weight=1.0,
                         distill_weight=0.0, init_from=str(default), temperature_fit="mean_of_sets")
    final = train(cfg)
    assert final["step"] == 2 and final["affect_val"]["n"] == 4 and final["temperature"] > 0
    cached = sorted(affect_faces.glob("teacher8_*_sfew_train.npy"))
    assert len(cached) == 1  # the default's logits, computed once
    sess = ort.InferenceSession(str(default), providers=["CPUExecutionProvider"])
    images = load_faces(affect_faces / "sfew_train.npz")["images"][:4]
    want = sess.run(None, {"data": to_network(images)})[0]
    assert np.abs(np.load(cached[0])[:4] - want).max() < 1e-3


def test_interpolation_spans_the_run_and_its_start(shared_dir: Path, affect_faces: Path, tmp_path: Path) -> None:
    """WiSE-FT mix: start weight 0 is the fine-tuned net, 1 its starting graph; the picked mix is a checkpoint
    the exporter loads, with the figures the sweep reports (7-class accuracy, false contempt, contempt calls on the
    unlabelled WIDER photo faces), and the same figures for a shipped graph."""
    import onnxruntime as ort

    from emotion.model.training.export8 import load_final
    from emotion.model.training.faces import load_faces, to_network
    from emotion.model.training.finetune import predict_logits
    from emotion.model.training.interpolate import (
        contempt_recall,
        figures,
        reference,
        set_figures,
        shift_contempt,
        sweep,
        write_mix,
    )

    default = Path(__file__).resolve().parents[2] / "model" / "mobilefacenet8.onnx"
    cfg = FinetuneConfig(source_onnx=str(shared_dir / "models" / SOURCE), faces_dir=str(affect_faces),
                         out_dir=str(tmp_path / "run"), batch_size=8, max_steps=3, eval_every=10, warmup_steps=1,
                         lr_backbone=1e-2, lr_head=1e-2, ema_decay=0.0, affect_fraction=0.5, distill_weight=0.0,
                         init_from=str(default))
    train(cfg)
    final = tmp_path / "run" / "final.pt"
    rows, (net, _, fine, start, sets) = sweep(final, [0.0, 1.0])
    assert [r["start_weight"] for r in rows] == [0.0, 1.0] and set(sets) == {"ferplus_holdout", "sfew_val",
                                                                            "affect_val", "wider_faces"}
    n_wider = len(sets["wider_faces"]["images"])  # unlabelled photo faces: only a count of contempt calls
    assert n_wider > 0 and rows[0]["wider_faces"]["n"] == n_wider
    images = load_faces(affect_faces / "sfew_val.npz")["images"]
    ends = []
    for state in (fine, start):
        net.load_state_dict(state)
        ends.append(predict_logits(net, images))
    assert np.abs(ends[0] - ends[1]).max() > 0.1  # the run moved away from its start
    assert np.allclose(predict_logits(net, images), ends[1])  # after the sweep's last mix (1.0): the start
    half = write_mix(final, 0.5, tmp_path / "mix.pt")
    mixed, _, ck = load_final(tmp_path / "mix.pt")
    assert ck["start_weight"] == 0.5 and half["temperature"] == ck["temperature"] > 0
    got = predict_logits(mixed, images)
    assert not np.allclose(got, ends[0]) and not np.allclose(got, ends[1])
    z = np.array([[0, 3, 0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 0, 5], [0, 0, 0, 0, 0, 0, 0, 5]], np.float32)
    rec = figures(z, np.array([1, 2, 7]))  # happiness right; surprise called contempt; contempt right
    assert rec["basic7"] == 0.5 and rec["false_contempt"] == 0.5 and rec["accuracy"] == round(2 / 3, 4)

    # the contempt prior: a shift takes exactly S nats from the contempt logit, in the sweep and in the written head
    shifted = shift_contempt(z, 6.0)
    assert contempt_recall(z, np.array([1, 2, 7])) == 1.0 and contempt_recall(shifted, np.array([1, 2, 7])) == 0.0
    assert figures(shifted, np.array([1, 2, 7]))["false_contempt"] == 0.0
    write_mix(final, 0.5, tmp_path / "mix_shift.pt", contempt_shift=1.5)
    moved, _, ck = load_final(tmp_path / "mix_shift.pt")
    assert ck["contempt_shift"] == 1.5
    diff = predict_logits(moved, images) - got
    assert np.allclose(diff[:, 7], -1.5, atol=1e-4) and np.abs(diff[:, :7]).max() < 1e-4
    rows, _ = sweep(final, [0.5], shifts=(0.0, 1.5))
    assert [r["contempt_shift"] for r in rows] == [0.0, 1.5] and "contempt_recall" in rows[0]["affect_val"]
    assert rows[1]["wider_faces"]["called_contempt"] <= rows[0]["wider_faces"]["called_contempt"]

    # the shift rule's reference: the same figures for a shipped graph, through onnxruntime
    ref = reference(default, affect_faces)
    sess = ort.InferenceSession(str(default), providers=["CPUExecutionProvider"])
    for name in ("sfew_val", "wider_faces"):
        ds = load_faces(affect_faces / f"{name}.npz")
        z = np.concatenate([sess.run(None, {"data": to_network(x[None])})[0] for x in ds["images"]])
        assert ref[name] == set_figures(z, ds["labels"])
    assert set(ref["sfew_val"]) >= {"accuracy", "false_contempt", "contempt_recall"}


def test_activation_rounding_is_onnxruntimes_quantize_dequantize() -> None:
    """``qat.round_uint8`` against a real QuantizeLinear -> DequantizeLinear pair (round half to even, clipping),
    with straight-through gradients."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from emotion.model.training.qat import round_uint8

    lo, hi = -2.5, 7.25
    scale = np.float32((hi - lo) / 255)
    zero = round(-lo / float(scale))
    graph = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]), helper.make_node("DequantizeLinear",
                                                                                        ["q", "s", "z"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [helper.make_tensor("s", TensorProto.FLOAT, [], [float(scale)]), helper.make_tensor("z", TensorProto.UINT8,
                                                                                             [], [zero])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    ties = (np.arange(-40, 300) + 0.5 - zero) * scale  # halfway between two codes, and beyond both ends
    x = np.concatenate([rng.normal(2, 4, 5000), ties]).astype(np.float32)
    want = sess.run(None, {"x": x})[0]
    xt = torch.from_numpy(x).requires_grad_(True)
    got = round_uint8(xt, lo, hi)
    assert (got.detach().numpy() == want).mean() >= 0.999  # a float32 tie may land on either side of x / scale
    assert np.abs(got.detach().numpy() - want).max() <= scale * 1.0001
    got.sum().backward()
    assert xt.grad is not None and torch.equal(xt.grad, torch.ones_like(xt))


def test_quantisation_aware_net_rounds_as_its_int8_export(shared_dir: Path, faces_dir: Path, tmp_path: Path) -> None:
    """The ranges a quantisation-aware net measures are those the exporter's calibrator finds; its rounded weights
    and PReLU slopes are the int8 graph's; and it is closer to the int8 graph than the float net is."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from emotion.model.training.export import quantize_int8
    from emotion.model.training.export8 import calibration_feeds, export, prelus_on_codes
    from emotion.model.training.faces import load_faces, to_network
    from emotion.model.training.finetune import predict_logits
    from emotion.model.training.qat import calibration_faces, round_slope, round_weight

    net = build_model(FinetuneConfig(source_onnx=str(shared_dir / "models" / SOURCE))).eval()
    images = np.concatenate([load_faces(faces_dir / f"{s}.npz")["images"] for s in ("sfew_val", "ferplus_publictest")])
    fp32_logits = predict_logits(net, images)
    fq = net.quantisation_aware(calibration_faces(faces_dir, 4, 0))
    fp32, int8 = tmp_path / "f.onnx", tmp_path / "q.onnx"
    export(net, fp32, {})
    feeds = calibration_feeds(faces_dir, 4, 0)
    quantize_int8(fp32, int8, feeds, {})
    prelus_on_codes(int8, int8, feeds)
    model = onnx.load(str(int8))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}

    convs = [out for kind, _, out, _ in net.backbone._ops if kind == "conv"]
    scales = [init["/Conv_output_0_scale" if j == 0 else f"/Conv_{j}_output_0_scale"] for j in range(len(convs))]
    for name, scale in [*zip(convs, scales, strict=True), ("logits", init["/head/Gemm_output_0_scale"])]:
        lo, hi = fq.ranges[name]
        assert (max(hi, 0) - min(lo, 0)) / 255 == pytest.approx(float(scale), rel=1e-5), name

    def dequantised(name: str) -> np.ndarray:
        (node,) = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] == name]
        q, s, z = (init[i].astype(np.float64) for i in node.input[:3])
        if s.ndim == 1 and q.ndim > 1:
            s, z = s.reshape(-1, *[1] * (q.ndim - 1)), z.reshape(-1, *[1] * (q.ndim - 1))
        return (q - z) * s

    assert np.allclose(round_weight(net.head.weight).detach().numpy(), dequantised("head.weight_quantized"), atol=1e-6)
    first_slope = net.backbone.params[net.backbone.prelu_slope_names()[0]]
    slope_name = next(n.input[1] for n in onnx.load(str(fp32)).graph.node if n.op_type == "Mul")
    assert np.allclose(round_slope(first_slope).detach().numpy().ravel(),
                       dequantised(slope_name.removesuffix("_DequantizeLinear_Output") + "_quantized").ravel(),
                       atol=1e-6)

    sess = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    int8_logits = sess.run(None, {"data": to_network(images)})[0]
    simulated = predict_logits(net, images)
    assert np.abs(simulated - int8_logits).mean() < np.abs(fp32_logits - int8_logits).mean()
    with fq.off():
        assert np.allclose(predict_logits(net, images), fp32_logits, atol=1e-5)


def test_stage_nine_masks_contempt_whole_and_trains_quantisation_aware(shared_dir: Path, affect_faces: Path,
                                                                      tmp_path: Path) -> None:
    """A contempt crop masked whole is black outside its template's face-shaped mask; the cache of them, aligned,
    points at the contempt rows; a quantisation-aware run trains, and its checkpoint loads rounding and exports the
    float graph."""
    import cv2

    from emotion.model.training.affect import face_mask, masked_contempt_crops, read_rows
    from emotion.model.training.export8 import load_final
    from emotion.model.training.export8 import main as export_main
    from emotion.model.training.faces import load_faces

    data = affect_faces.parent / "data"
    crops = list(masked_contempt_crops(data, "train"))
    assert crops and all(r["source"] == "contempt" for r, _ in crops)
    for _, image in crops:
        inside = face_mask(image)
        assert 0.3 < inside.mean() < 0.95 and image[~inside].max() <= 12  # black (JPEG-free) outside the mask

    cfg = FinetuneConfig(source_onnx=str(shared_dir / "models" / SOURCE), faces_dir=str(affect_faces),
                         affect_dir=str(data), out_dir=str(tmp_path / "s9"), batch_size=8, max_steps=2, eval_every=1,
                         warmup_steps=1, affect_fraction=0.5, distill_weight=0.0, p_contempt_masked_whole=1.0,
                         qat=True, qat_calibrate_every=1, qat_calibration_faces=4)
    final = train(cfg)
    assert final["step"] == 2 and final["temperature"] > 0
    cache = np.load(affect_faces / "affect_train_masked_contempt.npz")
    rows = read_rows(data / "train.csv")
    assert len(cache["images"]) == len(crops) and [rows[i]["source"] for i in cache["index"]] == ["contempt"] * len(
        crops)
    assert cache["images"].shape[1:] == (112, 112, 3)
    unmasked = load_faces(affect_faces / "affect_train.npz")["images"][cache["index"]]
    assert (cv2.cvtColor(cache["images"][0], cv2.COLOR_RGB2GRAY) < 8).mean() > (
        cv2.cvtColor(unmasked[0], cv2.COLOR_RGB2GRAY) < 8).mean()  # more of the aligned face is black

    net, loaded, _ = load_final(tmp_path / "s9" / "final.pt")
    assert loaded.qat and net.backbone.fake_quant is not None and net.backbone.fake_quant.enabled
    out = tmp_path / "s9.onnx"
    assert export_main(["--checkpoint", str(tmp_path / "s9" / "final.pt"), "--out", str(out),
                        "--report", str(tmp_path / "r.json")]) == 0  # the float graph agrees with the float net
    assert json.loads((tmp_path / "r.json").read_text())["agreement"]["max_abs_logit_diff"] < 1e-3
