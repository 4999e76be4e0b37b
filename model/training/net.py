"""A compact VGG-style CNN with BatchNorm for 1x48x48 grayscale faces.

Input: float32 [N,1,48,48] with pixel values gray/255 in [0,1]; the network normalises internally
(``(x - 0.5) / 0.25``), so the runtime preprocessing is only crop -> gray -> resize -> /255.
Output: logits [N,8] in the FER+ vocabulary order.
"""

from __future__ import annotations

import torch
from torch import nn

from emotion.model.training import VOCABULARY
from emotion.model.training.config import ModelConfig


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FerNet(nn.Module):
    """Stages of 3x3 conv+BN+ReLU blocks separated by 2x2 max-pooling, then global average pooling."""

    def __init__(self, cfg: ModelConfig | None = None, num_classes: int = len(VOCABULARY)) -> None:
        super().__init__()
        cfg = cfg or ModelConfig()
        if len(cfg.channels) != len(cfg.convs_per_stage):
            raise ValueError("channels and convs_per_stage must have the same length")
        layers: list[nn.Module] = []
        cin = 1
        for i, (cout, n) in enumerate(zip(cfg.channels, cfg.convs_per_stage, strict=True)):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(n):
                layers.append(_conv_bn(cin, cout))
                cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(cin, num_classes)
        # Fixed input normalisation, part of the graph (runtime feeds gray / 255).
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(0.5))
        self.register_buffer("std", torch.tensor(0.25))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: [N,1,48,48] in [0,1] -> logits [N,8]."""
        x = (x - self.mean) / self.std
        x = self.features(x)
        x = torch.flatten(self.pool(x), 1)
        return self.fc(self.dropout(x))


def count_macs(model: nn.Module, size: int = 48) -> int:
    """Multiply-accumulates of one forward pass at ``size`` x ``size`` (convs + linear)."""
    macs = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
            macs += int(out.numel() // out.shape[0]) * k
        elif isinstance(m, nn.Linear):
            macs += m.in_features * m.out_features

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, size, size))
    model.train(was_training)
    for h in hs:
        h.remove()
    return macs
