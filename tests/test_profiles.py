"""Accuracy artifacts: committed ones are current; stale ones are detected, never used."""

import json
import shutil

import numpy as np
import pytest

from accuracy.noise import NoiseConfig
from accuracy.profiles import PROFILE_DIR, ProfilePlan, artifact_key, load_or_build, plan_for
from workloads.registry import NetworkSpec, zoo_names

NOISE = NoiseConfig(name="lionheart")


@pytest.mark.parametrize("name", zoo_names())
def test_committed_artifact_is_current(name):
    """Each zoo network's artifact matches its checkpoint, the device config and the plan."""
    spec = NetworkSpec.zoo(name)
    data = load_or_build(spec, NOISE, allow_build=False)
    profile = data.profile
    assert profile.drops.shape[1] == len(profile.t_grid)
    assert np.isfinite(data.drops).all() and len(data.drops) == plan_for(spec).samples
    # per-seed accuracies are recorded and agree with the stored drops (drop = baseline - mean)
    assert data.per_seed.shape == (len(data.drops), len(plan_for(spec).seeds))
    np.testing.assert_allclose(data.baseline - data.per_seed.mean(axis=1), data.drops, atol=1e-9)


def test_stale_artifact_is_not_used(tmp_path):
    shutil.copy(PROFILE_DIR / "lenet5.json", tmp_path / "lenet5.json")
    spec = NetworkSpec.zoo("lenet5")
    load_or_build(spec, NOISE, directory=tmp_path, allow_build=False)  # current: loads
    other = NoiseConfig(name="lionheart", out_noise=0.1)
    with pytest.raises(FileNotFoundError, match="another checkpoint, device configuration or plan"):
        load_or_build(spec, other, directory=tmp_path, allow_build=False)
    (tmp_path / "lenet5.json").write_text("{not json")
    with pytest.raises(FileNotFoundError, match="unreadable"):
        load_or_build(spec, NOISE, directory=tmp_path, allow_build=False)


def test_key_survives_a_json_round_trip():
    key = artifact_key(NetworkSpec.zoo("mlp"), NOISE, ProfilePlan())
    assert json.loads(json.dumps(key)) == key


def test_a_network_can_declare_its_own_plan():
    spec = NetworkSpec.from_config({"name": "x", "model": {"_target_": "workloads.zoo.mlp"}, "checkpoint": "x.pt",
                                    "profile": {"samples": 40, "seeds": [3, 4]}})
    assert plan_for(spec) == ProfilePlan(samples=40, seeds=(3, 4))
    assert plan_for(NetworkSpec.zoo("lenet5")) == ProfilePlan()
