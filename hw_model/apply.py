"""Apply a mapping file: build the hybrid aihwkit model a user can run and measure.

    from hw_model.apply import build_hybrid_model
    model = build_hybrid_model("outputs/evaluate/<run>/resnet8.json", t_s=86400, threshold=2.0)

The analog layers become aihwkit analog modules (programmed, then drifted to ``t_s``); the
others stay digital. The file must describe the same network (name, layer names and checkpoint)
as the network it is applied to.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from hw_model import aihwkit_adapter as adapter
from hw_model.noise import NoiseConfig
from hw_model.oracle import MappingError, layer_seed
from workloads.layers import build_layer_table
from workloads.registry import NetworkSpec


def read_mapping_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"mapping file {path} does not exist")
    try:
        document = json.loads(path.read_text())
    except ValueError as error:
        raise MappingError(f"mapping file {path} is not valid JSON: {error}") from error
    if not isinstance(document, dict) or document.get("schema_version") != 1:
        raise MappingError(f"{path} is not a version-1 mapping file (written by evaluate.py)")
    return document


def select(document: dict, t_s: float | None = None, threshold: float | None = None) -> dict:
    """The result for (t_s, threshold), or the only/first one when not given."""
    results = document.get("results") or []
    for result in results:
        if (t_s is None or result["t_s"] == t_s) and (threshold is None or result["threshold"] == threshold):
            return result
    raise MappingError(f"no mapping for t_s={t_s}, threshold={threshold}; the file has "
                       f"{[(r['t_s'], r['threshold']) for r in results]}")


def check_same_network(document: dict, spec: NetworkSpec, layer_names: list[str]) -> None:
    network = document.get("network", {})
    if network.get("name") != spec.name or network.get("layers") != layer_names:
        raise MappingError(f"the mapping file is for network {network.get('name')!r} "
                           f"({len(network.get('layers', []))} layers), not {spec.name!r} ({len(layer_names)} layers)")
    if network.get("checkpoint_sha256") != spec.checkpoint_sha256():
        raise MappingError(f"the mapping file was made for another checkpoint of {spec.name!r}")


def build_hybrid_model(mapping_file: str | Path, spec: NetworkSpec | None = None, t_s: float | None = None,
                       threshold: float | None = None, seed: int = 0) -> nn.Module:
    """The checkpoint's model with the mapping's analog layers as programmed, drifted aihwkit layers."""
    document = read_mapping_file(mapping_file)
    spec = spec or NetworkSpec.zoo(document["network"]["name"])
    result = select(document, t_s, threshold)
    noise = NoiseConfig.from_dict({k: v for k, v in document["device"].items() if k != "digest"})
    model = spec.load()
    table = build_layer_table(model, spec.input_shape, spec.name, noise.tile_rows, noise.tile_cols)
    check_same_network(document, spec, [layer.name for layer in table.layers])
    for index, layer in enumerate(result["layers"]):
        if layer["target"] != "analog":
            continue
        parent_name, _, child = layer["name"].rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        analog = adapter.to_analog(getattr(parent, child), noise, layer["name"])
        adapter.program_and_drift(analog, float(result["t_s"]), layer_seed(seed, index))
        setattr(parent, child, analog)
    return model.eval()


def drift_seeded_forward(model: nn.Module, inputs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A forward whose analog output noise is reproducible for ``seed``."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        return model(inputs)
