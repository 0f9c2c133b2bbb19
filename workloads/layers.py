"""The layer table: a network's mappable layers in execution order, with their shapes and costs.

Command line: ``python -m cli.layers network=resnet20 [tile.rows=256 tile.cols=256]``.

For each ``nn.Conv2d`` / ``nn.Linear`` reached by a forward pass (batch of one, eval mode):
name, kind, in/out features, kernel, stride, groups, output spatial size, vectors (MVMs per
inference: output positions of a convolution, tokens of a linear layer), crossbar rows
(inputs: ``in/groups * kh * kw``) and columns (outputs), MACs per inference, weights, tiles
needed for the tile size, and whether analog is possible (aihwkit's torch tiles reject
grouped and depthwise convolutions, so those are digital-only).

Compute with no mapping choice is counted too: activation-by-activation products (attention
scores and values) as MACs; normalisation, activations, pooling, softmax and residual additions
as element-wise operations. A module can declare its own with a method
``unmappable_ops(inputs, output) -> {"macs": ..., "elementwise": ...}``; a Linear can declare
``mapping_kind = "attention"`` to be listed as an attention projection.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from torch import nn

KINDS = ("conv", "depthwise_conv", "linear", "attention", "classifier")

# Leaf modules whose cost is one operation per element of the tensor named.
_ELEMENTWISE_ON_OUTPUT = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm, nn.ReLU,
                          nn.ReLU6, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.Hardswish)
_ELEMENTWISE_ON_INPUT = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class Layer:
    """One mappable layer; counts are per inference (one input sample)."""

    index: int
    name: str
    kind: str
    in_features: int
    out_features: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    groups: int
    out_spatial: tuple[int, int]
    vectors: int
    rows: int
    cols: int
    macs: int
    weights: int
    tiles: int
    analog_capable: bool
    in_elements: int  # activations read per inference (the input tensor, not its im2col view)
    out_elements: int  # activations written per inference


@dataclass(frozen=True)
class UnmappableOps:
    """Per-inference compute that runs on the digital cores whatever the mapping."""

    macs: int = 0
    elementwise: int = 0


@dataclass(frozen=True)
class LayerTable:
    network: str
    input_shape: tuple[int, ...]
    tile_rows: int
    tile_cols: int
    layers: tuple[Layer, ...]
    unmappable: UnmappableOps

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def total_tiles(self) -> int:
        return sum(layer.tiles for layer in self.layers if layer.analog_capable)

    def as_dicts(self) -> list[dict]:
        return [asdict(layer) for layer in self.layers]

    def labels(self) -> list[str]:
        """Readable names for reports: kind and its ordinal, shape, and the module name
        (``conv 2, 16->32 3x3 [3]``): many networks name layers by position only (``features.3``)."""
        counts: dict[str, int] = {}
        labels = []
        for layer in self.layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            kind = layer.kind.replace("depthwise_conv", "depthwise")
            shape = f"{layer.in_features}->{layer.out_features}"
            if layer.kind in ("conv", "depthwise_conv"):
                shape += f" {layer.kernel[0]}x{layer.kernel[1]}"
            labels.append(f"{kind} {counts[layer.kind]}, {shape} [{layer.name}]")
        return labels

    def format(self) -> str:
        """A readable fixed-width table with totals."""
        header = ("#", "name", "kind", "in", "out", "kernel", "stride", "grp", "out HxW",
                  "vectors", "MACs", "weights", "tiles", "analog")
        rows = [header]
        for layer in self.layers:
            rows.append((str(layer.index), layer.name, layer.kind, str(layer.in_features),
                         str(layer.out_features), "x".join(map(str, layer.kernel)),
                         "x".join(map(str, layer.stride)), str(layer.groups),
                         "x".join(map(str, layer.out_spatial)), f"{layer.vectors:,}",
                         f"{layer.macs:,}", f"{layer.weights:,}", str(layer.tiles),
                         "yes" if layer.analog_capable else "no (digital-only)"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        right = {0, 3, 4, 7, 9, 10, 11, 12}
        lines = []
        for n, row in enumerate(rows):
            lines.append("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
            if n == 0:
                lines.append("-" * len(lines[0]))
        capable = [layer for layer in self.layers if layer.analog_capable]
        share = 100.0 * sum(layer.macs for layer in capable) / max(1, self.total_macs)
        lines += [
            "",
            f"{self.network}: input {'x'.join(map(str, self.input_shape))}, {len(self.layers)} mappable layers "
            f"({len(capable)} analog-capable), tile {self.tile_rows}x{self.tile_cols}",
            f"MACs per inference: {self.total_macs:,} in mappable layers ({share:.1f}% analog-capable), "
            f"{self.unmappable.macs:,} unmappable (attention); "
            f"{self.unmappable.elementwise:,} element-wise ops (norm, activation, pooling, residual)",
            f"weights: {sum(layer.weights for layer in self.layers):,}; tiles for all analog-capable "
            f"layers: {self.total_tiles}",
        ]
        return "\n".join(lines)


def tiles_needed(rows: int, cols: int, tile_rows: int, tile_cols: int) -> int:
    """Crossbars for a rows x cols weight matrix split into tile_rows x tile_cols blocks."""
    return math.ceil(rows / tile_rows) * math.ceil(cols / tile_cols)


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def build_layer_table(model: nn.Module, input_shape: Iterable[int], network: str = "model",
                      tile_rows: int = 256, tile_cols: int = 256) -> LayerTable:
    """Trace one forward pass of ``model`` on zeros of ``input_shape`` (C, H, W) and tabulate."""
    if tile_rows <= 0 or tile_cols <= 0:
        raise ValueError(f"tile size must be positive, got {tile_rows}x{tile_cols}")
    input_shape = tuple(int(v) for v in input_shape)
    names = {module: name for name, module in model.named_modules()}
    records: list[tuple[nn.Module, torch.Size, torch.Size]] = []
    extra = {"macs": 0, "elementwise": 0}

    def on_mappable(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        records.append((module, inputs[0].shape, output.shape))

    def on_other(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if hasattr(module, "unmappable_ops"):
            for key, value in module.unmappable_ops(inputs, output).items():
                extra[key] += int(value)
        if isinstance(module, _ELEMENTWISE_ON_OUTPUT):
            extra["elementwise"] += output[0].numel()
        elif isinstance(module, _ELEMENTWISE_ON_INPUT):
            extra["elementwise"] += inputs[0][0].numel()

    handles = []
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(on_mappable))
        else:
            handles.append(module.register_forward_hook(on_other))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    layers = []
    for index, (module, in_shape, out_shape) in enumerate(records):
        if isinstance(module, nn.Conv2d):
            groups = int(module.groups)
            kernel, stride = _pair(module.kernel_size), _pair(module.stride)
            out_spatial = (int(out_shape[2]), int(out_shape[3]))
            vectors = out_spatial[0] * out_spatial[1]
            rows = module.in_channels // groups * kernel[0] * kernel[1]
            cols = module.out_channels
            kind = "depthwise_conv" if groups > 1 else "conv"
            in_features, out_features = module.in_channels, module.out_channels
            # Digital-only layers: tiles a block-diagonal embedding would need (for reference only).
            tile_rows_dense = module.in_channels * kernel[0] * kernel[1]
        else:
            groups, kernel, stride = 1, (1, 1), (1, 1)
            vectors = int(math.prod(out_shape[1:-1])) if len(out_shape) > 2 else 1
            out_spatial = (vectors, 1)
            rows, cols = module.in_features, module.out_features
            kind = getattr(module, "mapping_kind", "linear")
            in_features, out_features = rows, cols
            tile_rows_dense = rows
        layers.append(Layer(
            index=index, name=names[module], kind=kind, in_features=in_features,
            out_features=out_features, kernel=kernel, stride=stride, groups=groups,
            out_spatial=out_spatial, vectors=vectors, rows=rows, cols=cols,
            macs=vectors * rows * cols, weights=int(module.weight.numel()),
            tiles=tiles_needed(tile_rows_dense, cols, tile_rows, tile_cols),
            analog_capable=groups == 1,
            in_elements=int(math.prod(in_shape[1:])), out_elements=int(math.prod(out_shape[1:])),
        ))
    if layers and layers[-1].kind == "linear":
        layers[-1] = Layer(**{**asdict(layers[-1]), "kind": "classifier"})
    if not layers:
        raise ValueError(f"{network}: no nn.Conv2d or nn.Linear layer was reached by a forward pass")
    return LayerTable(network=network, input_shape=input_shape, tile_rows=tile_rows, tile_cols=tile_cols,
                      layers=tuple(layers), unmappable=UnmappableOps(**extra))


if __name__ == "__main__":  # ``python -m workloads.layers`` is an alias of ``python -m cli.layers`` (the command lives there)
    import runpy

    runpy.run_module("cli.layers", run_name="__main__", alter_sys=True)
