"""The one reader of preset files: ``conf/<group>/<name>.yaml`` (hardware, noise, network, ...).

Every entry point and library function that takes a preset by name reads it here, so a name
that does not exist gets the same message everywhere, listing the presets there are. What a
preset means is validated by its owner (``hw_model.system.System.from_dict``,
``accuracy.noise.NoiseConfig.from_dict``, ``workloads.registry.NetworkSpec.from_config``).
YAML is always read with ``safe_load``: a preset file cannot run code.
"""

from __future__ import annotations

from typing import Any, Mapping

import yaml

from common.paths import CONF_DIR


class PresetError(ValueError):
    """An unknown or unreadable preset; the message lists the choices."""


def preset_names(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def load_preset(group: str, preset: str | Mapping[str, Any]) -> dict[str, Any]:
    """The preset ``conf/<group>/<preset>.yaml`` as a plain dict, or ``preset`` itself when it is
    already a mapping (a plain dict or an OmegaConf node, converted to plain containers)."""
    if not isinstance(preset, str):
        if hasattr(preset, "_metadata"):  # an OmegaConf node
            from omegaconf import OmegaConf

            return OmegaConf.to_container(preset, resolve=True)  # type: ignore[return-value]
        if not isinstance(preset, Mapping):
            raise PresetError(f"a {group} preset is a name or a mapping, got {type(preset).__name__} {preset!r}")
        return dict(preset)
    path = CONF_DIR / group / f"{preset}.yaml"
    if not path.is_file():
        raise PresetError(f"unknown {group} preset {preset!r}; choose one of {', '.join(preset_names(group))} "
                          f"(files in {CONF_DIR / group})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise PresetError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise PresetError(f"{path} must hold a mapping, got {type(data).__name__}")
    return data


def default_choice(config_name: str, group: str) -> str:
    """The option ``conf/<config_name>.yaml`` picks for ``group`` in its defaults list."""
    config = yaml.safe_load((CONF_DIR / f"{config_name}.yaml").read_text())
    for entry in config.get("defaults", []):
        if isinstance(entry, dict) and group in entry:
            return str(entry[group])
    raise PresetError(f"conf/{config_name}.yaml chooses no {group} preset in its defaults list")


def entry_config(config_name: str) -> dict[str, Any]:
    """``conf/<config_name>.yaml`` as plain data, without composing its defaults."""
    return yaml.safe_load((CONF_DIR / f"{config_name}.yaml").read_text())
