import subprocess
import sys

import pytest
from torch import nn

from workloads.layers import build_layer_table, tiles_needed
from workloads.registry import NetworkSpec, zoo_names


def test_conv_macs_and_tiles_by_hand():
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1))
    (layer,) = build_layer_table(model, (16, 28, 28)).layers
    # 28*28 output positions x 16 outputs x (16 inputs x 3 x 3)
    assert layer.macs == 28 * 28 * 16 * 16 * 9 == 1_806_336
    assert (layer.rows, layer.cols, layer.vectors) == (144, 16, 784)
    assert layer.tiles == 1 and layer.analog_capable and layer.kind == "conv"
    assert layer.weights == 16 * 16 * 9
    assert layer.in_elements == layer.out_elements == 16 * 28 * 28


def test_linear_macs_and_tiles_by_hand():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 10))
    first, last = build_layer_table(model, (1, 28, 28)).layers
    assert first.macs == 784 * 512 == 401_408
    assert first.tiles == 4 * 2  # ceil(784/256) row blocks x ceil(512/256) column blocks
    assert first.kind == "linear" and last.kind == "classifier"
    assert tiles_needed(784, 512, 128, 512) == 7


def test_depthwise_conv_is_digital_only():
    model = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32))
    (layer,) = build_layer_table(model, (32, 14, 14)).layers
    assert layer.kind == "depthwise_conv" and not layer.analog_capable
    assert layer.macs == 14 * 14 * 32 * 9  # one 3x3 filter per channel


def test_strided_conv_output_size():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1))
    (layer,) = build_layer_table(model, (3, 32, 32)).layers
    assert layer.out_spatial == (16, 16) and layer.stride == (2, 2)
    assert layer.macs == 16 * 16 * 8 * 27


def test_tile_size_is_configurable():
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 512))
    (layer,) = build_layer_table(model, (1, 28, 28), tile_rows=512, tile_cols=512).layers
    assert layer.tiles == 2
    with pytest.raises(ValueError, match="positive"):
        build_layer_table(model, (1, 28, 28), tile_rows=0)


def test_vit_counts_attention_projections_and_unmappable_matmuls():
    spec = NetworkSpec.zoo("vit")
    table = build_layer_table(spec.build(), spec.input_shape, "vit")
    kinds = [layer.kind for layer in table.layers]
    assert kinds.count("attention") == 4 * 4  # q, k, v, out in each of 4 blocks
    assert kinds[-1] == "classifier"
    tokens, dim = 17, 64  # 16 patches + class token
    assert table.unmappable.macs == 4 * 2 * tokens * tokens * dim
    query = next(layer for layer in table.layers if layer.name.endswith("attention.query"))
    assert query.vectors == tokens and query.macs == tokens * dim * dim


def test_resnet_counts_residual_additions():
    spec = NetworkSpec.zoo("resnet8")
    table = build_layer_table(spec.build(), spec.input_shape, "resnet8")
    assert len(table) == 10
    assert table.unmappable.elementwise > 0


@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_network_has_a_table(name):
    spec = NetworkSpec.zoo(name)
    table = build_layer_table(spec.build(), spec.input_shape, name)
    assert len(table) >= 3
    assert all(layer.macs > 0 and layer.tiles >= 1 for layer in table.layers)
    assert [layer.index for layer in table.layers] == list(range(len(table)))
    digital_only = [layer for layer in table.layers if not layer.analog_capable]
    assert bool(digital_only) == (name == "mobilenetv2")


def test_cli_prints_a_table_and_rejects_unknown_networks():
    done = subprocess.run([sys.executable, "-m", "cli.layers", "network=lenet5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "conv" in done.stdout and "classifier" in done.stdout and "lenet5" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "cli.layers", "network=nope"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Could not find 'network/nope'" in bad.stderr
    assert "Traceback" not in bad.stderr
