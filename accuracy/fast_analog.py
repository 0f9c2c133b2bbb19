"""The fast path: an analog layer as plain torch ops on aihwkit's programmed, drifted weights.

aihwkit's torch tile runs, per tile and per batch, an iterative loop of DAC quantisation,
MVM, output noise and ADC quantisation, halving the inputs and redoing the whole batch when any
output clips. This module keeps the device state exactly (the tiles' drifted conductances, mapping
scales and drift-compensation factors come from :mod:`accuracy.aihwkit_adapter`) and replaces
the loop by one pass with the same statistics:

* noise management: each input vector (a convolution patch) is scaled by its abs-max ``nm``
  (computed by max-pooling |x| when a layer fits one row of tiles);
* bound management: the reduction factor ``red`` (1, 2, 4, ... 32) is the smallest that keeps
  every noise-free normalised output of the tile within ``out_bound`` over the batch, as
  aihwkit's iterative loop would find it;
* DAC, ADC and output noise become one Gaussian term per output with their exact variance in
  output units: ``(nm * red)^2 * (out_noise^2 + do^2 / 12 + di^2 / 12 * ||w_row||^2)`` times the
  squared per-output scale, with ``di``, ``do`` the DAC and ADC steps.

How close this is to the reference path is measured by ``bench/bench_oracle.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from accuracy.aihwkit_adapter import LayerState, TileState
from accuracy.noise import NoiseConfig

MAX_REDUCTION = 32.0  # aihwkit's last bound-management attempt with 8-bit inputs (0.25 / di = 31.75)


@dataclass(frozen=True)
class NoisyTile:
    """A programmed, drifted tile and the standard deviation of its I/O noise per output, in output
    units per unit of ``nm * red`` (see the module docstring)."""

    state: TileState
    noise_std: torch.Tensor  # (outputs,)


class FastAnalogLayer(nn.Module):
    """Drop-in replacement for an nn.Linear / nn.Conv2d (groups = 1) that was programmed analog."""

    def __init__(self, original: nn.Module, state: LayerState, noise: NoiseConfig,
                 generator: torch.Generator) -> None:
        super().__init__()
        self.is_conv = isinstance(original, nn.Conv2d)
        self.generator = generator
        if self.is_conv:
            self.kernel_size, self.stride = original.kernel_size, original.stride
            self.padding, self.dilation = original.padding, original.dilation
            if isinstance(self.padding, str):
                raise ValueError("string padding is not supported by the fast analog path")
        self.in_channels = getattr(original, "in_channels", None)
        self.out_features = state.out_features
        di = noise.inp_res * 2 * noise.inp_bound
        do = noise.out_res * 2 * noise.out_bound
        self.out_bound = noise.out_bound
        self.bias = state.bias
        self.row_blocks: list[tuple[int, int]] = sorted({(t.in_start, t.in_stop) for t in state.tiles})
        self.tiles: list[NoisyTile] = []
        for tile in state.tiles:
            row_norm_sq = tile.weight.pow(2).sum(dim=1)
            variance_unit = noise.out_noise ** 2 + do ** 2 / 12.0 + di ** 2 / 12.0 * row_norm_sq
            self.tiles.append(NoisyTile(tile, variance_unit.sqrt() * tile.scale))
        # One convolution for the whole layer when it fits one row of tiles.
        if self.is_conv and len(self.row_blocks) == 1:
            by_output = sorted(self.tiles, key=lambda t: t.state.out_start)
            normalised = torch.cat([t.state.weight for t in by_output], dim=0)
            self.conv_weight = normalised.reshape(state.out_features, self.in_channels, *self.kernel_size)

    def _reduction(self, z: torch.Tensor, nm: torch.Tensor) -> float:
        """aihwkit's bound-management factor for a batch of noise-free outputs ``z`` (|z| / nm is
        the normalised output)."""
        peak = float(z.abs().div_(nm).max()) if z.numel() else 0.0
        if peak <= self.out_bound:
            return 1.0
        return min(MAX_REDUCTION, 2.0 ** math.ceil(math.log2(peak / self.out_bound)))

    def _noisy(self, z: torch.Tensor, nm: torch.Tensor, tile: NoisyTile, out_dim: int) -> torch.Tensor:
        """Scaled tile output with its I/O noise; ``z`` in normalised units (overwritten),
        outputs along out_dim."""
        shape = [1] * z.dim()
        shape[out_dim] = -1
        reduction = self._reduction(z, nm)
        noise = torch.randn(z.shape, generator=self.generator).mul_(nm * reduction).mul_(tile.noise_std.view(shape))
        return z.mul_(tile.state.scale.view(shape)).add_(noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_conv and len(self.row_blocks) == 1:
            return self._conv_single_row(x)
        if self.is_conv:
            batch, _, height, width = x.shape
            patches = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # B, CKK, P
            out_h = (height + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
            out_w = (width + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
            y = self._matrix(patches.transpose(1, 2))  # B, P, out
            return y.transpose(1, 2).reshape(batch, self.out_features, out_h, out_w)
        return self._matrix(x)

    def _conv_single_row(self, x: torch.Tensor) -> torch.Tensor:
        z = F.conv2d(x, self.conv_weight, None, self.stride, self.padding, self.dilation)
        # max over channels, then over the window: the same abs-max per patch, one channel to pool
        nm = F.max_pool2d(x.abs().amax(dim=1, keepdim=True), self.kernel_size, self.stride, self.padding,
                          self.dilation)
        nm = torch.where(nm > 0, nm, torch.ones_like(nm))
        if len(self.tiles) == 1:
            out = self._noisy(z, nm, self.tiles[0], out_dim=1)
            return out if self.bias is None else out.add_(self.bias.view(1, -1, 1, 1))
        out = torch.empty_like(z)
        for tile in self.tiles:
            out_start, out_stop = tile.state.out_start, tile.state.out_stop
            out[:, out_start:out_stop] = self._noisy(z[:, out_start:out_stop], nm, tile, out_dim=1)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def _matrix(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(*x.shape[:-1], self.out_features)
        for in_start, in_stop in self.row_blocks:
            part = x[..., in_start:in_stop]
            nm = part.abs().amax(dim=-1, keepdim=True)
            nm = torch.where(nm > 0, nm, torch.ones_like(nm))
            for tile in self.tiles:
                if tile.state.in_start != in_start:
                    continue
                z = part @ tile.state.weight.T
                out[..., tile.state.out_start:tile.state.out_stop] += self._noisy(z, nm, tile, out_dim=z.dim() - 1)
        return out if self.bias is None else out + self.bias


class EffectiveWeightLayer(nn.Module):
    """The programmed, drifted weights alone, as one plain conv/linear: no noise management, DAC,
    ADC or output noise. Cheaper than :class:`FastAnalogLayer` and less faithful; the oracle's
    ``method="weights"``, measured against the reference by ``bench/bench_oracle.py``."""

    def __init__(self, original: nn.Module, state: LayerState) -> None:
        super().__init__()
        self.is_conv = isinstance(original, nn.Conv2d)
        weight = state.effective_weight()
        if self.is_conv:
            self.stride, self.padding, self.dilation = original.stride, original.padding, original.dilation
            weight = weight.reshape(state.out_features, original.in_channels, *original.kernel_size)
        self.weight, self.bias = weight, state.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_conv:
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return F.linear(x, self.weight, self.bias)
