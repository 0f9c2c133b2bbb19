"""Hardware-aware training against the evaluation device model.

A chip's accuracy differs from the next chip's mostly through batch normalisation: programming
noise and drift shift each channel's pre-activation mean and variance by a different amount on
every chip, and the running statistics frozen at training time cannot follow. Measured on the
zoo's ResNet-8 (all layers analog at 1 day, 8 chips, 1,000 test images, fast path): 88.34% +-
1.72 over chips; the same chips with their BN statistics re-estimated on 2,000 training images:
91.29% +- 0.45 (``python -m bench.bench_chip_spread``). Additive weight noise seen with BN in training mode (the zoo's first
hardware-aware phase) does not teach robustness to this: batch statistics absorb the shift.

:class:`DeviceWeightNoise` gives every training step the weights of a freshly programmed chip at a
random age: for each analog-capable layer (Linear, Conv2d with groups = 1) the weight the
device model (``accuracy.aihwkit_adapter.device_weight``: aihwkit's PCM programming noise, drift
exponents, read noise and global drift compensation, the same ``conf/noise`` preset the oracle
evaluates with) applies after ``t`` seconds, ``t`` log-uniform in [``t_low_s``, ``t_high_s``]
and shared by the layers of one step (one chip at one age). The trainer computes the gradient at
these weights and applies it to the clean ones, with batch normalisation in eval mode, so the
network learns to tolerate the shifts its frozen statistics will see on a chip.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import nn

from accuracy.aihwkit_adapter import device_weight
from accuracy.noise import NoiseConfig
from accuracy.oracle import layer_seed
from common.units import HOUR_S, YEAR_S


@dataclass(frozen=True)
class DeviceWeightNoise:
    """Weights of a programmed, drifted chip for each training step (see the module docstring)."""

    noise: NoiseConfig
    t_low_s: float = HOUR_S
    t_high_s: float = YEAR_S

    def __post_init__(self) -> None:
        if not 0 < self.t_low_s <= self.t_high_s:
            raise ValueError(f"need 0 < t_low_s <= t_high_s, got {self.t_low_s} and {self.t_high_s}")

    def draw(self, generator: torch.Generator) -> tuple[float, int]:
        """A drift time (log-uniform) and a programming seed, from ``generator``."""
        u = float(torch.rand((), generator=generator, dtype=torch.float64))
        t_s = math.exp(math.log(self.t_low_s) + u * (math.log(self.t_high_s) - math.log(self.t_low_s)))
        return t_s, int(torch.randint(0, 2**31 - 1, (), generator=generator))

    @contextlib.contextmanager
    def applied(self, layers: Sequence[nn.Module], generator: torch.Generator) -> Iterator[None]:
        """Replace the layers' weights by one chip's for the duration of the block; restore the
        clean weights on exit (also on error)."""
        t_s, seed = self.draw(generator)
        clean = [layer.weight.detach().clone() for layer in layers]
        try:
            with torch.no_grad():
                for index, layer in enumerate(layers):
                    # independent streams per layer, as the oracle programs a chip's layers
                    layer.weight.copy_(device_weight(layer, self.noise, t_s, layer_seed(seed, index)))
            yield
        finally:
            with torch.no_grad():
                for layer, weight in zip(layers, clean):
                    layer.weight.copy_(weight)

    def describe(self) -> dict:
        """What a checkpoint's metadata records about the noise it was trained with."""
        return {"kind": "device", "preset": self.noise.name, "device_digest": self.noise.digest(),
                "t_range_s": [self.t_low_s, self.t_high_s], "batch_norm": "frozen (eval mode)"}
