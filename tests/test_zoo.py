import json
import re

import pytest
import torch

from common.paths import PROJECT_ROOT
from workloads.registry import NetworkError, NetworkSpec, zoo_names
from workloads.train_zoo import accuracy
from workloads.zoo import BUILDERS, IMAGE_CLASSIFIERS

# The checkpoint test measures the first 2,000 test images; the README figure is on all 10,000.
# Binomial standard error at ~90% is 0.67 points on 2,000 images: 2 points is three of them.
SUBSET = 2000
MARGIN_POINTS = 2.0


def test_every_config_names_a_builder():
    assert set(zoo_names()) == set(BUILDERS)


@pytest.mark.parametrize("name", sorted(IMAGE_CLASSIFIERS))  # gpt: tests/test_gpt.py
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_forward_shape(name, shape):
    model = BUILDERS[name](in_channels=shape[0], num_classes=7, image_size=shape[1] if name != "vit" else 28)
    size = shape[1] if name != "vit" else 28
    out = model.eval()(torch.zeros(3, shape[0], size, size))
    assert out.shape == (3, 7)


def _readme_accuracy(name: str) -> float:
    readme = (PROJECT_ROOT / "README.md").read_text()
    match = re.search(rf"^\| `{name}` \|[^|]*\|[^|]*\| ([0-9.]+) \|", readme, re.MULTILINE)
    assert match, f"README.md has no accuracy row for {name}"
    return float(match.group(1))


@pytest.mark.parametrize("name", sorted(IMAGE_CLASSIFIERS))  # gpt: tests/test_gpt.py
def test_checkpoint_accuracy_matches_readme(name, fashion):
    spec = NetworkSpec.zoo(name)
    metadata = json.loads(spec.checkpoint_path.with_suffix(".json").read_text())
    assert metadata["sha256"] == spec.checkpoint_sha256(), "checkpoint changed without its metadata"
    readme_figure = _readme_accuracy(name)
    assert readme_figure == pytest.approx(metadata["test_accuracy"], abs=0.01)
    measured = accuracy(spec.load(), fashion.test.subset(SUBSET))
    assert measured >= readme_figure - MARGIN_POINTS


def test_resnet20_class_networks_reach_90_percent():
    for name in ("resnet20", "vgg11"):
        metadata = json.loads(NetworkSpec.zoo(name).checkpoint_path.with_suffix(".json").read_text())
        assert metadata["test_accuracy"] >= 90.0, name


def test_missing_checkpoint_says_how_to_train_it(tmp_path):
    spec = NetworkSpec.from_config({"name": "mlp", "model": {"_target_": "workloads.zoo.mlp"},
                                    "checkpoint": str(tmp_path / "none.pt")})
    with pytest.raises(NetworkError, match="train_zoo --networks mlp"):
        spec.load()


def test_corrupt_checkpoint_is_reported(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"garbage")
    spec = NetworkSpec.from_config({"name": "mlp", "model": {"_target_": "workloads.zoo.mlp"},
                                    "checkpoint": str(path)})
    with pytest.raises(NetworkError, match="cannot be loaded"):
        spec.load()


def test_checkpoint_of_another_network_is_reported():
    lenet = NetworkSpec.zoo("lenet5")
    spec = NetworkSpec.from_config({"name": "x", "model": {"_target_": "workloads.zoo.mlp"},
                                    "checkpoint": str(lenet.checkpoint_path)})
    with pytest.raises(NetworkError, match="cannot be loaded into workloads.zoo.mlp"):
        spec.load()


def test_bad_descriptions_are_reported():
    with pytest.raises(NetworkError, match="lacks checkpoint"):
        NetworkSpec.from_config({"name": "x", "model": {"_target_": "workloads.zoo.mlp"}})
    with pytest.raises(NetworkError, match="_target_"):
        NetworkSpec.from_config({"name": "x", "model": {"in_channels": 1}, "checkpoint": "x.pt"})
    spec = NetworkSpec.from_config({"name": "x", "model": {"_target_": "nowhere.Net"}, "checkpoint": "x.pt"})
    with pytest.raises(NetworkError, match="'nowhere.Net' is not in a trusted package"):
        spec.build()
    with pytest.raises(NetworkError, match="unknown network 'nope'"):
        NetworkSpec.zoo("nope")


def test_zoo_table_chip_spread_cells_skip_earlier_checkpoints(tmp_path):
    """The zoo table's chip-spread cell: 8 chips (with BN re-estimated where measured) and the
    32-chip figure in brackets, each only when measured with the network's current checkpoint."""
    from cli.train_zoo import chip_spread

    current = NetworkSpec.zoo("resnet8").checkpoint_sha256()
    eight = {"networks": [
        {"network": "resnet8", "checkpoint": current, "all_analog_std": 0.94, "bn_recalibrated_std": 0.35},
        {"network": "lenet5", "checkpoint": "0" * 64, "all_analog_std": 0.39}]}  # an earlier checkpoint
    many = {"networks": [{"network": "resnet8", "checkpoint": current, "all_analog_std": 0.75},
                         {"network": "mlp", "checkpoint": "0" * 64, "all_analog_std": 0.40}]}
    (tmp_path / "chip_spread.json").write_text(json.dumps(eight))
    assert chip_spread(tmp_path) == {"resnet8": "0.94 / 0.35"}
    (tmp_path / "chip_spread_32.json").write_text(json.dumps(many))
    assert chip_spread(tmp_path) == {"resnet8": "0.94 / 0.35 [0.75]"}
