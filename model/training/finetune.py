"""Fine-tune the RAF-DB MobileFaceNet into an 8-class model (new contempt output), with learning without forgetting.

``python -m emotion.model.training.finetune model/configs/mobilefacenet8.json [--max-minutes M] [--deadline HH:MM]``

Recipe (model card: ``model/MODEL_CARD_mobilefacenet8.md``):

* Start: :class:`~emotion.model.training.mobilefacenet.DequantisedMobileFaceNet` (the staged int8 ONNX file's
  weights in fp32); the upstream 7-way classifier becomes an 8-way one in the vocabulary order, the contempt row
  initialised from the mean of the other rows.
* Data (cached by ``emotion.model.training.faces``): FER+ train with its vote distributions, and SFEW train minus
  the held-out films, drawn as ``sfew_fraction`` of each batch.
* Loss: soft cross-entropy on the targets + ``distill_weight`` x T^2 x KL(teacher || student) on the 7 shared
  classes at temperature ``distill_temperature``, the teacher being the original model's logits on the same crops.
* Augmentation (:func:`augment`): grey <-> colour, scale / shift / small rotation / flip, resolution loss, blur,
  JPEG quality, brightness / contrast, partial occlusion.
* The first layers (up to ``freeze_until``) stay frozen: on one CPU thread their backward is half of a step.
* AdamW, warm-up then cosine by max(step, time) progress against the time budget; EMA of the weights, which is
  what is evaluated and exported. A checkpoint (``last.pt``) every ``checkpoint_minutes``; a rerun resumes it.
* Optionally (stage 4, ``average_with``) the final weights are averaged with an earlier run's.
* After training: one temperature fitted on the held-out FER+ slice + SFEW validation films (NLL), stored in the
  checkpoint; :mod:`emotion.model.training.export8` divides the logits by it inside the exported graph.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP workers must not spin on a shared CPU

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime as dt  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Literal  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from pydantic import BaseModel, ConfigDict  # noqa: E402
from torch import nn  # noqa: E402

from emotion.model.training import VOCABULARY  # noqa: E402
from emotion.model.training.affect import build_faces as build_affect_faces  # noqa: E402
from emotion.model.training.affect import (  # noqa: E402
    build_masked_contempt_faces,
    mask_at_random,
    remove_mask_cue,
    soften,
)
from emotion.model.training.data import expand_path  # noqa: E402
from emotion.model.training.faces import build_all, load_faces, to_network  # noqa: E402
from emotion.model.training.mobilefacenet import UPSTREAM_LABELS, DequantisedMobileFaceNet  # noqa: E402
from emotion.model.training.qat import FakeQuant, calibration_faces  # noqa: E402

FACE_SETS = ("ferplus_train", "sfew_train", "ferplus_holdout", "sfew_val")
AFFECT_SETS = ("affect_train", "affect_val")
# Student columns that correspond to the teacher's 7 outputs, in the teacher's order.
SHARED_COLUMNS = [VOCABULARY.index(label) for label in UPSTREAM_LABELS]


class FinetuneConfig(BaseModel):
    """One fine-tuning run (JSON)."""

    model_config = ConfigDict(extra="forbid")

    name: str = "mobilefacenet8"
    seed: int = 1234
    source_onnx: str = "${SHARED}/models/facial_expression_recognition_mobilefacenet_2022july_int8.onnx"
    faces_dir: str = "/tmp/emotion_faces"
    out_dir: str = ".cache/train/mobilefacenet8"
    num_threads: int = 1
    batch_size: int = 32
    sfew_fraction: float = 0.2
    lr_backbone: float = 2e-4
    lr_head: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 5000
    max_minutes: float = 45.0
    checkpoint_minutes: float = 5.0
    eval_every: int = 400
    ema_decay: float = 0.998
    dropout: float = 0.2
    freeze_until: str | None = "358_quantized"
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    label_smoothing: float = 0.0
    # Stages 2 and 3 (``mobilefacenet8_v2.json``, ``_v3``): start from an earlier run's final.pt, distil less on
    # FER+ crops (where the RAF-DB teacher is weaker than FER+'s own votes), smooth SFEW's one-hot labels (a few
    # hundred film stills seen many times make the net over-confident on film), and fit the temperature with
    # every validation set weighted alike rather than by its size.
    init_from: str | None = None  # an earlier run's final.pt, or an `emotion export --int8` graph (.onnx)
    sfew_distill_weight: float | None = None  # None: distill_weight
    sfew_label_smoothing: float = 0.0
    temperature_fit: Literal["pooled", "mean_of_sets"] = "pooled"
    # Stage 3: move FER+ targets part of the way from the crowd's vote distribution to its majority label. Trained
    # on the distribution alone, the net says "60% happy" where the majority is right far more often than that
    # (under-confident on FER+ while film stills are over-confident, so no single temperature fits both).
    ferplus_majority_mix: float = 0.0
    # Stage 4: the exported weights are the mean of this run's final weights and an earlier run's (``average_with``,
    # given ``average_weight``), and the temperature is fitted on that mean. Two runs along one line of fine-tuning
    # sit in one basin, so their mean keeps what each learned (stage 4 alone: calibrated but 0.5 points lower on FER+).
    average_with: str | None = None
    average_weight: float = 0.5
    # Stage 5: distil from the starting network's flip ensemble (mean probability of a face and its mirror image,
    # which is right more often than the network alone: FER+ held-out slice 88.4 -> 89.0 % for v4.1) into the
    # network itself, so that one pass gets part of what two would. 0: off.
    flip_teacher_weight: float = 0.0
    flip_teacher_temperature: float = 2.0
    # Stage 6 (issue 22): colour in-the-wild faces of 8 classes (``affect_train``, cached by
    # ``emotion.model.training.affect``) make up ``affect_fraction`` of each batch, drawn with weights
    # count(class) ** -affect_balance (1: every class alike, so disgust, fear and contempt are learnt). Their mask
    # shortcut is removed at random (``p_mask_contempt``, ``p_fill_background``: ``affect.remove_mask_cue``).
    # ``default_teacher`` (an 8-class graph, the current default) is distilled on the FER+ and SFEW rows at
    # ``default_teacher_weight`` (T = ``distill_temperature``), so the net keeps what it knew about those sets.
    affect_dir: str = ".cache/data/affect_train"
    affect_fraction: float = 0.0
    affect_balance: float = 1.0
    affect_label_smoothing: float = 0.0
    p_mask_contempt: float = 0.5
    p_fill_background: float = 0.5
    # Stage 8: FER+ and film faces masked like a random effectnet face with this probability, so that a mask says
    # nothing of a face's source and what is learnt on masked colour faces carries over to whole photos.
    p_mask_others: float = 0.0
    # ... the contempt crops blurred with a sigma drawn from this range (``affect.soften``), so sharpness is no cue.
    contempt_blur: tuple[float, float] | None = None
    # ... each class's draw weight in the balanced affect draw, times this (missing: 1). Contempt at 0.5: drawn half
    # as often as each other class, still 5x its share of the data, so that a smile is not contempt by default.
    affect_class_weights: dict[str, float] = {}
    default_teacher: str | None = None
    default_teacher_weight: float = 0.0
    # Stage 9: a contempt crop is, with this probability, replaced by its copy masked whole before detection and
    # alignment (``affect.build_masked_contempt_faces``), as the effectnet crops were masked, rather than masked
    # after alignment; the masked and unmasked contempt faces of stage 8 differed by 14 points of recall.
    p_contempt_masked_whole: float = 0.0
    # ... and training rounds as the int8 export does (``qat``), its activation ranges measured afresh every
    # ``qat_calibrate_every`` steps on the export's calibration faces (``qat_calibration_faces`` of each set).
    qat: bool = False
    qat_calibrate_every: int = 500
    qat_calibration_faces: int = 256
    # augmentation probabilities / ranges
    p_grey: float = 0.2  # colour -> grey
    p_tint: float = 0.5  # grey -> colour (per-channel gains)
    tint: float = 0.15
    hflip: float = 0.5
    rotate_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate: float = 0.05
    p_lowres: float = 0.2
    p_blur: float = 0.2
    p_jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)
    brightness: float = 0.2
    contrast: float = 0.2
    p_occlude: float = 0.25
    occlude_frac: tuple[float, float] = (0.15, 0.4)


def load_config(path: str | Path) -> FinetuneConfig:
    return FinetuneConfig.model_validate(json.loads(Path(path).read_text()))


class EmotionNet8(nn.Module):
    """Backbone features -> dropout -> linear 512x8 (vocabulary order); logits are divided by ``temperature``."""

    temperature: torch.Tensor

    def __init__(self, backbone: DequantisedMobileFaceNet, dropout: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(512, len(VOCABULARY))
        self.register_buffer("temperature", torch.ones(()))
        w7, b7 = backbone.classifier_weights()  # [512, 7], [7] in the upstream order
        with torch.no_grad():
            w = torch.empty(len(VOCABULARY), 512)
            b = torch.empty(len(VOCABULARY))
            w[SHARED_COLUMNS] = w7.t()
            b[SHARED_COLUMNS] = b7
            contempt = VOCABULARY.index("contempt")
            w[contempt] = w7.t().mean(0)
            b[contempt] = b7.min() - 1.0  # a rare class: start below every other
            self.head.weight.copy_(w)
            self.head.bias.copy_(b)
        for p in backbone.classifier_weights():
            p.requires_grad_(False)  # replaced by the new head

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        fq = self.backbone.fake_quant
        if fq is None or not fq.active:  # the module path the ONNX export traces (its node names)
            return self.head(self.dropout(self.backbone.features(x)))
        features = self.backbone.features(fq.activation("input", x))
        return fq.activation("logits", F.linear(self.dropout(features), fq.weight(self.head.weight), self.head.bias))

    def quantisation_aware(self, calibration: np.ndarray, batch: int = 64) -> FakeQuant:
        """Round as the int8 export does from now on (``qat``), with activation ranges measured on ``calibration``
        (uint8 RGB aligned faces); call again to measure them afresh after the weights have moved."""
        if self.backbone.fake_quant is None:
            self.backbone.fake_quant = FakeQuant()
        fq = self.backbone.fake_quant
        fq.calibrate(self, [normalise(to_input(calibration[i : i + batch])) for i in range(0, len(calibration), batch)])
        fq.enabled = True
        return fq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x) / self.temperature


@torch.no_grad()
def load_int8_export(model: EmotionNet8, path: str | Path) -> None:
    """Load the weights of an ``emotion export --int8`` graph (QDQ; its PReLUs in either form) into ``model``, each
    as its DequantizeLinear gives it. The exporter kept the module's parameter names, except the PReLU slopes
    (``onnx::PRelu_N``), which are matched by the order the graph uses them in."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    values: dict[str, np.ndarray] = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            q, scale, zero = (inits[name].astype(np.float64) for name in node.input[:3])
            if scale.ndim == 1 and q.ndim > 1:  # per-channel along axis 0 (the exporter's weights)
                scale, zero = scale.reshape(-1, *[1] * (q.ndim - 1)), zero.reshape(-1, *[1] * (q.ndim - 1))
            values[node.output[0].removesuffix("_DequantizeLinear_Output")] = (q - zero) * scale
    slopes = list(dict.fromkeys(n.input[1].removesuffix("_DequantizeLinear_Output") for n in graph.node
                                if n.op_type == "Mul" and n.input[1].startswith("onnx::PRelu")))
    state = model.state_dict()
    prelu_keys = [f"backbone.params.{name}" for name in model.backbone.prelu_slope_names()]
    if len(slopes) != len(prelu_keys):
        raise ValueError(f"{path}: {len(slopes)} PReLU slopes, the network has {len(prelu_keys)}")
    values.update(dict(zip(prelu_keys, (values[s] for s in slopes), strict=True)))
    values["temperature"] = inits["temperature"]
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}  # the unused upstream fc
    missing = [k for k in state if k not in values and k not in frozen]
    if missing:
        raise ValueError(f"{path} has no weights for {missing[:5]}: not an `emotion export --int8` graph")
    for key, tensor in state.items():
        if key in values:
            tensor.copy_(torch.from_numpy(np.array(values[key], dtype=np.float32)).reshape(tensor.shape))


def measure_ranges(net: EmotionNet8, cfg: FinetuneConfig) -> None:
    """A quantisation-aware run's activation ranges measured afresh for ``net``'s weights (as its export will)."""
    if cfg.qat:
        net.quantisation_aware(calibration_faces(Path(cfg.faces_dir), cfg.qat_calibration_faces, cfg.seed))


def build_model(cfg: FinetuneConfig) -> EmotionNet8:
    backbone = DequantisedMobileFaceNet(expand_path(cfg.source_onnx))
    backbone.freeze_until(cfg.freeze_until)
    return EmotionNet8(backbone, cfg.dropout)


# --- augmentation ---------------------------------------------------------------------------------------------


def jpeg_and_resolution(images: np.ndarray, cfg: FinetuneConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-image OpenCV steps on uint8 RGB [N,112,112,3]: resolution loss, then JPEG at a random quality."""
    out = images.copy()
    for i in range(len(out)):
        if rng.random() < cfg.p_lowres:
            side = int(rng.integers(28, 72))
            small = cv2.resize(out[i], (side, side), interpolation=cv2.INTER_AREA)
            out[i] = cv2.resize(small, (112, 112), interpolation=cv2.INTER_LINEAR)
        if rng.random() < cfg.p_jpeg:
            q = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
            ok, buf = cv2.imencode(".jpg", out[i], [cv2.IMWRITE_JPEG_QUALITY, q])
            decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else None
            if decoded is not None:
                out[i] = decoded.reshape(out[i].shape)
    return out


def augment(x: torch.Tensor, cfg: FinetuneConfig, gen: torch.Generator) -> torch.Tensor:
    """Tensor steps on float RGB [N,3,H,W] in [0,1]: grey<->colour, affine, blur, photometric, occlusion."""
    n, _, h, w = x.shape

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(*(shape or (n,)), generator=gen) * (hi - lo) + lo

    grey = x.mean(1, keepdim=True)
    is_grey = (x - grey).abs().amax(dim=(1, 2, 3)) < 2 / 255
    to_grey = (u(0, 1) < cfg.p_grey) & ~is_grey
    x = torch.where(to_grey.view(n, 1, 1, 1), grey.expand_as(x), x)
    tint = (u(0, 1) < cfg.p_tint) & (is_grey | to_grey)
    gains = 1 + u(-cfg.tint, cfg.tint, n, 3, 1, 1) * tint.view(n, 1, 1, 1)
    x = x * gains

    ang = u(-cfg.rotate_deg, cfg.rotate_deg) * (math.pi / 180.0)
    sc = u(cfg.scale[0], cfg.scale[1])
    flip = torch.where(u(0, 1) < cfg.hflip, -1.0, 1.0)
    tx, ty = u(-cfg.translate, cfg.translate), u(-cfg.translate, cfg.translate)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos * flip, -sin, tx * 2], 1), torch.stack([sin * flip, cos, ty * 2], 1)], 1)
    grid = F.affine_grid(theta, [n, 3, h, w], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # black, as serving

    blur = u(0, 1) < cfg.p_blur
    if blur.any():
        sigma = float(u(0.6, 1.6, 1))
        k = torch.arange(-3, 4, dtype=torch.float32)
        k = torch.exp(-(k**2) / (2 * sigma**2))
        k = (k / k.sum()).view(1, 1, 1, 7).repeat(3, 1, 1, 1)
        xb = F.conv2d(F.pad(x[blur], (3, 3, 0, 0), mode="replicate"), k, groups=3)
        xb = F.conv2d(F.pad(xb, (0, 0, 3, 3), mode="replicate"), k.transpose(2, 3), groups=3)
        x = x.clone()
        x[blur] = xb

    b = u(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1)
    c = u(1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1)
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - m) * c + m + b * 0.5

    occ = u(0, 1) < cfg.p_occlude
    eh = (u(*cfg.occlude_frac) * h).long()
    ew = (u(*cfg.occlude_frac) * w).long()
    y0 = (u(0, 1) * (h - eh)).long()
    x0 = (u(0, 1) * (w - ew)).long()
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    mask = (
        (ys >= y0.view(n, 1, 1)) & (ys < (y0 + eh).view(n, 1, 1))
        & (xs >= x0.view(n, 1, 1)) & (xs < (x0 + ew).view(n, 1, 1)) & occ.view(n, 1, 1)
    )
    x = torch.where(mask.unsqueeze(1), u(0, 1).view(n, 1, 1, 1), x)
    return x.clamp(0.0, 1.0)


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 RGB [N,112,112,3] -> float [N,3,112,112] in [0,1] (the network takes (x - 0.5) / 0.5)."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).float().div_(255.0)


def normalise(x01: torch.Tensor) -> torch.Tensor:
    return (x01 - 0.5) / 0.5


# --- losses, evaluation, calibration --------------------------------------------------------------------------


def loss_fn(logits: torch.Tensor, targets: torch.Tensor, teacher: torch.Tensor, cfg: FinetuneConfig,
            is_sfew: torch.Tensor | None = None, is_affect: torch.Tensor | None = None,
            default_logits: torch.Tensor | None = None) -> torch.Tensor:
    """Soft cross-entropy on the targets + LwF distillation on the 7 classes the teacher knows.

    ``is_sfew`` (bool [N]) marks the SFEW rows, which get their own label smoothing and distillation weight; the
    FER+ rows move ``ferplus_majority_mix`` of the way to their majority label before any smoothing. ``is_affect``
    marks the ``affect_train`` rows: their own smoothing, no distillation. ``default_logits`` ([N,8], the current
    default's logits) are distilled on the other rows at ``default_teacher_weight``."""
    none = torch.zeros(len(logits), dtype=torch.bool)
    is_sfew = none if is_sfew is None else is_sfew
    is_affect = none if is_affect is None else is_affect
    is_fer = ~is_sfew & ~is_affect
    if cfg.ferplus_majority_mix > 0:
        majority = F.one_hot(targets.argmax(1), targets.shape[1]).to(targets.dtype)
        mix = torch.where(is_fer, cfg.ferplus_majority_mix, 0.0).unsqueeze(1)
        targets = targets * (1 - mix) + majority * mix
    smooth = torch.where(is_sfew, cfg.sfew_label_smoothing,
                         torch.where(is_affect, cfg.affect_label_smoothing, cfg.label_smoothing)).unsqueeze(1)
    t = targets * (1 - smooth) + smooth / targets.shape[1]
    loss = -(t * F.log_softmax(logits, 1)).sum(1).mean()
    temp = cfg.distill_temperature
    sfew_w = cfg.distill_weight if cfg.sfew_distill_weight is None else cfg.sfew_distill_weight
    weight = torch.where(is_affect, 0.0, torch.where(is_sfew, sfew_w, cfg.distill_weight))
    if float(weight.max()) > 0:
        kd = F.kl_div(F.log_softmax(logits[:, SHARED_COLUMNS] / temp, 1), F.log_softmax(teacher / temp, 1),
                      log_target=True, reduction="none").sum(1) * temp * temp
        loss = loss + (weight * kd).mean()
    if default_logits is not None and cfg.default_teacher_weight > 0:
        kd8 = F.kl_div(F.log_softmax(logits / temp, 1), F.log_softmax(default_logits / temp, 1),
                       log_target=True, reduction="none").sum(1) * temp * temp
        loss = loss + (torch.where(is_affect, 0.0, cfg.default_teacher_weight) * kd8).mean()
    return loss


def flip_distillation(logits: torch.Tensor, teacher: EmotionNet8, x: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 x KL(flip ensemble || student) at ``temperature``: the teacher's mean probability over the batch ``x``
    and its mirror image (``x`` as the network sees it, [N,3,H,W])."""
    with torch.no_grad():
        views = torch.stack([F.softmax(teacher.logits(v) / temperature, 1) for v in (x, x.flip(3))])
        target = views.mean(0)
    log_student = F.log_softmax(logits / temperature, 1)
    return F.kl_div(log_student, target, reduction="batchmean") * temperature * temperature


@torch.no_grad()
def predict_logits(model: EmotionNet8, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """Raw logits (before the temperature) [N,8] on uint8 RGB aligned faces."""
    model.eval()
    out = [model.logits(normalise(to_input(images[i : i + batch]))) for i in range(0, len(images), batch)]
    return torch.cat(out).numpy() if out else np.zeros((0, len(VOCABULARY)), np.float32)


def summarise(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> dict[str, float]:
    """Accuracy and macro recall on the rows with a label; NLL at ``temperature``."""
    keep = labels >= 0
    z, y = logits[keep] / temperature, labels[keep]
    pred = z.argmax(1)
    recalls = [float((pred[y == c] == c).mean()) for c in np.unique(y)]
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    return {
        "n": int(keep.sum()),
        "accuracy": round(float((pred == y).mean()), 4),
        "macro_recall": round(float(np.mean(recalls)), 4),
        "nll": round(float(-logp[np.arange(len(y)), y].mean()), 4),
    }


def fit_temperature(logits: np.ndarray | list[np.ndarray], labels: np.ndarray | list[np.ndarray]) -> float:
    """The temperature that minimises NLL on labelled rows (golden-section search on log T in [-2, 2]).

    Given lists (one entry per validation set), it minimises the mean of the sets' NLLs: each set counts alike."""
    if isinstance(logits, list) and isinstance(labels, list):
        sets = list(zip(logits, labels, strict=True))
    else:
        sets = [(np.asarray(logits), np.asarray(labels))]
    tensors = [(torch.from_numpy(z[y >= 0]).double(), torch.from_numpy(y[y >= 0])) for z, y in sets]

    def nll(log_t: float) -> float:
        return float(np.mean([float(F.cross_entropy(z / math.exp(log_t), y)) for z, y in tensors]))

    lo, hi = -2.0, 2.0
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    for _ in range(60):
        if nll(a) < nll(b):
            hi, b = b, a
            a = hi - g * (hi - lo)
        else:
            lo, a = a, b
            b = lo + g * (hi - lo)
    return math.exp((lo + hi) / 2)


@torch.no_grad()
def average_into(model: nn.Module, other: dict[str, torch.Tensor], weight: float) -> None:
    """``model``'s float parameters and buffers become ``(1 - weight) x`` theirs ``+ weight x other``'s (weight
    averaging); the temperature is left alone, to be fitted on the result."""
    for name, value in model.state_dict().items():
        if value.is_floating_point() and name != "temperature":
            value.mul_(1 - weight).add_(other[name].to(value.dtype), alpha=weight)


# --- training loop --------------------------------------------------------------------------------------------


class Ema:
    def __init__(self, model: EmotionNet8, decay: float) -> None:
        self.model = copy.deepcopy(model).eval()
        self.decay = decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for e, p in zip(self.model.parameters(), model.parameters(), strict=True):
            if p.requires_grad:
                e.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)


def default_teacher_logits(path: Path, faces: Path, sets: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The 8-class graph at ``path`` (the current default) on each set's cached faces, through onnxruntime as the
    engine runs it; cached in ``faces`` under the graph's sha256, so a resumed run reads them back."""
    from emotion.core.manifest import sha256_file
    from emotion.core.runtime import create_session

    key = sha256_file(path)[:12]
    out: dict[str, np.ndarray] = {}
    sess = None
    for name, ds in sets.items():
        cache = faces / f"teacher8_{key}_{name}.npy"
        if not cache.exists():
            sess = sess or create_session(path, ["CPUExecutionProvider"], torch.get_num_threads(), True)
            feed = sess.get_inputs()[0].name
            logits = [sess.run(None, {feed: to_network(ds["images"][i : i + 64])})[0]
                      for i in range(0, len(ds["images"]), 64)]
            np.save(cache, np.concatenate(logits).astype(np.float32))
        out[name] = np.load(cache)
    return out


def class_balanced_cdf(labels: np.ndarray, balance: float, class_weights: dict[str, float] | None = None
                       ) -> np.ndarray:
    """Cumulative draw probabilities of rows weighted count(class) ** -balance (1: each class drawn alike), times
    ``class_weights[class]`` where given."""
    counts = np.bincount(labels, minlength=len(VOCABULARY)).astype(np.float64)
    factor = np.array([(class_weights or {}).get(name, 1.0) for name in VOCABULARY])
    weights = counts[labels] ** -balance * factor[labels]
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _log(path: Path, rec: dict[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(rec) + "\n")


def _deadline_seconds(deadline: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from now until the next ``HH:MM`` UTC: today, or tomorrow once today's has passed (a run started
    at 23:30 with ``--deadline 01:00`` gets 90 minutes). ``None``: no deadline."""
    if not deadline:
        return None
    now = now or dt.datetime.now(dt.UTC)
    hh, mm = (int(v) for v in deadline.split(":"))
    end = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    if end <= now:
        end += dt.timedelta(days=1)
    return (end - now).total_seconds()


def train(cfg: FinetuneConfig, deadline: str | None = None) -> dict[str, Any]:
    """Run (or resume) a fine-tuning run; returns the final record (also appended to results.jsonl)."""
    torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "results.jsonl"
    faces = Path(cfg.faces_dir)
    missing = [n for n in FACE_SETS if not (faces / f"{n}.npz").exists()]
    if missing:  # first run: align every face once (minutes), as serving would
        build_all(faces, missing)
    fer, sfew = load_faces(faces / "ferplus_train.npz"), load_faces(faces / "sfew_train.npz")
    val_names = ["ferplus_holdout", "sfew_val"]
    affect: dict[str, np.ndarray] | None = None
    if cfg.affect_fraction > 0:
        if any(not (faces / f"{n}.npz").exists() for n in AFFECT_SETS):
            build_affect_faces(expand_path(cfg.affect_dir), faces)
        affect = load_faces(faces / "affect_train.npz")
        affect_cdf = class_balanced_cdf(affect["labels"], cfg.affect_balance, cfg.affect_class_weights)
        # real backgrounds for the masked faces: the unmasked colour faces (contempt crops, film stills)
        donors = np.concatenate([affect["images"][affect["masked"] == 0], sfew["images"]])
        mask_templates = np.flatnonzero(affect["masked"] == 1)
        masked_whole: tuple[np.ndarray, np.ndarray] | None = None  # (faces, each affect row's place among them)
        if cfg.p_contempt_masked_whole > 0:
            if not (faces / "affect_train_masked_contempt.npz").exists():
                build_masked_contempt_faces(expand_path(cfg.affect_dir), faces)
            cache = np.load(faces / "affect_train_masked_contempt.npz")
            place = np.full(len(affect["images"]), -1, np.int64)
            place[cache["index"]] = np.arange(len(cache["index"]))
            masked_whole = (cache["images"], place)
        val_names.append("affect_val")
    val_sets = {name: load_faces(faces / f"{name}.npz") for name in val_names}
    default = (default_teacher_logits(expand_path(cfg.default_teacher), faces,
                                      {"ferplus_train": fer, "sfew_train": sfew}) if cfg.default_teacher else None)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg)
    if cfg.init_from:
        if not expand_path(cfg.init_from).is_file():
            raise SystemExit(f"init_from {cfg.init_from} does not exist: train the run it names first "
                             "(emotion train model/configs/mobilefacenet8.json)")
        if cfg.init_from.endswith(".onnx"):  # a shipped int8 graph: checkpoints do not outlive a session here
            load_int8_export(model, expand_path(cfg.init_from))
        else:
            model.load_state_dict(torch.load(expand_path(cfg.init_from), map_location="cpu", weights_only=False)[
                "state_dict"])
        model.temperature.fill_(1.0)  # calibrated afresh at the end
    flip_teacher = copy.deepcopy(model).eval().requires_grad_(False) if cfg.flip_teacher_weight > 0 else None
    ema = Ema(model, cfg.ema_decay)
    head = list(model.head.parameters())
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": backbone, "lr": cfg.lr_backbone}, {"params": head, "lr": cfg.lr_head}],
                            weight_decay=cfg.weight_decay)
    base_lrs = [cfg.lr_backbone, cfg.lr_head]
    step, elapsed = 0, 0.0
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    ckpt_path = out / "last.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        ema.model.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        rng.bit_generator.state = ck["rng"]
        gen.set_state(ck["gen"])
        print(f"[finetune] resumed at step {step} ({elapsed / 60:.1f} min done)", flush=True)
    else:
        _log(log_path, {"event": "config", "config": cfg.model_dump()})
    calibration = calibration_faces(faces, cfg.qat_calibration_faces, cfg.seed) if cfg.qat else None
    if calibration is not None:
        for net in (model, ema.model):
            net.quantisation_aware(calibration)

    budget = cfg.max_minutes * 60
    left = _deadline_seconds(deadline)
    if left is not None:
        budget = min(budget, elapsed + left)

    def save() -> None:
        torch.save({"model": model.state_dict(), "ema": ema.model.state_dict(), "opt": opt.state_dict(),
                    "step": step, "elapsed": elapsed, "rng": rng.bit_generator.state, "gen": gen.get_state(),
                    "config": cfg.model_dump()}, ckpt_path.with_suffix(".tmp"))
        ckpt_path.with_suffix(".tmp").replace(ckpt_path)

    n_sfew = int(round(cfg.batch_size * cfg.sfew_fraction))
    n_affect = int(round(cfg.batch_size * cfg.affect_fraction)) if affect is not None else 0
    t_start, t_ckpt = time.time(), time.time()
    start_elapsed = elapsed
    run_loss, seen = 0.0, 0
    model.train()
    while step < cfg.max_steps and elapsed < budget:
        i_f = rng.integers(0, len(fer["images"]), cfg.batch_size - n_sfew - n_affect)
        i_s = rng.integers(0, len(sfew["images"]), n_sfew)
        parts = [(fer, i_f), (sfew, i_s)]
        batch_images = [fer["images"][i_f], sfew["images"][i_s]]
        if affect is not None:
            i_a = np.minimum(np.searchsorted(affect_cdf, rng.random(n_affect), side="right"), len(affect_cdf) - 1)
            parts.append((affect, i_a))
            faces_a, masked_a = affect["images"][i_a].copy(), affect["masked"][i_a] == 1
            unmasked_source = ~masked_a
            if masked_whole is not None:
                whole = unmasked_source & (rng.random(n_affect) < cfg.p_contempt_masked_whole)
                faces_a[whole] = masked_whole[0][masked_whole[1][i_a[whole]]]
                masked_a = masked_a | whole
            if cfg.contempt_blur is not None:
                faces_a[unmasked_source] = soften(faces_a[unmasked_source], rng, cfg.contempt_blur)
            batch_images.append(remove_mask_cue(faces_a, masked_a, donors, rng, cfg.p_mask_contempt,
                                                cfg.p_fill_background))
        if affect is not None and cfg.p_mask_others > 0:
            n_others = len(i_f) + len(i_s)
            templates = affect["images"][mask_templates[rng.integers(0, len(mask_templates), n_others)]]
            batch_images[:2] = np.split(mask_at_random(np.concatenate(batch_images[:2]), templates, rng,
                                                       cfg.p_mask_others), [len(i_f)])
        imgs = np.concatenate(batch_images)
        targets = torch.from_numpy(np.concatenate([ds["targets"][i] for ds, i in parts]))
        row = torch.arange(len(imgs))
        is_sfew = (row >= len(i_f)) & (row < len(i_f) + n_sfew)
        is_affect = row >= len(i_f) + n_sfew
        teacher = torch.from_numpy(np.concatenate([ds["teacher"][i] for ds, i in parts]))
        default_logits = None if default is None else torch.from_numpy(np.concatenate(
            [default["ferplus_train"][i_f], default["sfew_train"][i_s], np.zeros((n_affect, len(VOCABULARY)),
                                                                                 np.float32)]))
        x = normalise(augment(to_input(jpeg_and_resolution(imgs, cfg, rng)), cfg, gen))
        progress = max(step / cfg.max_steps, elapsed / budget)
        warm = min(1.0, (step + 1) / cfg.warmup_steps)
        for g, lr in zip(opt.param_groups, base_lrs, strict=True):
            g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        model.train()
        logits = model.logits(x)
        loss = loss_fn(logits, targets, teacher, cfg, is_sfew, is_affect, default_logits)
        if flip_teacher is not None:
            loss = loss + cfg.flip_teacher_weight * flip_distillation(logits, flip_teacher, x,
                                                                      cfg.flip_teacher_temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema.update(model)
        step += 1
        if calibration is not None and step % cfg.qat_calibrate_every == 0:
            for net in (model, ema.model):
                net.quantisation_aware(calibration)
        elapsed = start_elapsed + time.time() - t_start
        run_loss += loss.item() * len(imgs)
        seen += len(imgs)
        if step % 50 == 0:
            print(f"[finetune] step {step} loss {run_loss / seen:.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{elapsed / 60:.1f}/{budget / 60:.0f} min", flush=True)
        if step % cfg.eval_every == 0:
            rec = {"event": "eval", "step": step, "elapsed_min": round(elapsed / 60, 2),
                   "train_loss": round(run_loss / max(seen, 1), 4)}
            for name, ds in val_sets.items():
                rec[name] = summarise(predict_logits(ema.model, ds["images"]), ds["labels"])
            _log(log_path, rec)
            print(f"[finetune] {json.dumps(rec)}", flush=True)
            run_loss, seen = 0.0, 0
        if time.time() - t_ckpt > cfg.checkpoint_minutes * 60:
            save()
            t_ckpt = time.time()
    save()

    final_model = ema.model
    if cfg.average_with:
        earlier = torch.load(expand_path(cfg.average_with), map_location="cpu", weights_only=False)
        average_into(final_model, earlier["state_dict"], cfg.average_weight)
        if calibration is not None:
            final_model.quantisation_aware(calibration)
    val_logits = {name: predict_logits(final_model, ds["images"]) for name, ds in val_sets.items()}
    if cfg.temperature_fit == "mean_of_sets":
        temperature = fit_temperature(list(val_logits.values()), [ds["labels"] for ds in val_sets.values()])
    else:
        temperature = fit_temperature(np.concatenate(list(val_logits.values())),
                                      np.concatenate([ds["labels"] for ds in val_sets.values()]))
    final_model.temperature.fill_(temperature)
    final = {"event": "final", "step": step, "elapsed_min": round(elapsed / 60, 2), "temperature": temperature,
             "stop_reason": "max_steps" if step >= cfg.max_steps else "time_budget"}
    for name, ds in val_sets.items():
        final[name] = summarise(val_logits[name], ds["labels"], temperature)
    torch.save({"state_dict": final_model.state_dict(), "config": cfg.model_dump(), "step": step,
                "temperature": temperature, "metrics": final}, out / "final.pt")
    _log(log_path, final)
    print(f"[finetune] {json.dumps(final)}", flush=True)
    return final


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="finetune", description="Fine-tune MobileFaceNet into an 8-class model.")
    ap.add_argument("config")
    ap.add_argument("--max-minutes", type=float)
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--out-dir")
    ap.add_argument("--faces-dir")
    ap.add_argument("--deadline", help="HH:MM UTC: stop (and keep a checkpoint) by then")
    a = ap.parse_args(argv)
    cfg = load_config(a.config)
    upd = {k: v for k, v in {"max_minutes": a.max_minutes, "max_steps": a.max_steps, "out_dir": a.out_dir,
                             "faces_dir": a.faces_dir}.items() if v is not None}
    final = train(cfg.model_copy(update=upd), a.deadline)
    print(json.dumps({k: final[k] for k in ("step", "temperature", "stop_reason")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
