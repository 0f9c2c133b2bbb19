"""The accuracy oracle on a small real network (LeNet-5 checkpoint, Fashion-MNIST validation)."""

import numpy as np
import pytest

from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle, MappingError
from workloads.registry import NetworkSpec

HOUR, YEAR = 3600.0, 365 * 86_400.0


@pytest.fixture(scope="module")
def oracle(tmp_path_factory, fashion):
    cache = ResultCache(tmp_path_factory.mktemp("cache") / "oracle.sqlite")
    return AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=600,
                          seeds=(0, 1, 2), batch_size=300, cache=cache, data=fashion.validation)


def all_analog(oracle):
    return np.array([layer.analog_capable for layer in oracle.table.layers])


def test_all_digital_is_exactly_the_digital_accuracy(oracle):
    result = oracle.evaluate(np.zeros(len(oracle.table), bool), YEAR)
    assert result.per_seed == (oracle.baseline(),) * 3
    assert result.drop == 0.0 and result.std == 0.0
    assert 80.0 < oracle.baseline() <= 100.0


def test_drift_lowers_accuracy_from_an_hour_to_a_year(oracle):
    hour = oracle.evaluate(all_analog(oracle), HOUR)
    year = oracle.evaluate(all_analog(oracle), YEAR)
    assert year.mean < hour.mean
    assert hour.drop > 0.0


@pytest.mark.parametrize("t_s", [0.0, 1e-6])
def test_zero_and_tiny_times(oracle, t_s):
    result = oracle.evaluate(all_analog(oracle), t_s)
    assert np.isfinite(result.mean) and result.mean > 50.0


def test_same_seed_same_result_different_seeds_differ(oracle, fashion):
    again = AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=600,
                           seeds=(0, 1, 2), batch_size=300, data=fashion.validation)
    mine = oracle.evaluate(all_analog(oracle), 86_400.0)
    theirs = again.evaluate(all_analog(oracle), 86_400.0)
    assert mine.per_seed == theirs.per_seed
    assert len(set(mine.per_seed)) > 1


def test_reference_path_is_deterministic_per_seed(fashion):
    small = AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=200,
                           seeds=(4,), batch_size=200, method="reference", data=fashion.validation)
    mapping = [1, 0, 0, 1, 0]
    assert small.evaluate(mapping, HOUR).per_seed == small.evaluate(mapping, HOUR).per_seed


def test_cache_hit_miss_and_corruption(tmp_path, fashion):
    path = tmp_path / "c.sqlite"
    spec, noise = NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart")
    first = AccuracyOracle(spec, noise, images=200, seeds=(0,), batch_size=200, cache=ResultCache(path),
                           data=fashion.validation)
    mapping = [1, 1, 0, 0, 0]
    computed = first.evaluate(mapping, HOUR)
    assert first.cache.misses >= 1
    second = AccuracyOracle(spec, noise, images=200, seeds=(0,), batch_size=200, cache=ResultCache(path),
                            data=fashion.validation)
    hits = second.cache.hits
    assert second.evaluate(mapping, HOUR) == computed and second.cache.hits > hits
    # A different device configuration is a different key: no stale answer.
    other = AccuracyOracle(spec, NoiseConfig(name="x", out_noise=0.2), images=200, seeds=(0,), batch_size=200,
                           cache=ResultCache(path), data=fashion.validation)
    misses = other.cache.misses
    other.evaluate(mapping, HOUR)
    assert other.cache.misses > misses
    # Damage every stored payload: answers are recomputed, and equal the first computation.
    import sqlite3
    raw = sqlite3.connect(path)
    raw.execute("UPDATE results SET payload = '{\"per_seed\":[1.0]}'")
    raw.commit()
    raw.close()
    third = AccuracyOracle(spec, noise, images=200, seeds=(0,), batch_size=200, cache=ResultCache(path),
                           data=fashion.validation)
    assert third.evaluate(mapping, HOUR) == computed
    assert third.cache.rejected >= 1


def test_bad_mappings_are_reported(oracle):
    with pytest.raises(MappingError, match="5 mappable layers"):
        oracle.evaluate([1, 0], HOUR)
    with pytest.raises(MappingError, match="0 \\(digital\\) or 1 \\(analog\\)"):
        oracle.evaluate([2, 0, 0, 0, 0], HOUR)
    with pytest.raises(ValueError, match="drift time"):
        oracle.evaluate([0, 0, 0, 0, 0], -5.0)


def test_digital_only_layer_marked_analog_is_a_clear_error(fashion):
    mobile = AccuracyOracle(NetworkSpec.zoo("mobilenetv2"), NoiseConfig(name="lionheart"), images=50,
                            seeds=(0,), batch_size=50, data=fashion.validation)
    mapping = np.zeros(len(mobile.table), bool)
    depthwise = next(i for i, layer in enumerate(mobile.table.layers) if not layer.analog_capable)
    mapping[depthwise] = True
    with pytest.raises(MappingError, match="digital-only"):
        mobile.evaluate(mapping, HOUR)


def test_sensitivity_profile_shape(oracle):
    profile = oracle.sensitivity_profile([HOUR, YEAR])
    assert profile.shape == (5, 2) and np.isfinite(profile).all()


@pytest.mark.slow
def test_fast_path_agrees_with_the_reference_on_a_whole_network(fashion):
    """All of LeNet-5 analog at 1 day, 2,000 validation images, 2 seeds: within 0.5 points."""
    oracle = AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=2000,
                            seeds=(0, 1), batch_size=500, data=fashion.validation)
    mapping = all_analog(oracle)
    fast = oracle.evaluate(mapping, 86_400.0, method="fast")
    reference = oracle.evaluate(mapping, 86_400.0, method="reference")
    assert abs(fast.mean - reference.mean) <= 0.5


def test_weights_only_path_applies_the_programmed_drifted_weights(oracle):
    """method="weights": the effective weights as plain layers, so every seed's layer output is
    exactly W_eff x + b; its drift still lowers accuracy, and it is cached under its own key."""
    import torch
    from torch import nn

    from accuracy.fast_analog import EffectiveWeightLayer

    conv_index = next(i for i, layer in enumerate(oracle.table.layers) if layer.kind == "conv")
    name = oracle.table.layers[conv_index].name
    state = oracle.layer_state(conv_index, 0, YEAR)
    layer = EffectiveWeightLayer(oracle.modules[name], state)
    original: nn.Conv2d = oracle.modules[name]
    x = torch.randn(4, original.in_channels, 12, 12)
    expected = nn.functional.conv2d(x, state.effective_weight().reshape_as(original.weight), state.bias,
                                    original.stride, original.padding)
    assert torch.equal(layer(x), expected)
    assert not torch.allclose(layer(x), original(x))  # programmed + drifted, not the trained weights
    hour = oracle.evaluate(all_analog(oracle), HOUR, method="weights")
    year = oracle.evaluate(all_analog(oracle), YEAR, method="weights")
    assert year.mean < hour.mean and year.method == "weights"
    assert oracle.evaluate(all_analog(oracle), YEAR, method="weights") == year  # same seeds, same answer
    fast = oracle.evaluate(all_analog(oracle), YEAR)
    assert fast.per_seed != year.per_seed  # a different model of the periphery


def test_chips_stacked_in_one_pass_equal_chips_one_pass_each(oracle):
    # Chip k in a stacked pass uses its own programmed state and noise generator, drawn in the
    # same order as alone: identical accuracies, so results do not depend on the grouping.
    mapping = all_analog(oracle)
    stacked = oracle._accuracy_chips(mapping, YEAR, (0, 1, 2), "fast")
    alone = [oracle._accuracy_chips(mapping, YEAR, (seed,), "fast")[0] for seed in (0, 1, 2)]
    assert stacked == alone and len(set(alone)) > 1
    weights = oracle._accuracy_chips(mapping, YEAR, (0, 1), "weights")
    assert weights == [oracle._accuracy_chips(mapping, YEAR, (seed,), "weights")[0] for seed in (0, 1)]


def test_programmed_chips_kept_in_memory_are_bounded_and_forgetting_one_changes_nothing(monkeypatch, fashion):
    import accuracy.oracle as module

    monkeypatch.setattr(module, "MEMO_CHIPS", 2)
    oracle = AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=200,
                            seeds=(0,), batch_size=200, data=fashion.validation)
    mapping = all_analog(oracle)
    first = oracle._accuracy_chips(mapping, YEAR, (5,), "fast")
    later = oracle._accuracy_chips(mapping, YEAR, (6, 7, 8), "fast")
    assert {key[1] for key in oracle._states} == {7, 8} and {key[1] for key in oracle._programmed} == {7, 8}
    assert oracle._accuracy_chips(mapping, YEAR, (5,), "fast") == first  # programmed again, identically
    assert oracle._accuracy_chips(mapping, YEAR, (6, 7, 8), "fast") == later


def test_chips_per_call_and_image_offset_are_part_of_the_key(oracle, fashion):
    mapping = all_analog(oracle)
    default = oracle.evaluate(mapping, YEAR)
    other = oracle.evaluate(mapping, YEAR, seeds=(7, 8))
    assert other.per_seed != default.per_seed and len(other.per_seed) == 2
    assert oracle.key(mapping, YEAR, seeds=(7, 8))["seeds"] == [7, 8]
    assert "image_offset" not in oracle.key(mapping, YEAR)  # rows written before offsets existed still match
    shifted = AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=600, image_offset=600,
                             seeds=(0, 1, 2), batch_size=300, data=fashion.validation)
    assert shifted.key(mapping, YEAR)["image_offset"] == 600
    assert (shifted.data.images[0] == fashion.validation.images[600]).all()
    with pytest.raises(ValueError, match="do not fit"):
        AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=600, image_offset=4900,
                       data=fashion.validation)


def test_std_is_the_sample_standard_deviation_over_chips(oracle):
    result = oracle.evaluate(all_analog(oracle), YEAR)
    assert result.std == pytest.approx(float(np.std(result.per_seed, ddof=1)))
    assert result.std > float(np.std(result.per_seed))


def test_per_sample_drops_average_to_the_chips_drops_and_are_cached(tmp_path, fashion):
    # The certificate's image term (accuracy.population) reads per-sample drops: their row means
    # must be evaluate's per-chip drops exactly, whichever is computed first, and a second oracle
    # on the same cache reads both without a forward pass.
    spec, noise = NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart")
    path = tmp_path / "samples.sqlite"
    make = lambda: AccuracyOracle(spec, noise, images=300, seeds=(0, 1, 2), batch_size=100,  # noqa: E731
                                  cache=ResultCache(path), data=fashion.validation)
    first = make()
    mapping = [1, 0, 1, 1, 0]
    drops = first.sample_drops(mapping, YEAR)
    assert drops.shape == (3, 300) and set(np.unique(drops)) <= {-100.0, 0.0, 100.0}
    other = make()
    evaluated = other.evaluate(mapping, YEAR)  # the per-chip row written by sample_drops
    assert drops.mean(axis=1) == pytest.approx([evaluated.baseline - a for a in evaluated.per_seed], abs=1e-9)
    fresh = AccuracyOracle(spec, noise, images=300, seeds=(0, 1, 2), batch_size=100, data=fashion.validation)
    assert [fresh.baseline() - a for a in fresh.evaluate(mapping, YEAR).per_seed] == \
        pytest.approx(drops.mean(axis=1), abs=1e-9)  # the same as computing the accuracies alone
    hits = other.cache.hits
    assert (other.sample_drops(mapping, YEAR) == drops).all() and other.cache.hits >= hits + 2
    assert (other.sample_drops(mapping, YEAR, seeds=(1,)) == drops[1:2]).all()  # per chip, any grouping
    assert (first.sample_drops([0] * 5, YEAR) == 0).all()
    with pytest.raises(ValueError, match="fast or weights"):
        first.sample_drops(mapping, YEAR, method="reference")


def test_per_sample_drops_of_a_sequence_model_count_positions():
    spec = NetworkSpec.zoo("gpt")
    oracle = AccuracyOracle(spec, NoiseConfig(name="lionheart"), images=40, seeds=(0, 1), batch_size=40)
    mapping = np.zeros(len(oracle.table), bool)
    mapping[[0, 5, 24]] = True
    drops = oracle.sample_drops(mapping, YEAR)
    positions = spec.input_shape[0]
    assert drops.shape == (2, 40)
    assert np.allclose(drops * positions / 100.0, np.round(drops * positions / 100.0))  # whole positions
    result = oracle.evaluate(mapping, YEAR)
    assert drops.mean(axis=1) == pytest.approx([result.baseline - a for a in result.per_seed], abs=1e-9)
