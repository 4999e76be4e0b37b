"""Batch augmentation with torch tensor ops (no torchvision, no per-sample PIL)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from emotion.model.training.config import AugmentConfig


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator | None = None) -> torch.Tensor:
    """Random flip / rotation / scale / translation (one ``affine_grid``), photometric jitter, erasing.

    ``x``: float [N,1,H,W] in [0,1]; returns the same shape, clamped to [0,1].
    """
    n, _, h, w = x.shape
    dev = x.device

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(*(shape or (n,)), generator=gen).to(dev) * (hi - lo) + lo

    ang = u(-cfg.rotate_deg, cfg.rotate_deg) * (math.pi / 180.0)
    sc = u(cfg.scale[0], cfg.scale[1])
    flip = torch.where(u(0, 1) < cfg.hflip, -1.0, 1.0)
    tx, ty = u(-cfg.translate, cfg.translate), u(-cfg.translate, cfg.translate)
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack(
        [torch.stack([cos * flip, -sin, tx * 2], 1), torch.stack([sin * flip, cos, ty * 2], 1)], 1
    )  # output->input mapping in normalised coords
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    if cfg.brightness > 0 or cfg.contrast > 0:
        b = u(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1)
        c = u(1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1)
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - m) * c + m + b * 0.5

    if cfg.erase_prob > 0:
        do = u(0, 1) < cfg.erase_prob
        eh = (u(0.1, cfg.erase_max_frac) * h).long().clamp(min=1)
        ew = (u(0.1, cfg.erase_max_frac) * w).long().clamp(min=1)
        y0 = (u(0, 1) * (h - eh)).long()
        x0 = (u(0, 1) * (w - ew)).long()
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        mask = (
            (ys >= y0.view(n, 1, 1))
            & (ys < (y0 + eh).view(n, 1, 1))
            & (xs >= x0.view(n, 1, 1))
            & (xs < (x0 + ew).view(n, 1, 1))
            & do.view(n, 1, 1)
        )
        fill = u(0, 1).view(n, 1, 1)
        x = torch.where(mask.unsqueeze(1), fill.unsqueeze(1), x)
    return x.clamp_(0.0, 1.0)
