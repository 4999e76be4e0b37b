"""Typed run configuration (one JSON or TOML file per run)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class DataConfig(BaseModel):
    """Where the data comes from and how labels are formed."""

    model_config = ConfigDict(extra="forbid")

    train_dir: str = Field(
        default="${SHARED}/data/ferplus_train",
        description="FER+ folder (PNGs + label.csv) or ImageFolder tree DIR/<label>/*. ${SHARED} expands to "
        "$EMOTION_SHARED_DIR or <repo>/../shared.",
    )
    train_format: Literal["ferplus", "imagefolder"] = "ferplus"
    val_dir: str = "${SHARED}/data/fer2013_publictest/ferplus_png"
    val_format: Literal["ferplus", "imagefolder"] = "ferplus"
    label_mode: Literal["probability", "majority"] = Field(
        "probability", description="FER+ vote-distribution targets or one-hot majority targets"
    )
    limit_train: int | None = Field(default=None, description="use only the first N training images (tests)")
    limit_val: int | None = None
    cache_dir: str | None = Field(default=".cache/train", description="npz cache of decoded images; None: no cache")


class AugmentConfig(BaseModel):
    """Batch-level augmentation done with torch tensor ops."""

    model_config = ConfigDict(extra="forbid")

    hflip: float = 0.5
    rotate_deg: float = 12.0
    scale: tuple[float, float] = (0.9, 1.12)
    translate: float = 0.08
    brightness: float = 0.25
    contrast: float = 0.25
    erase_prob: float = 0.25
    erase_max_frac: float = 0.25


class ModelConfig(BaseModel):
    """Compact VGG-style CNN with BatchNorm for 1x48x48 faces."""

    model_config = ConfigDict(extra="forbid")

    channels: list[int] = Field(default_factory=lambda: [32, 64, 128, 192])
    convs_per_stage: list[int] = Field(default_factory=lambda: [1, 2, 2, 2])
    dropout: float = 0.3


class TrainConfig(BaseModel):
    """One training run."""

    model_config = ConfigDict(extra="forbid")

    name: str = "ferplus"
    seed: int = 1234
    out_dir: str = ".cache/train/ferplus"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int = 2
    epochs: int = 30
    batch_size: int = 128
    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    early_stopping_patience: int = 8
    ema_decay: float | None = Field(
        default=0.998, description="EMA of weights (validated and kept instead of the raw weights); None: off"
    )
    schedule_by_time: bool = Field(default=True, description="cosine anneals by max(step, time) progress")
    max_minutes: float | None = Field(default=None, description="wall-clock budget; stop and keep the best checkpoint")
    progress: bool = True
    data: DataConfig = Field(default_factory=lambda: DataConfig.model_validate({}))
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    net: ModelConfig = Field(default_factory=ModelConfig)


def load_config(path: str | Path) -> TrainConfig:
    """Load a :class:`TrainConfig` from a ``.json`` or ``.toml`` file."""
    p = Path(path)
    raw = p.read_bytes()
    data = tomllib.loads(raw.decode()) if p.suffix.lower() == ".toml" else json.loads(raw)
    return TrainConfig.model_validate(data)
