"""The bring-your-own MLP-Mixer (``bench/networks``): a network family absent from the zoo,
described and loaded like a user's own network."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import yaml

from common.paths import PROJECT_ROOT
from workloads.datasets import ImageSet
from workloads.layers import build_layer_table
from workloads.registry import NetworkError, NetworkSpec, zoo_names
from workloads.train_zoo import accuracy

DESCRIPTION = PROJECT_ROOT / "bench" / "networks" / "mixer.yaml"
RECORD = PROJECT_ROOT / "bench" / "networks" / "mixer.json"
MIXER_MODULE = "bench.networks.mixer"
DEPTH, TOKENS, DIM = 4, 16, 64
TEST_IMAGES = 500


@pytest.fixture()
def trusted(monkeypatch: pytest.MonkeyPatch) -> NetworkSpec:
    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "bench.networks")
    return NetworkSpec.from_config(yaml.safe_load(DESCRIPTION.read_text()))


def test_not_in_the_zoo() -> None:
    assert "mixer" not in zoo_names()


def test_builder_refused_unless_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIMC_TRUSTED_PACKAGES", raising=False)
    monkeypatch.delitem(sys.modules, MIXER_MODULE, raising=False)  # restored after the test
    spec = NetworkSpec.from_config(yaml.safe_load(DESCRIPTION.read_text()))
    with pytest.raises(NetworkError, match=r"not in a trusted package.*AIMC_TRUSTED_PACKAGES=bench"):
        spec.build()
    assert MIXER_MODULE not in sys.modules  # refused before the module's code ran
    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "bench.networks")
    assert spec.build() is not None


def test_layer_table(trusted: NetworkSpec) -> None:
    table = build_layer_table(trusted.build(), trusted.input_shape, trusted.name)
    assert trusted.input_shape == (1, 28, 28)
    assert len(table) == 1 + 4 * DEPTH + 1
    assert all(layer.analog_capable for layer in table.layers)
    assert [layer.kind for layer in table.layers] == ["linear"] * (1 + 4 * DEPTH) + ["classifier"]
    names = [layer.name for layer in table.layers]
    assert names[0] == "embed" and names[-1] == "head"
    for block in range(DEPTH):
        token1, token2, channel1, channel2 = table.layers[1 + 4 * block:5 + 4 * block]
        assert (token1.name, channel2.name) == (f"blocks.{block}.token_mlp.fc1", f"blocks.{block}.channel_mlp.fc2")
        # token mixing: one vector per channel, of length tokens; channel mixing: one per token
        assert (token1.rows, token1.vectors, token2.cols) == (TOKENS, DIM, TOKENS)
        assert (channel1.rows, channel1.vectors, channel2.cols) == (DIM, TOKENS, DIM)
    assert table.unmappable.macs == 0  # no attention


def test_checkpoint_reaches_recorded_accuracy(trusted: NetworkSpec, fashion) -> None:
    record = json.loads(RECORD.read_text())
    assert trusted.checkpoint_sha256() == record["sha256"]
    model = trusted.load()
    subset = ImageSet(fashion.test.images[:TEST_IMAGES], fashion.test.labels[:TEST_IMAGES])
    measured = accuracy(model, subset)
    p = record["test_accuracy"] / 100
    three_sigma = 300 * math.sqrt(p * (1 - p) / TEST_IMAGES)  # sampling error of 500 images, in points
    assert measured == pytest.approx(record["test_accuracy"], abs=three_sigma)
    assert record["test_accuracy"] >= 85.0
