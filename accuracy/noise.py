"""The analog device configuration as data (``conf/noise/*.yaml``), validated and hashable."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from accuracy.cache import digest

DRIFT_COMPENSATIONS = ("global", "none")
REMAPS = ("channelwise_symmetric", "none")


class NoiseConfigError(ValueError):
    """An invalid device configuration; the message names the field."""


@dataclass(frozen=True)
class NoiseConfig:
    """PCM tile non-idealities (see conf/noise/lionheart.yaml for the meaning of each field)."""

    name: str
    g_max_us: float = 25.0
    prog_noise_scale: float = 1.0
    read_noise_scale: float = 1.0
    drift_scale: float = 1.0
    drift_compensation: str = "global"
    inp_res: float = 1 / 254
    out_res: float = 1 / 254
    out_noise: float = 0.06
    out_bound: float = 12.0
    inp_bound: float = 1.0
    weight_scaling_omega: float = 1.0
    weight_scaling_columnwise: bool = True
    learn_out_scaling: bool = True
    clip_fixed_value: float = 1.0
    remap: str = "channelwise_symmetric"
    tile_rows: int = 256  # from the hardware preset
    tile_cols: int = 256

    def __post_init__(self) -> None:
        for name in ("g_max_us", "inp_res", "out_res", "out_bound", "inp_bound", "tile_rows", "tile_cols"):
            if not getattr(self, name) > 0:
                raise NoiseConfigError(f"noise.{name} must be > 0, got {getattr(self, name)}")
        for name in ("prog_noise_scale", "read_noise_scale", "drift_scale", "out_noise", "weight_scaling_omega"):
            if getattr(self, name) < 0:
                raise NoiseConfigError(f"noise.{name} must be >= 0, got {getattr(self, name)}")
        if self.drift_compensation not in DRIFT_COMPENSATIONS:
            raise NoiseConfigError(f"noise.drift_compensation must be one of {DRIFT_COMPENSATIONS}, "
                                   f"got {self.drift_compensation!r}")
        if self.remap not in REMAPS:
            raise NoiseConfigError(f"noise.remap must be one of {REMAPS}, got {self.remap!r}")

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], tile_rows: int = 256, tile_cols: int = 256) -> "NoiseConfig":
        if not isinstance(config, Mapping) and not hasattr(config, "_metadata"):
            raise NoiseConfigError(f"noise must be a mapping or a preset name, got {config!r}")
        if hasattr(config, "_metadata"):
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(config, resolve=True)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise NoiseConfigError(f"noise has unknown field(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
        if "name" not in config:
            raise NoiseConfigError("noise is missing noise.name")
        return cls(**{"tile_rows": tile_rows, "tile_cols": tile_cols, **config})

    def digest(self) -> str:
        """Hash of every field that changes a simulated result (the name does not)."""
        fields = dataclasses.asdict(self)
        fields.pop("name")
        return digest(fields)[:16]


def load_noise(noise: str | Mapping[str, Any], tile_rows: int = 256, tile_cols: int = 256) -> NoiseConfig:
    """A device preset by name (``conf/noise/<name>.yaml``) or a description, validated, for tiles of
    ``tile_rows`` x ``tile_cols`` (the hardware preset's)."""
    from common.presets import PresetError, load_preset

    try:
        return NoiseConfig.from_dict(load_preset("noise", noise), tile_rows, tile_cols)
    except PresetError as error:
        raise NoiseConfigError(str(error)) from error
