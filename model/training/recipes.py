"""One ``emotion train`` and one ``emotion export`` for both recipes: the config or checkpoint says which it is.

* ``train.py`` / ``export.py``: the FER+ CNN trained from scratch (``model/configs/ferplus.json``).
* ``finetune.py`` / ``export8.py``: the RAF-DB MobileFaceNet fine-tuned into 8 classes
  (``model/configs/mobilefacenet8.json``, then ``mobilefacenet8_v2.json`` and ``mobilefacenet8_v3.json``, each
  starting from the one before's result).

A fine-tuning config is the one naming a ``source_onnx``; a fine-tuning checkpoint is a ``final.pt`` whose config
does.
"""

from __future__ import annotations

import json
from pathlib import Path


def is_finetune_config(path: str | Path) -> bool:
    p = Path(path)
    return p.suffix == ".json" and p.is_file() and "source_onnx" in json.loads(p.read_text())


def _positional(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def train_main(argv: list[str]) -> int:
    config = _positional(argv)
    if config and is_finetune_config(config):
        from emotion.model.training.finetune import main
    else:
        from emotion.model.training.train import main
    return main(argv)


def export_main(argv: list[str]) -> int:
    checkpoint = _option(argv, "--checkpoint")
    finetuned = _option(argv, "--from-int8") is not None  # only the fine-tuning recipe has int8 graphs to rewrite
    if checkpoint and Path(checkpoint).is_file():
        import torch

        ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
        finetuned = isinstance(ck, dict) and "source_onnx" in (ck.get("config") or {})
    if finetuned:
        from emotion.model.training.export8 import main
    else:
        from emotion.model.training.export import main
    return main(argv)
