"""Quantisation-aware fine-tuning: the network trains and is evaluated through the rounding its int8 export applies.

The exported int8 graph (``export.quantize_int8``, then ``export8.prelus_on_codes``) rounds:

* each conv / Gemm weight per output channel to ±64 steps (7 bits, symmetric: scale ``max |w| / 64``);
* each PReLU's slopes to a 7-bit unsigned grid of their own (they are a Mul's constant input), and its output to
  its input's codes (the export computes PReLU on the codes);
* every other activation (the input, each conv and residual-add output, the logits) to the 256 codes of
  ``[min(lo, 0), max(hi, 0)]``, the range onnxruntime's min-max calibrator finds on the calibration faces.

Trained in fp32 only, the shipped stage-8 graph lost 1.3 points on FER+ and 9 points of contempt recall to that
rounding (its int8 and fp32 argmax agree on 86 % of ``affect_train`` validation faces). :class:`FakeQuant` rounds
the same way in the forward pass, with straight-through gradients, so training moves the weights to where the
rounding costs little. :meth:`FakeQuant.calibrate` measures the ranges in fp32 on the faces the export calibrates on
(``calibration_faces``; the same ranges to the last digit), and a run measures them again every
``qat_calibrate_every`` steps as the weights move. The simulation is not bit-exact (onnxruntime sums in integers and
requantises; a code that lands on the other side of a rounding edge moves what follows), but it is closer to the
int8 graph than the float network is: argmax agreement with the stage-8 int8 graph 89 % against 86 %.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

WEIGHT_STEPS = 64  # the export's 7-bit weights (reduce_range): integers within ±64
CALIBRATION_SETS = ("ferplus_train", "sfew_train", "affect_train")  # affect_train where cached (stage 6 on)


def calibration_faces(faces: Path, per_set: int, seed: int) -> np.ndarray:
    """``per_set`` training faces (uint8 RGB [N,112,112,3]) of each set: FER+, SFEW and, where cached,
    ``affect_train`` (calibrating on grey FER+ faces alone cost 2.2 points on the colour film stills)."""
    from emotion.model.training.faces import load_faces

    rng = np.random.default_rng(seed)
    picked = []
    for name in CALIBRATION_SETS:
        if name == "affect_train" and not (faces / f"{name}.npz").exists():
            continue
        images = load_faces(faces / f"{name}.npz")["images"]
        picked.append(images[np.sort(rng.choice(len(images), min(per_set, len(images)), replace=False))])
    return np.concatenate(picked)


def round_weight(w: torch.Tensor) -> torch.Tensor:
    """``w`` rounded per output channel (dim 0) to the export's 7-bit grid (round half to even, as onnxruntime);
    the gradient passes straight through."""
    scale = w.detach().abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-12) / WEIGHT_STEPS
    return w + (torch.clamp(torch.round(w / scale), -WEIGHT_STEPS, WEIGHT_STEPS) * scale - w).detach()


def round_slope(a: torch.Tensor) -> torch.Tensor:
    """PReLU slopes as the export keeps them (a Mul's constant input): one 7-bit unsigned range over the layer."""
    return round_uint8(a, float(a.detach().min()), float(a.detach().max()), levels=127)


def round_uint8(x: torch.Tensor, lo: float, hi: float, levels: int = 255) -> torch.Tensor:
    """``x`` through a uint8 QuantizeLinear / DequantizeLinear pair whose range is [lo, hi] widened to hold 0, in
    ``levels`` steps; the gradient passes straight through inside the range."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max(hi - lo, 1e-12) / levels
    zero = round(-lo / scale)
    return _RoundStraightThrough.apply(x, scale, zero, levels)


class _RoundStraightThrough(torch.autograd.Function):
    """Quantise-dequantise in place on one new tensor, the gradient passed through unchanged: the same figures as
    ``x + (q(x) - x).detach()`` at half the time of a training step's activation rounding (no saved temporaries)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: float, zero: int, levels: int) -> torch.Tensor:  # noqa: ARG004
        return torch.div(x, scale).round_().add_(zero).clamp_(0, levels).sub_(zero).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:  # noqa: ARG004
        return grad, None, None, None


class FakeQuant:
    """The activation ranges of one network, and the switch that makes it round like its int8 export."""

    def __init__(self) -> None:
        self.ranges: dict[str, tuple[float, float]] = {}
        self.enabled = False
        self._observing = False

    @property
    def active(self) -> bool:
        """Rounding, or measuring ranges."""
        return self.enabled or self._observing

    def weight(self, w: torch.Tensor) -> torch.Tensor:
        return round_weight(w) if self.enabled else w

    def slope(self, a: torch.Tensor) -> torch.Tensor:
        return round_slope(a) if self.enabled else a

    def activation(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if self._observing:
            lo, hi = float(x.detach().min()), float(x.detach().max())
            old = self.ranges.get(name, (lo, hi))
            self.ranges[name] = (min(old[0], lo), max(old[1], hi))
            return x
        if self.enabled and name in self.ranges:
            return round_uint8(x, *self.ranges[name])
        return x

    @contextmanager
    def off(self) -> Iterator[None]:
        """Plain fp32 inside (the ONNX export traces the float network; onnxruntime adds its own rounding)."""
        enabled, self.enabled = self.enabled, False
        try:
            yield
        finally:
            self.enabled = enabled

    @torch.no_grad()
    def calibrate(self, run: torch.nn.Module, inputs: list[torch.Tensor]) -> None:
        """Measure every range afresh: ``run`` (the network's forward) on each batch of ``inputs`` in plain fp32,
        as onnxruntime's calibrator runs the float graph."""
        self.ranges = {}
        self._observing = True
        enabled, self.enabled = self.enabled, False
        was_training = run.training
        run.eval()
        try:
            for x in inputs:
                run(x)
        finally:
            self._observing = False
            self.enabled = enabled
            run.train(was_training)
