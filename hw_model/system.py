"""The hardware as data: digital cores, AIMC tiles, the core-tile interface and memory.

Every quantity carries its unit in its name. Presets live in ``conf/hw/*.yaml`` with a
citation beside each value; :meth:`System.from_dict` validates them and names the field at
fault (``hw.tiles.count must be > 0, got 0``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, Mapping


class HardwareConfigError(ValueError):
    """An invalid or incomplete system description; the message names the field."""


def _check_positive(owner: str, obj: Any, allow_zero: tuple[str, ...] = ()) -> None:
    for field in fields(obj):
        value = getattr(obj, field.name)
        if field.type in ("int", "float") or isinstance(value, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise HardwareConfigError(f"{owner}.{field.name} must be a number, got {value!r}")
            if field.name in allow_zero:
                if value < 0:
                    raise HardwareConfigError(f"{owner}.{field.name} must be >= 0, got {value}")
            elif value <= 0:
                raise HardwareConfigError(f"{owner}.{field.name} must be > 0, got {value}")


@dataclass(frozen=True)
class DigitalCores:
    """The general-purpose cores that run digital layers and all non-MVM work."""

    count: int
    clock_ghz: float
    macs_per_cycle: float  # sustained int8 MACs per cycle per core
    elementwise_ops_per_cycle: float  # sustained element-wise ops (add, scale, activation) per cycle per core
    e_mac_pj: float  # energy per int8 MAC including instruction overheads
    e_elementwise_pj: float  # energy per element-wise op
    static_power_mw: float  # per core, drawn for the whole inference

    def __post_init__(self) -> None:
        _check_positive("hw.cores", self, allow_zero=("static_power_mw",))
        if int(self.count) != self.count:
            raise HardwareConfigError(f"hw.cores.count must be a whole number, got {self.count}")


@dataclass(frozen=True)
class AnalogTiles:
    """PCM crossbar tiles: rows are inputs, columns are outputs."""

    rows: int
    cols: int
    count: int
    t_mvm_ns: float  # one matrix-vector multiply on one tile, DAC to ADC
    e_mvm_pj: float  # energy of one full-tile MVM including DAC/ADC
    static_power_mw: float  # per tile in use

    def __post_init__(self) -> None:
        _check_positive("hw.tiles", self, allow_zero=("static_power_mw",))
        for name in ("rows", "cols", "count"):
            if int(getattr(self, name)) != getattr(self, name):
                raise HardwareConfigError(f"hw.tiles.{name} must be a whole number, got {getattr(self, name)}")


@dataclass(frozen=True)
class CoreTileInterface:
    """How cores move activations into and out of tiles (ALPINE's queue/dequeue instructions)."""

    bytes_per_transfer: int
    cycles_per_transfer: float
    e_transfer_pj: float

    def __post_init__(self) -> None:
        _check_positive("hw.interface", self)


@dataclass(frozen=True)
class Memory:
    """Where digital layers' weights and all activations live."""

    bandwidth_gb_s: float
    e_byte_pj: float

    def __post_init__(self) -> None:
        _check_positive("hw.memory", self)


@dataclass(frozen=True)
class System:
    name: str
    cores: DigitalCores
    tiles: AnalogTiles
    interface: CoreTileInterface
    memory: Memory

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> "System":
        """Validate a plain mapping (or OmegaConf node) into a System."""
        if not isinstance(config, Mapping) and not hasattr(config, "_metadata"):
            raise HardwareConfigError(f"hw must be a mapping or a preset name, got {config!r}")
        if hasattr(config, "_metadata"):
            from omegaconf import OmegaConf

            config = OmegaConf.to_container(config, resolve=True)
        parts = {"cores": DigitalCores, "tiles": AnalogTiles, "interface": CoreTileInterface, "memory": Memory}
        missing = [key for key in ("name", *parts) if key not in config]
        if missing:
            raise HardwareConfigError(f"hw is missing {', '.join('hw.' + m for m in missing)}")
        built = {}
        for key, kind in parts.items():
            section = config[key]
            if not isinstance(section, Mapping):
                raise HardwareConfigError(f"hw.{key} must be a mapping, got {section!r}")
            names = {f.name for f in fields(kind)}
            absent = sorted(names - set(section))
            unknown = sorted(set(section) - names)
            if absent:
                raise HardwareConfigError(f"hw.{key} is missing {', '.join(f'hw.{key}.{n}' for n in absent)}")
            if unknown:
                raise HardwareConfigError(f"hw.{key} has unknown field(s) {', '.join(unknown)}; "
                                          f"expected {', '.join(sorted(names))}")
            built[key] = kind(**section)
        return cls(name=str(config["name"]), **built)

    def replace(self, **sections: Any) -> "System":
        """A copy with some sections' fields changed, e.g. ``replace(cores={"count": 8})``."""
        changed = {key: dataclasses.replace(getattr(self, key), **value) for key, value in sections.items()}
        return dataclasses.replace(self, **changed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_system(hw: str | Mapping[str, Any]) -> System:
    """A hardware preset by name (``conf/hw/<name>.yaml``) or a description, validated."""
    from common.presets import PresetError, load_preset

    try:
        return System.from_dict(load_preset("hw", hw))
    except PresetError as error:
        raise HardwareConfigError(str(error)) from error
