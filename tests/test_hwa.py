"""Device-aware fine-tuning (``accuracy.hwa``, phase 3 of ``workloads.train_zoo``) on real aihwkit tiles."""

import contextlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from accuracy.aihwkit_adapter import device_weight
from accuracy.hwa import DeviceWeightNoise
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle, layer_seed
from common.paths import PROJECT_ROOT
from common.units import DAY_S, HOUR_S, YEAR_S
from workloads.datasets import ImageSet
from workloads.registry import NetworkSpec
from workloads.train_zoo import RECIPES, Recipe, RecipeError, run_phase, train_network, weight_layers

NOISE = NoiseConfig(name="lionheart")


def test_training_noise_is_the_chip_the_oracle_evaluates():
    """The weights phase 3 trains against are exactly those of a chip the oracle programs."""
    oracle = AccuracyOracle(NetworkSpec.zoo("lenet5"), NOISE, images=10, seeds=(3,), split="test")
    for index in (0, 4):
        module = oracle.modules[oracle.table.layers[index].name]
        expected = oracle.layer_state(index, 3, DAY_S).effective_weight().reshape(module.weight.shape)
        assert torch.equal(device_weight(module, NOISE, DAY_S, layer_seed(3, index)), expected)


def test_draws_are_reproducible_log_uniform_and_in_range():
    noise = DeviceWeightNoise(NOISE)
    draws = [noise.draw(torch.Generator().manual_seed(0)) for _ in range(2)]
    assert draws[0] == draws[1]
    generator = torch.Generator().manual_seed(1)
    times = np.array([noise.draw(generator)[0] for _ in range(400)])
    assert times.min() >= HOUR_S and times.max() <= YEAR_S
    # log-uniform: the median is the geometric middle of the range (about 3.5 days), not 6 months
    middle = math.sqrt(HOUR_S * YEAR_S)
    assert 0.7 * middle < np.median(times) < 1.4 * middle
    with pytest.raises(ValueError, match="t_low_s"):
        DeviceWeightNoise(NOISE, t_low_s=0.0)


def test_applied_weights_are_a_chip_and_the_clean_ones_come_back():
    torch.manual_seed(0)
    layers = [nn.Conv2d(3, 8, 3), nn.Linear(30, 5)]
    clean = [layer.weight.detach().clone() for layer in layers]
    noise = DeviceWeightNoise(NOISE)
    with noise.applied(layers, torch.Generator().manual_seed(2)):
        inside = [layer.weight.detach().clone() for layer in layers]
    for before, during, layer in zip(clean, inside, layers):
        assert torch.equal(layer.weight, before)
        relative = float((during - before).norm() / before.norm())
        assert 0.005 < relative < 0.5  # noisy, not a different matrix
    with pytest.raises(RuntimeError, match="boom"):
        with noise.applied(layers, torch.Generator().manual_seed(2)):
            raise RuntimeError("boom")
    assert all(torch.equal(layer.weight, before) for layer, before in zip(layers, clean))


def _tiny_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))


def test_device_phase_freezes_batch_norm_and_trains_the_clean_weights():
    torch.manual_seed(0)
    model = _tiny_net()
    bn = model[1]
    bn.running_mean.fill_(0.3)
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    data = ImageSet(torch.randn(64, 1, 8, 8), torch.randint(0, 3, (64,)))
    before = [layer.weight.detach().clone() for layer in weight_layers(model)]
    recipe = Recipe(epochs=1, hwa_epochs=0, lr=0.05, batch_size=16)
    run_phase(model, data, recipe, 1, 0.05, torch.Generator().manual_seed(0), 0.0, lambda message: None,
              DeviceWeightNoise(NOISE))
    assert torch.equal(bn.running_mean, stats[0]) and torch.equal(bn.running_var, stats[1])
    assert int(bn.num_batches_tracked) == stats[2]
    assert all(not torch.equal(layer.weight, old) for layer, old in zip(weight_layers(model), before))
    # without the device noise the same phase updates the statistics (batch norm in training mode)
    run_phase(model, data, recipe, 1, 0.05, torch.Generator().manual_seed(0), 0.0, lambda message: None)
    assert not torch.equal(bn.running_mean, stats[0])


def _write_phases_1_2(out_dir, recipe: Recipe, seed: int = 0) -> None:
    spec = NetworkSpec.zoo("lenet5")
    out_dir.mkdir(exist_ok=True)
    (out_dir / "lenet5.pt").write_bytes(spec.checkpoint_path.read_bytes())
    meta = json.loads(spec.checkpoint_path.with_suffix(".json").read_text())
    meta["recipe"] = {**meta["recipe"], **{k: v for k, v in recipe.__dict__.items() if k != "device_epochs"}}
    meta["seed"] = seed
    (out_dir / "lenet5.json").write_text(json.dumps(meta))


def test_device_phase_only_refuses_what_is_not_phases_1_2_of_the_recipe(tmp_path):
    recipe = Recipe(**{**RECIPES["lenet5"].__dict__, "device_epochs": 1})
    noise = DeviceWeightNoise(NOISE)
    with pytest.raises(RecipeError, match="no checkpoint metadata"):
        train_network("lenet5", recipe, 0, tmp_path / "empty", noise, device_phase_only=True)
    _write_phases_1_2(tmp_path / "other_seed", recipe, seed=1)
    with pytest.raises(RecipeError, match="not phases 1-2"):
        train_network("lenet5", recipe, 0, tmp_path / "other_seed", noise, device_phase_only=True)
    _write_phases_1_2(tmp_path / "changed", recipe)
    (tmp_path / "changed" / "lenet5.pt").write_bytes(b"other bytes")
    with pytest.raises(RecipeError, match="changed since its metadata"):
        train_network("lenet5", recipe, 0, tmp_path / "changed", noise, device_phase_only=True)
    with pytest.raises(RecipeError, match="no device-aware phase"):
        train_network("lenet5", RECIPES["lenet5"], 0, tmp_path / "changed", noise, device_phase_only=True)
    with pytest.raises(RecipeError, match="pass the device noise"):
        train_network("lenet5", recipe, 0, tmp_path / "changed", None)


def test_command_line_refusal_is_one_line_and_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cli.train_zoo", "--networks", "resnet8", "--device-phase-only",
                             "--out", str(tmp_path)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: resnet8: no checkpoint metadata") and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_bn_diagnosis_restores_the_checkpoints_statistics():
    from bench.bench_chip_spread import bn_recalibrated_accuracy

    spec = NetworkSpec.zoo("resnet8")
    oracle = AccuracyOracle(spec, NOISE, images=200, seeds=(100,), split="test")
    capable = np.array([layer.analog_capable for layer in oracle.table.layers])
    norms = [m for m in oracle.model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [(m.running_mean.clone(), m.running_var.clone(), m.momentum) for m in norms]
    as_trained = oracle.evaluate(capable, DAY_S).mean
    recalibrated = bn_recalibrated_accuracy(oracle, capable, DAY_S, 100, spec.data().train.images[:500])
    assert 0.0 < recalibrated <= 100.0 and recalibrated != as_trained
    for m, (mean, var, momentum) in zip(norms, before):
        assert torch.equal(m.running_mean, mean) and torch.equal(m.running_var, var) and m.momentum == momentum
    assert not oracle.model.training
    assert oracle.evaluate(capable, DAY_S).mean == as_trained


def test_chip_spread_result_name_must_be_a_plain_file_name(capsys):
    from bench.bench_chip_spread import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--name", "../elsewhere"])
    assert exit_info.value.code == 2
    assert "letters, digits and underscores only" in capsys.readouterr().err


def test_phases_1_2_check_ignores_what_phase_3_adds(tmp_path):
    from workloads.train_zoo import _phases_1_2_checkpoint

    recipe = Recipe(**{**RECIPES["lenet5"].__dict__, "device_epochs": 1})
    _write_phases_1_2(tmp_path, recipe)
    clipped = Recipe(**{**recipe.__dict__, "device_epochs": 3, "device_clip_norm": 5.0})
    assert _phases_1_2_checkpoint("lenet5", clipped, 0, tmp_path)["seed"] == 0
    with pytest.raises(RecipeError, match="not phases 1-2"):
        _phases_1_2_checkpoint("lenet5", Recipe(**{**clipped.__dict__, "lr": 0.5}), 0, tmp_path)
    with pytest.raises(RecipeError, match="device_clip_norm must be >= 0"):
        train_network("lenet5", Recipe(**{**clipped.__dict__, "device_clip_norm": -1.0}), 0, tmp_path,
                      DeviceWeightNoise(NOISE), device_phase_only=True)


class _Blowup:
    """A perturbation whose chip has absurd weights: the loss is not finite."""

    @contextlib.contextmanager
    def applied(self, layers, generator):
        clean = [layer.weight.detach().clone() for layer in layers]
        with torch.no_grad():
            for layer in layers:
                layer.weight.fill_(1e38)
        try:
            yield
        finally:
            with torch.no_grad():
                for layer, weight in zip(layers, clean):
                    layer.weight.copy_(weight)

    def describe(self):
        return {"kind": "blowup"}


def test_a_diverging_phase_stops_with_a_clear_error_and_clipping_bounds_a_step():
    torch.manual_seed(0)
    data = ImageSet(torch.randn(32, 1, 8, 8), torch.randint(0, 3, (32,)))
    recipe = Recipe(epochs=1, hwa_epochs=0, lr=0.05, batch_size=16, weight_decay=0.0)
    with pytest.raises(RecipeError, match="diverged at epoch 1, step 1.*device_clip_norm"):
        run_phase(_tiny_net(), data, recipe, 1, 0.05, torch.Generator().manual_seed(0), 0.0, lambda m: None, _Blowup())
    moved = {}
    for clip in (0.0, 1e-6):
        torch.manual_seed(0)
        model = _tiny_net()
        before = [layer.weight.detach().clone() for layer in weight_layers(model)]
        run_phase(model, data, Recipe(**{**recipe.__dict__, "device_clip_norm": clip}), 1, 0.05,
                  torch.Generator().manual_seed(0), 0.0, lambda m: None, DeviceWeightNoise(NOISE))
        moved[clip] = sum(float((layer.weight.detach() - old).norm())
                          for layer, old in zip(weight_layers(model), before))
    assert moved[1e-6] < 1e-4 < moved[0.0]
