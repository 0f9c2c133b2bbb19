"""Untrusted input files never run code: policy zips, CIFAR-10 batches, network descriptions.

Each proof of concept carries a payload that creates a marker file when it runs. Every test
checks that the safe path raises a clear error (or loads without running it) and leaves no
marker, and, where it is cheap, that the unprotected path would have run it, so the payload is
known to be live and the test can fail.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn

from agents.policy_file import PolicyFileError, load_policy
from envs.mapping_env import FEATURES
from workloads.datasets import DatasetError, load_dataset
from workloads.registry import NetworkError, NetworkSpec

EPISODE_STEPS = 4
TRAIN_STEPS = 64
CLIP_RANGE = 0.15  # not SB3's default, so recovering it from the file is visible
LEARNING_RATE = 1e-3
# The entries a real MaskablePPO zip stores as cloudpickle (seen in a file saved by SB3 2.9.2).
SERIALIZED_IN_REAL_FILE = ("policy_class", "observation_space", "action_space", "lr_schedule", "clip_range",
                           "_last_obs", "_last_episode_starts", "ep_info_buffer", "ep_success_buffer",
                           "rollout_buffer_class")


class TouchOnUnpickle:
    """Stands in for an attacker's payload: unpickling it creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


class SpacesEnv(gym.Env):
    """LayerMappingEnv's spaces and action masks with trivial dynamics: enough to train and save."""

    def __init__(self) -> None:
        low = np.array([feature[1] for feature in FEATURES], np.float32)
        high = np.array([feature[2] for feature in FEATURES], np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.steps = 0
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action: int):
        self.steps += 1
        return np.zeros(self.observation_space.shape, np.float32), float(action), self.steps >= EPISODE_STEPS, False, {}

    def action_masks(self) -> np.ndarray:
        return np.array([True, True])


# --- 1. policy zips -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved_policy(tmp_path_factory) -> tuple[Path, MaskablePPO]:
    model = MaskablePPO("MlpPolicy", SpacesEnv(), n_steps=TRAIN_STEPS, batch_size=32, clip_range=CLIP_RANGE,
                        learning_rate=LEARNING_RATE, seed=0, device="cpu")
    model.learn(TRAIN_STEPS)
    path = tmp_path_factory.mktemp("policy") / "model.zip"
    model.save(path)
    return path, model


def rewrite_zip(source: Path, target: Path, data: Callable[[dict[str, Any]], Any] | None = None,
                members: dict[str, bytes] | None = None) -> Path:
    """A copy of ``source`` with its ``data`` JSON edited by ``data`` and members replaced by ``members``."""
    members = members or {}
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as copy:
        for name in original.namelist():
            content = original.read(name)
            if name == "data" and data is not None:
                content = json.dumps(data(json.loads(content))).encode()
            copy.writestr(name, members.get(name, content))
    return target


def payload_b64(marker: Path) -> str:
    return base64.b64encode(pickle.dumps(TouchOnUnpickle(marker))).decode()


def observation(seed: int) -> np.ndarray:
    space = SpacesEnv().observation_space
    return np.random.default_rng(seed).uniform(space.low, space.high).astype(np.float32)


def test_real_file_serializes_the_expected_entries(saved_policy):
    path, _ = saved_policy
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    serialized = {key for key, value in data.items() if isinstance(value, dict) and ":serialized:" in value}
    assert serialized == set(SERIALIZED_IN_REAL_FILE)


def test_real_policy_round_trips_and_predicts(saved_policy, recwarn):
    path, original = saved_policy
    model = load_policy(path)
    assert isinstance(model, MaskablePPO)
    assert model.clip_range(1.0) == pytest.approx(CLIP_RANGE)  # recovered from the file's plain metadata
    assert model.learning_rate == pytest.approx(LEARNING_RATE)
    masks = np.array([True, False])
    for seed in range(5):
        obs = observation(seed)
        for mask in (None, masks):
            expected, _ = original.predict(obs, action_masks=mask, deterministic=True)
            got, _ = model.predict(obs, action_masks=mask, deterministic=True)
            assert int(got) == int(expected)
    assert int(model.predict(observation(0), action_masks=masks, deterministic=True)[0]) == 0
    assert not [w for w in recwarn if "no number for" in str(w.message)]
    with_env = load_policy(path, env=DummyVecEnv([SpacesEnv]))  # what train.py's resume passes
    assert with_env.n_envs == 1


@pytest.mark.parametrize("key", [*SERIALIZED_IN_REAL_FILE, "evil"])
def test_pickled_payload_in_data_never_runs(saved_policy, tmp_path, key):
    path, _ = saved_policy
    marker = tmp_path / "pwned"

    def plant(data: dict[str, Any]) -> dict[str, Any]:
        entry = dict(data.get(key) or {":type:": "<class 'object'>"})
        entry[":serialized:"] = payload_b64(marker)
        return {**data, key: entry}

    crafted = rewrite_zip(path, tmp_path / "crafted.zip", data=plant)
    if key == "evil":
        with pytest.raises(PolicyFileError, match="entry 'evil' holds a pickled Python object.*not written by"):
            load_policy(crafted)
    else:  # a key the loader knows: replaced by its own value, the payload is never unpickled
        model = load_policy(crafted)
        model.predict(observation(0), action_masks=np.array([True, True]), deterministic=True)
    assert not marker.exists()
    # Plain SB3 loading of the same file runs the payload: the test above could fail.
    with contextlib.suppress(Exception):
        MaskablePPO.load(crafted, device="cpu")
    assert marker.exists()


def test_schedules_are_rebuilt_from_plain_numbers(saved_policy, tmp_path):
    path, _ = saved_policy
    marker = tmp_path / "pwned"
    linear = {":type:": "<class 'stable_baselines3.common.utils.FloatSchedule'>", ":serialized:": payload_b64(marker),
              "value_schedule": "LinearSchedule(start=0.3, end=0.1, end_fraction=1.0)"}
    model = load_policy(rewrite_zip(path, tmp_path / "linear.zip", data=lambda d: {**d, "clip_range": linear}))
    assert (model.clip_range(1.0), model.clip_range(0.0)) == pytest.approx((0.3, 0.1))
    opaque = {":type:": "<class 'function'>", ":serialized:": payload_b64(marker)}  # older SB3: a bare closure
    with pytest.warns(UserWarning, match="no number for clip_range.*MaskablePPO's default 0.2"):
        model = load_policy(rewrite_zip(path, tmp_path / "opaque.zip", data=lambda d: {**d, "clip_range": opaque}))
    assert model.clip_range(1.0) == pytest.approx(0.2)
    assert not marker.exists()


def test_pickled_payload_in_policy_weights_never_runs(saved_policy, tmp_path):
    path, _ = saved_policy
    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save(TouchOnUnpickle(marker), buffer)
    crafted = rewrite_zip(path, tmp_path / "crafted.zip", members={"policy.pth": buffer.getvalue()})
    with pytest.raises(PolicyFileError, match="cannot load it: UnpicklingError"):
        load_policy(crafted)  # SB3 2.9.2 reads .pth members with torch.load(weights_only=True)
    assert not marker.exists()
    with zipfile.ZipFile(crafted) as archive, archive.open("policy.pth") as member:
        torch.load(io.BytesIO(member.read()), weights_only=False)  # the unrestricted load would run it
    assert marker.exists()


def test_environment_entry_is_refused(saved_policy, tmp_path):
    path, _ = saved_policy
    crafted = rewrite_zip(path, tmp_path / "env.zip", data=lambda d: {**d, "env": "os:Anything-v0"})
    with pytest.raises(PolicyFileError, match="entry 'env' is never written by stable-baselines3"):
        load_policy(crafted)


def drop(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: {k: v for k, v in data.items() if k != key}


def edit(key: str, field: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda data: {**data, key: {**data[key], field: value}}


@pytest.mark.parametrize("change, message", [
    (edit("observation_space", "_shape", [24]),
     r"policy expects observations of shape \(24,\); this environment has \(23,\)"),
    (edit("observation_space", "dtype", "float64"), "observations of dtype float64; this environment has float32"),
    (edit("observation_space", "low", "[" + " 0." * len(FEATURES) + "]"),
     "feature 10 \\(log_speedup\\) to have low bound 0; this environment has -1"),
    (edit("observation_space", ":type:", "<class 'gymnasium.spaces.dict.Dict'>"), "observations of type"),
    (edit("action_space", "n", "3"), r"policy expects Discrete\(3\) actions; this environment has Discrete\(2\)"),
    (edit("policy_class", "__module__", "mypackage.policies"), "rebuilds only"),
    (drop("observation_space"), "no 'observation_space' entry"),
    (lambda data: {**data, "policy_kwargs": {"net_arch": "not a list"}}, "stable-baselines3 cannot load it"),
])
def test_mismatched_or_foreign_policies_are_explained(saved_policy, tmp_path, change, message):
    path, _ = saved_policy
    with pytest.raises(PolicyFileError, match=message):
        load_policy(rewrite_zip(path, tmp_path / "changed.zip", data=change))


def test_files_that_are_not_policies(tmp_path):
    with pytest.raises(PolicyFileError, match="does not exist"):
        load_policy(tmp_path / "missing.zip")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK not really a zip")
    with pytest.raises(PolicyFileError, match="is not a readable zip file"):
        load_policy(junk)
    pickled = tmp_path / "pickled.zip"
    pickled.write_bytes(pickle.dumps(TouchOnUnpickle(tmp_path / "pwned")))
    with pytest.raises(PolicyFileError, match="is not a readable zip file"):
        load_policy(pickled)
    assert not (tmp_path / "pwned").exists()
    for name, members, message in [("nodata.zip", {"policy.pth": b""}, "has no 'data' member"),
                                   ("text.zip", {"data": b"{not json"}, "'data' member is not JSON"),
                                   ("list.zip", {"data": b"[1, 2]"}, "is a JSON list, not an object")]:
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            for member, content in members.items():
                archive.writestr(member, content)
        with pytest.raises(PolicyFileError, match=message):
            load_policy(tmp_path / name)


# --- 2. CIFAR-10 batches --------------------------------------------------------------------------

CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
PER_BATCH = 4


def write_cifar(folder: Path, protocol: int, payload: Any = None, numpy_labels: bool = False) -> dict[str, list[int]]:
    """Batches in the genuine format (dict of bytes keys); ``payload`` replaces data_batch_3's data."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(protocol)
    labels = {}
    for name in CIFAR_BATCHES:
        labels[name] = [int(x) for x in rng.integers(0, 10, PER_BATCH)]
        stored = list(np.array(labels[name])) if numpy_labels else labels[name]  # numpy scalars: re-pickled sets
        batch = {b"batch_label": f"{name} of 6".encode(), b"labels": stored,
                 b"data": rng.integers(0, 256, (PER_BATCH, 3 * 32 * 32), dtype=np.uint8),
                 b"filenames": [f"img_{i}.png".encode() for i in range(PER_BATCH)]}
        if payload is not None and name == "data_batch_3":
            batch[b"data"] = payload
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle, protocol=protocol)
    return labels


@pytest.mark.parametrize("numpy_labels", [False, True])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_genuine_cifar_batches_load(tmp_path, protocol, numpy_labels):
    labels = write_cifar(tmp_path, protocol, numpy_labels=numpy_labels)
    splits = load_dataset("cifar10", root=tmp_path, validation_size=2)
    assert splits.input_shape == (3, 32, 32)
    assert len(splits.train) + len(splits.validation) == 5 * PER_BATCH
    assert splits.test.labels.tolist() == labels["test_batch"]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batch_with_a_payload_is_refused(tmp_path, protocol):
    marker = tmp_path / "pwned"
    write_cifar(tmp_path / "cifar", protocol, payload=TouchOnUnpickle(marker))
    with pytest.raises(DatasetError, match=r"data_batch_3: the CIFAR-10 reader refuses to load [\w.]+: "
                                           "CIFAR-10 batches hold only arrays, lists, dicts and bytes"):
        load_dataset("cifar10", root=tmp_path / "cifar", validation_size=2)
    assert not marker.exists()
    with open(tmp_path / "cifar" / "data_batch_3", "rb") as handle:
        pickle.load(handle, encoding="bytes")  # the unrestricted load would run it
    assert marker.exists()


# --- 3. network descriptions ----------------------------------------------------------------------

def spec(target: Any, **kwargs: Any) -> NetworkSpec:
    return NetworkSpec.from_config({"name": "x", "model": {"_target_": target, **kwargs}, "checkpoint": "x.pt"})


def test_os_system_target_is_refused_before_running(tmp_path, monkeypatch):
    monkeypatch.delenv("AIMC_TRUSTED_PACKAGES", raising=False)
    marker = tmp_path / "pwned"
    expected = ("network 'x': model._target_ 'os.system' is not in a trusted package; builders are allowed "
                "from workloads.zoo and the packages listed in AIMC_TRUSTED_PACKAGES (set "
                "AIMC_TRUSTED_PACKAGES=os to allow it, only if you trust it)")
    with pytest.raises(NetworkError) as caught:
        spec("os.system", command=f"touch {marker}").build()
    assert str(caught.value) == expected
    assert not marker.exists()


@pytest.mark.parametrize("target", ["builtins.eval", "subprocess.run", "torch.nn.Linear", "workloads.zoo_evil.net",
                                    "workloads.zoological.net", "tests.toy_networks.ToyNet"])
def test_targets_outside_trusted_packages_are_refused(monkeypatch, target):
    monkeypatch.delenv("AIMC_TRUSTED_PACKAGES", raising=False)
    monkeypatch.delitem(sys.modules, "tests.toy_networks", raising=False)
    with pytest.raises(NetworkError, match="is not in a trusted package"):
        spec(target).build()
    assert "tests.toy_networks" not in sys.modules  # refused before importing the module


def test_listed_packages_are_trusted(monkeypatch):
    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "lab.models, tests")
    for target in ("tests.toy_networks.ToyNet", "tests.toy_networks.toy_mlp"):
        model = spec(target, in_features=6).build()
        assert isinstance(model, nn.Module)
        assert model(torch.zeros(1, 6)).shape == (1, 2)
    with pytest.raises(NetworkError, match="set AIMC_TRUSTED_PACKAGES=lab.models,tests,os to allow it"):
        spec("os.system").build()
    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "test")  # a prefix of the name, not of a package
    with pytest.raises(NetworkError, match="is not in a trusted package"):
        spec("tests.toy_networks.ToyNet").build()


def test_trusted_module_still_needs_a_model_builder(monkeypatch):
    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "tests")
    with pytest.raises(NetworkError, match=r"'tests.toy_networks.join' \(type function, from module 'posixpath'\) "
                                           "is neither a torch.nn.Module subclass nor a function defined in a "
                                           "trusted package"):
        spec("tests.toy_networks.join", a="/", b="x").build()  # re-exported from os.path
    with pytest.raises(NetworkError, match=r"TOY_FEATURES' \(type int"):
        spec("tests.toy_networks.TOY_FEATURES").build()
    with pytest.raises(NetworkError, match="returned a str, not a torch.nn.Module"):
        spec("tests.toy_networks.not_a_model").build()


@pytest.mark.parametrize("target", ["os", "a..b", "workloads.zoo.", 42])
def test_malformed_targets_are_refused(target):
    with pytest.raises(NetworkError, match="is not an import path"):
        spec(target).build()


def test_malformed_trusted_packages_setting(monkeypatch):
    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "tests,rm -rf")
    with pytest.raises(NetworkError, match="AIMC_TRUSTED_PACKAGES entry 'rm -rf' is not a package or module name"):
        spec("tests.toy_networks.ToyNet").build()


def test_zoo_networks_still_build(monkeypatch):
    monkeypatch.delenv("AIMC_TRUSTED_PACKAGES", raising=False)
    assert isinstance(NetworkSpec.zoo("lenet5").build(), nn.Module)
    assert isinstance(spec("workloads.zoo.mlp").build(), nn.Module)
