"""The one module that imports aihwkit: device configuration, conversion, programming, drift.

Everything else talks to aihwkit through this narrow interface:

* :func:`rpu_config` builds LionHeart's tile configuration from a :class:`NoiseConfig`.
* :func:`to_analog` converts one ``nn.Linear`` / ``nn.Conv2d`` (groups = 1) to its aihwkit twin.
* :func:`program_and_drift` programs a converted layer and drifts it to ``t`` seconds,
  deterministically for a seed, without disturbing the caller's RNG streams.
* :func:`read_tiles` reads what the fast path needs from the programmed, drifted tiles.
* :func:`device_weight` is the weight one programmed, drifted chip applies for a layer: what
  hardware-aware training trains against.

Facts about aihwkit 1.1.0's pure-torch inference tiles that this module relies on (each was
checked by running code; see tests/test_aihwkit_adapter.py):

* All randomness (programming noise, drift exponents nu, read noise, output noise) comes from
  the global torch RNG. Programming draws programming noise and nu; each drift call re-derives
  conductances from the programmed weights and draws read noise once (frozen in the weights) and
  the drift-compensation read-out noise. Output noise is redrawn on every forward.
* A layer larger than a tile is split into *equal* pieces (``ceil(n / 256)`` of them), not
  256-wide chunks; each tile has its own per-output mapping scales and drift factor.
* Clip and remap settings only act during training (``post_update_step``); at inference the
  conversion already normalises each tile row to max |w| = 1, which is what they would enforce.
* ``PCMLikeNoiseModel.apply_noise`` crashes at t = 0, but the tile drift path does not use it;
  drift at t = 0 applies read noise without drift. Drift times are taken as given (t >= 0).
* The torch tiles do not support grouped/depthwise convolutions or analog bias.

LionHeart settings that cannot be reproduced here: the 255-column tile (the tile size comes from
the hardware preset, 256x256 by default); hardware-aware *retraining* per candidate mapping
(the zoo is fine-tuned with weight noise once instead).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from aihwkit.inference import GlobalDriftCompensation, PCMLikeNoiseModel
from aihwkit.nn import AnalogConv2d, AnalogLinear
from aihwkit.simulator.configs import TorchInferenceRPUConfig, WeightClipType, WeightRemapType
from aihwkit.simulator.tiles.array import TileModuleArray

from accuracy.noise import NoiseConfig

AIHWKIT_VERSION = __import__("aihwkit").__version__


class AnalogConversionError(ValueError):
    """The layer cannot run on aihwkit's torch tiles (for example a depthwise convolution)."""


def rpu_config(noise: NoiseConfig) -> TorchInferenceRPUConfig:
    """LionHeart's tile configuration (Lammie et al., "LionHeart", IEEE TETC 2025: PCMLikeNoiseModel with
    g_max 25 uS, global drift compensation, 8-bit DAC/ADC, output noise 0.06, channel-wise weight
    scaling) for the torch tiles."""
    config = TorchInferenceRPUConfig()
    config.noise_model = PCMLikeNoiseModel(
        g_max=noise.g_max_us, prog_noise_scale=noise.prog_noise_scale,
        read_noise_scale=noise.read_noise_scale, drift_scale=noise.drift_scale)
    config.drift_compensation = GlobalDriftCompensation() if noise.drift_compensation == "global" else None
    config.forward.inp_res = noise.inp_res
    config.forward.out_res = noise.out_res
    config.forward.out_noise = noise.out_noise
    config.forward.out_bound = noise.out_bound
    config.forward.inp_bound = noise.inp_bound
    config.mapping.max_input_size = noise.tile_rows
    config.mapping.max_output_size = noise.tile_cols
    config.mapping.digital_bias = True
    config.mapping.weight_scaling_omega = noise.weight_scaling_omega
    config.mapping.weight_scaling_columnwise = noise.weight_scaling_columnwise
    config.mapping.learn_out_scaling = noise.learn_out_scaling
    config.clip.type = WeightClipType.FIXED_VALUE
    config.clip.fixed_value = noise.clip_fixed_value
    config.remap.type = (WeightRemapType.CHANNELWISE_SYMMETRIC if noise.remap == "channelwise_symmetric"
                         else WeightRemapType.NONE)
    return config


def to_analog(module: nn.Module, noise: NoiseConfig, name: str = "layer") -> nn.Module:
    """The aihwkit twin of one Linear/Conv2d, in eval mode (weights copied, not yet programmed)."""
    if isinstance(module, nn.Conv2d):
        if module.groups != 1:
            raise AnalogConversionError(f"layer {name!r} is a grouped/depthwise convolution (groups="
                                        f"{module.groups}); aihwkit's torch tiles cannot run it: it is digital-only")
        analog_class = AnalogConv2d
    elif isinstance(module, nn.Linear):
        analog_class = AnalogLinear
    else:
        raise AnalogConversionError(f"layer {name!r} is a {type(module).__name__}; only nn.Linear and "
                                    "nn.Conv2d can be analog")
    # The analog layer's constructor draws a random initialisation before the weights are copied.
    with torch.random.fork_rng(devices=[]):
        analog = analog_class.from_digital(copy.deepcopy(module), rpu_config(noise))
    return analog.eval()


def program_and_drift(analog: nn.Module, t_s: float, seed: int) -> None:
    """Program ``analog``'s tiles and drift them to ``t_s`` seconds, deterministically per seed.

    Programming and drift draw from separate streams derived from ``seed``, so drifting the
    same programmed layer to several times shares its programming noise. The caller's global
    RNG state is left untouched.
    """
    if not t_s >= 0:
        raise ValueError(f"drift time must be >= 0 seconds, got {t_s}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        analog.program_analog_weights()
        torch.manual_seed(seed + 7_919)  # an independent stream for read noise and compensation
        analog.drift_analog_weights(float(t_s))


def drift_only(analog: nn.Module, t_s: float, seed: int) -> None:
    """Re-drift an already programmed layer (new read noise, same programming noise)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 7_919)
        analog.drift_analog_weights(float(t_s))


@dataclass(frozen=True)
class TileState:
    """One programmed, drifted tile as the fast path sees it.

    The tile computes, for an input slice ``x[in_start:in_stop]`` of a layer's input vector, the
    outputs ``[out_start:out_stop]``: ``scale * MVM(weight, x)`` where ``weight`` holds the drifted
    conductances normalised to the tile's range and ``scale`` = mapping scale x drift-compensation
    factor x learned output scale, per output.
    """

    in_start: int
    in_stop: int
    out_start: int
    out_stop: int
    weight: torch.Tensor  # (outputs, inputs), normalised units
    scale: torch.Tensor  # (outputs,)


@dataclass(frozen=True)
class LayerState:
    tiles: tuple[TileState, ...]
    bias: torch.Tensor | None
    in_features: int  # rows of the layer's weight matrix (in/groups * kh * kw for a conv)
    out_features: int

    def effective_weight(self) -> torch.Tensor:
        """The (out, in) weight matrix a perfect periphery would apply (scales folded in)."""
        weight = torch.zeros(self.out_features, self.in_features)
        for tile in self.tiles:
            weight[tile.out_start:tile.out_stop, tile.in_start:tile.in_stop] = tile.weight * tile.scale[:, None]
        return weight


def _tile_scale(tile: nn.Module) -> torch.Tensor:
    scale = tile.mapping_scales.detach().clone().reshape(-1)
    if getattr(tile, "alpha", None) is not None:
        scale = scale * tile.alpha.detach().reshape(())
    if getattr(tile, "out_scaling_alpha", None) is not None:
        scale = scale * tile.out_scaling_alpha.detach().reshape(-1)
    return scale


def read_tiles(analog: nn.Module) -> LayerState:
    """Read the programmed, drifted state of a converted layer (see :class:`TileState`)."""
    module = analog.analog_module
    if isinstance(module, TileModuleArray):
        in_sizes, out_sizes, grid, bias = list(module.in_sizes), list(module.out_sizes), module.array, module.bias
    else:
        in_sizes, out_sizes, grid, bias = [module.in_size], [module.out_size], [[module]], module.bias
    tiles = []
    in_start = 0
    for row, in_size in zip(grid, in_sizes):
        out_start = 0
        for tile, out_size in zip(row, out_sizes):
            tiles.append(TileState(in_start, in_start + int(in_size), out_start, out_start + int(out_size),
                                   tile.tile.weight.detach().clone(), _tile_scale(tile)))
            out_start += int(out_size)
        in_start += int(in_size)
    return LayerState(tuple(tiles), None if bias is None else bias.detach().clone(),
                      in_features=in_start, out_features=out_start)


def device_weight(module: nn.Module, noise: NoiseConfig, t_s: float, seed: int) -> torch.Tensor:
    """The weight a chip programmed with ``seed`` applies for ``module`` ``t_s`` seconds after
    programming (programming noise, drift, read noise, drift compensation and mapping scales
    folded in), in the module's own weight shape; the module is left untouched. The I/O
    non-idealities (DAC, ADC, output noise) act on activations and are not in it."""
    analog = to_analog(module, noise)
    program_and_drift(analog, t_s, seed)
    return read_tiles(analog).effective_weight().reshape(module.weight.shape)
