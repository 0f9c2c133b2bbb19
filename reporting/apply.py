"""Apply a mapping file: build the hybrid aihwkit model a user can run and measure.

    from reporting.apply import build_hybrid_model
    model = build_hybrid_model("outputs/evaluate/<run>/resnet8.json", t_s=86400, threshold=2.0)

The analog layers become aihwkit analog modules (programmed, then drifted to ``t_s``); the
others stay digital. The file must describe the same network (name, layer names and checkpoint)
as the network it is applied to.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from accuracy import aihwkit_adapter as adapter
from accuracy.noise import NoiseConfig
from accuracy.oracle import layer_seed
from reporting.mapping_file import check_same_network, mapping_of, read_mapping_file, select
from workloads.layers import build_layer_table
from workloads.registry import NetworkSpec


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
    for index, analog_layer in enumerate(mapping_of(result)):
        if not analog_layer:
            continue
        name = table.layers[index].name
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        analog = adapter.to_analog(getattr(parent, child), noise, name)
        adapter.program_and_drift(analog, float(result["t_s"]), layer_seed(seed, index))
        setattr(parent, child, analog)
    return model.eval()


def drift_seeded_forward(model: nn.Module, inputs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A forward whose analog output noise is reproducible for ``seed``."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        return model(inputs)
