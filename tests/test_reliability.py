"""Reliability defects, one test each: the hang on a network with nothing to map, concurrent run
folders, invalid mapping files, unwritable run folders, Ctrl-C, atomic writes."""

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from accuracy.oracle import MappingError
from common.io import atomic_write
from common.paths import CONF_DIR, PROJECT_ROOT
from common.runtime import register_resolvers

SUBPROCESS_ENV = {"PATH": "/usr/bin:/bin", "AIMC_NO_REEXEC": "1", "PYTHONPATH": str(PROJECT_ROOT)}


# --- 1. a network whose layers are all digital-only ---------------------------------------------

@pytest.fixture
def depthwise_network(tmp_path, monkeypatch):
    from tests.networks import depthwise_only

    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "tests")
    torch.manual_seed(0)
    torch.save(depthwise_only(image_size=8).state_dict(), tmp_path / "depthwise.pt")
    return {"name": "depthwise_only_test", "checkpoint": str(tmp_path / "depthwise.pt"),
            "model": {"_target_": "tests.networks.depthwise_only", "image_size": 8},
            "dataset": {"name": "digits", "validation_size": 150}}


@pytest.mark.timeout(60)
def test_sampling_a_network_with_nothing_to_map_ends():
    from accuracy.profiles import ProfilePlan, sample_mappings

    mappings, t_s = sample_mappings(np.zeros(4, bool), ProfilePlan())
    assert mappings.shape == (0, 4) and t_s.shape == (0,)


@pytest.mark.timeout(120)
def test_a_network_with_nothing_to_map_is_reported_all_digital(depthwise_network, tmp_path, capsys):
    from accuracy.profiles import PROFILE_DIR
    from reporting.evaluation import evaluate

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[
            "policy=none", "times_s=[86400]", "thresholds=[1.0]", "verify.images=100", "report.images=100",
            "report.seeds=[100]", "baselines=all", f"cache={tmp_path / 'cache.sqlite'}", "progress=false"])
    cfg = {**compose_plain(cfg), "network": depthwise_network}
    try:
        documents = evaluate(cfg, tmp_path / "out")
    finally:
        (PROFILE_DIR / "depthwise_only_test.json").unlink(missing_ok=True)
    rows = documents["depthwise_only_test"]["baselines"]
    assert rows and all(sum(row["mapping"]) == 0 and row["feasible"] for row in rows)
    assert "nothing to map" in capsys.readouterr().err


def compose_plain(cfg):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)


# --- 2. concurrent runs get their own folders ----------------------------------------------------

def test_runs_started_in_the_same_second_get_different_folders():
    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for name in ("train", "evaluate"):
            first = compose(config_name=name, return_hydra_config=True)
            second = compose(config_name=name, return_hydra_config=True)
            assert first.hydra.run.dir != second.hydra.run.dir
            assert first.hydra.run.dir == first.hydra.run.dir  # stable within one run
            assert str(first.hydra.run.dir).startswith(f"outputs/{name}/")


# --- 3. mapping files: invalid values are errors, not silently converted -----------------------------

@pytest.fixture(scope="module")
def valid_document():
    layers = ["a", "b"]
    accuracy = {"mean": 80.0, "std": 0.1, "drop": 0.5, "images": 10, "seeds": [0], "split": "validation"}
    result = {"method": "ppo", "t_s": 86400.0, "threshold": 1.0, "mapping": [1, 0],
              "layers": [{"name": n, "kind": "conv", "target": t, "tiles": 1, "macs": 10}
                         for n, t in zip(layers, ("analog", "digital"))],
              "predicted_drop": 0.4, "verified": accuracy, "test": {**accuracy, "split": "test"}, "speedup": 1.2,
              "energy_gain": 1.3, "tiles_used": 1, "feasible": True, "holds_on_test": True, "exact_evaluations": 1,
              "repaired_layers": 0, "wall_s": 0.1, "certified": None, "certification_chip_passes": 0}
    return {"schema_version": 2, "network": {"name": "x", "checkpoint_sha256": "0" * 64, "layers": layers},
            "hw": {"name": "alpine_like"}, "device": {"name": "lionheart", "digest": "d"}, "policy": None,
            "results": [result], "baselines": [], "lifetime": {"threshold": 2.0, "points": [], "moves_to_digital": []}}


def mutated(document, change):
    document = copy.deepcopy(document)
    change(document)
    return document


@pytest.mark.parametrize("change, where", [
    (lambda d: d["results"][0].__setitem__("mapping", [2, 0]), "results/0/mapping/0"),
    (lambda d: d["results"][0].__setitem__("mapping", [True, False]), "results/0/mapping/[01]: (True|False) is not of type"),
    (lambda d: d.__setitem__("network", "x"), "network"),
    (lambda d: d["results"][0].pop("mapping"), "results/0"),
    (lambda d: d["results"][0].__setitem__("mapping", [1, 0, 0]), "results/0"),
    (lambda d: d["results"][0].__setitem__("mapping", [0, 0]), "results/0"),  # disagrees with its layers
])
def test_invalid_mapping_files_are_rejected_with_where(tmp_path, valid_document, change, where):
    from reporting.mapping_file import read_mapping_file

    path = tmp_path / "m.json"
    path.write_text(json.dumps(valid_document))
    assert read_mapping_file(path)["results"][0]["mapping"] == [1, 0]
    path.write_text(json.dumps(mutated(valid_document, change)))
    with pytest.raises(MappingError, match=f"at {where}"):
        read_mapping_file(path)


# --- 4. an output folder that cannot be made -------------------------------------------------------

@pytest.mark.parametrize("entry", ["evaluate.py", "train.py"])
def test_an_uncreatable_run_folder_is_refused_before_any_work(entry):
    done = subprocess.run([sys.executable, entry, "hydra.run.dir=/proc/aimc-run"], capture_output=True,
                          text=True, timeout=120, cwd=PROJECT_ROOT, env=SUBPROCESS_ENV)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "cannot create /proc/aimc-run" in done.stderr


# --- 5. Ctrl-C saves the model and exits 130 --------------------------------------------------------

def test_ctrl_c_saves_an_interrupted_model_and_exits_130(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "train.py", f"hydra.run.dir={tmp_path}", "experiment=smoke", "train.total_timesteps=200000",
         "train.eval_every=100000"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=PROJECT_ROOT, env=SUBPROCESS_ENV,
        # a Ctrl-C at a terminal reaches a foreground job; a suite started in the background
        # (`make test &`) ignores SIGINT and its children would inherit that and never see one
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = []

    def read() -> None:
        for line in iter(process.stderr.readline, ""):
            seen.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.time() + 240
    while time.time() < deadline and not any("training:" in line for line in "".join(seen).split("\r")):
        time.sleep(0.5)
    time.sleep(2)  # well inside model.learn
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    reader.join(timeout=5)
    assert (tmp_path / "interrupted_model.zip").is_file()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["interrupted"] is True


# --- 7. atomic writes -----------------------------------------------------------------------------

def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    atomic_write(target, "old")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError):
        atomic_write(tmp_path / "folder", "cannot replace a folder with a file")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "out.json"]


def test_concurrent_atomic_writers_never_mix(tmp_path):
    target = tmp_path / "shared.txt"
    payloads = [str(k) * 100_000 for k in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(target, p)) for p in payloads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["shared.txt"]


def test_model_files_are_written_whole(tmp_path):
    import gymnasium as gym
    from sb3_contrib import MaskablePPO

    from agents.callbacks import save_model

    class Tiny(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (3,))
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return np.zeros(3, np.float32), {}

        def step(self, action):
            return np.zeros(3, np.float32), 0.0, True, False, {}

        def action_masks(self):
            return [True, True]

    model = MaskablePPO("MlpPolicy", Tiny(), n_steps=16, batch_size=8)
    save_model(model, tmp_path / "model.zip")
    assert MaskablePPO.load(tmp_path / "model.zip").observation_space.shape == (3,)
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]
    assert oct(os.stat(tmp_path / "model.zip").st_mode & 0o777) == "0o644"
