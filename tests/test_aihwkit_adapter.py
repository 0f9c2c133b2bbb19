"""The aihwkit adapter on the exact configurations the project uses (no mocks: real tiles)."""

import pytest
import torch
from torch import nn

from accuracy.aihwkit_adapter import AnalogConversionError, drift_only, program_and_drift, read_tiles, to_analog
from accuracy.fast_analog import FastAnalogLayer
from accuracy.noise import NoiseConfig, NoiseConfigError

NOISE = NoiseConfig(name="lionheart")


def programmed(layer: nn.Module, t_s: float, seed: int):
    analog = to_analog(layer, NOISE)
    program_and_drift(analog, t_s, seed)
    return analog


def test_large_layer_splits_into_equal_tiles():
    state = read_tiles(programmed(nn.Linear(784, 512), 3600.0, 0))
    blocks = sorted({(t.in_start, t.in_stop) for t in state.tiles})
    assert blocks == [(0, 196), (196, 392), (392, 588), (588, 784)]  # 4 equal pieces, not 256-wide
    assert len(state.tiles) == 8 and state.bias is not None


@pytest.mark.parametrize("t_s", [0.0, 1e-9, 1.0])
def test_zero_and_tiny_drift_times_work(t_s):
    layer = nn.Linear(40, 10)
    weight = read_tiles(programmed(layer, t_s, 1)).effective_weight()
    assert torch.isfinite(weight).all()
    assert (weight - layer.weight).norm() / layer.weight.norm() < 0.3


def test_same_seed_same_device_state_different_seed_differs():
    layer = nn.Conv2d(4, 8, 3)
    a = read_tiles(programmed(layer, 86_400.0, 5)).effective_weight()
    b = read_tiles(programmed(layer, 86_400.0, 5)).effective_weight()
    c = read_tiles(programmed(layer, 86_400.0, 6)).effective_weight()
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_redrifting_equals_programming_afresh():
    layer = nn.Linear(300, 20)
    fresh = read_tiles(programmed(layer, 86_400.0, 3)).effective_weight()
    reused = programmed(layer, 10.0, 3)
    drift_only(reused, 86_400.0, 3)
    assert torch.equal(read_tiles(reused).effective_weight(), fresh)


def test_programming_leaves_the_callers_rng_alone():
    layer = nn.Linear(20, 5)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    programmed(layer, 3600.0, 9)
    assert torch.equal(torch.rand(3), expected)


def test_depthwise_and_other_layers_are_rejected_clearly():
    with pytest.raises(AnalogConversionError, match="digital-only"):
        to_analog(nn.Conv2d(8, 8, 3, groups=8), NOISE, "features.3")
    with pytest.raises(AnalogConversionError, match="only nn.Linear and nn.Conv2d"):
        to_analog(nn.BatchNorm2d(8), NOISE)
    with pytest.raises(ValueError, match=">= 0"):
        program_and_drift(to_analog(nn.Linear(4, 4), NOISE), -1.0, 0)


def test_noise_config_validation_names_the_field():
    with pytest.raises(NoiseConfigError, match="noise.out_noise must be >= 0"):
        NoiseConfig(name="x", out_noise=-0.1)
    with pytest.raises(NoiseConfigError, match="unknown field"):
        NoiseConfig.from_dict({"name": "x", "g_max": 25})
    assert NoiseConfig(name="a").digest() == NoiseConfig(name="b").digest()
    assert NoiseConfig(name="a").digest() != NoiseConfig(name="a", out_noise=0.07).digest()


@pytest.mark.parametrize("layer, shape", [
    (nn.Conv2d(8, 12, 3, padding=1), (64, 8, 10, 10)),     # one tile: conv + max-pool path
    (nn.Conv2d(64, 16, 3, padding=1), (64, 64, 6, 6)),     # 576 rows -> 3 row blocks: unfold path
    (nn.Linear(600, 300), (256, 600)),                     # 3 x 2 tiles
])
def test_fast_layer_matches_aihwkit_within_its_own_noise(layer, shape):
    """Same programmed tiles: the fast layer's outputs differ from aihwkit's by no more than
    two aihwkit forwards differ from each other (output noise is redrawn on each)."""
    torch.manual_seed(0)
    x = torch.relu(torch.randn(shape))
    analog = programmed(layer, 86_400.0, 2)
    fast = FastAnalogLayer(layer, read_tiles(analog), NOISE, torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference, again, ours = analog(x), analog(x), fast(x)
    self_spread = (reference - again).std()
    assert (reference - ours).std() < 1.1 * self_spread
    assert abs(float((reference - ours).mean())) < 0.05 * float(self_spread)
