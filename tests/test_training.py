"""train(cfg) in-process: config composition, TensorBoard output, checkpoints, resume."""

import glob
import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.ppo import build_model, make_vec_env
from agents.training import env_kwargs_from, train
from envs.tasks import build_task
from accuracy.noise import NoiseConfig
from hw_model.system import System
from common.paths import PROJECT_ROOT

CONF = str(PROJECT_ROOT / "conf")


def compose_train(*overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


@pytest.mark.parametrize("overrides", [[], ["hw=hermes_like"], ["experiment=smoke"], ["experiment=latency"],
                                       ["env.shaping=true"]])
def test_config_groups_compose_and_instantiate(overrides):
    cfg = OmegaConf.to_container(compose_train(*overrides), resolve=True)
    system = System.from_dict(cfg["hw"])
    NoiseConfig.from_dict(cfg["noise"], system.tiles.rows, system.tiles.cols)
    assert isinstance(cfg["agent"]["policy_kwargs"]["net_arch"], dict)  # a plain dict, as SB3 needs
    task = build_task("lenet5", hw=cfg["hw"], noise=cfg["noise"], progress=False)
    venv = make_vec_env([task], env_kwargs_from(cfg), 1, 0, "dummy")
    model = build_model(venv, cfg["agent"], 0, None)
    assert model.policy.mlp_extractor.policy_net[0].out_features == cfg["agent"]["policy_kwargs"]["net_arch"]["pi"][0]
    venv.close()


def scalars(run_dir):
    events = glob.glob(str(run_dir / "tb" / "**" / "events.out.tfevents.*"), recursive=True)
    tags = set()
    for path in events:
        accumulator = EventAccumulator(path)
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    return tags


def test_smoke_training_writes_metrics_checkpoints_and_resumes(tmp_path):
    first = train(compose_train("experiment=smoke"), tmp_path / "first")
    run = tmp_path / "first"
    tags = scalars(run)
    for metric in ("speedup", "energy_gain", "accuracy_drop", "feasible_rate", "analog_mac_share"):
        assert f"map/{metric}/lenet5" in tags and f"eval/{metric}/mlp" in tags
    assert glob.glob(str(run / "checkpoints" / "*.zip")) and (run / "best_model.zip").is_file()
    metadata = json.loads((run / "run.json").read_text())
    assert metadata["seed"] == 0 and metadata["packages"]["aihwkit"] == "1.1.0"
    assert first["timesteps"] >= 512

    resumed = train(compose_train("experiment=smoke", f"train.resume={run / 'final_model.zip'}"),
                    tmp_path / "second")
    assert resumed["timesteps"] >= first["timesteps"] + 512


def test_resume_from_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.resume"):
        train(compose_train("experiment=smoke", "train.resume=/nowhere/model.zip"), tmp_path)


def test_a_sweep_runs_in_parallel_with_the_joblib_launcher(tmp_path):
    """`train.py -m hydra/launcher=joblib ...` (README): one run folder per job, each with its seed."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "train.py", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "experiment=smoke",
         "seed=0,1", f"hydra.sweep.dir={tmp_path}"], capture_output=True, text=True, timeout=600, cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "AIMC_NO_REEXEC": "1", "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    seeds = sorted(json.loads((tmp_path / job / "run.json").read_text())["seed"] for job in ("0", "1"))
    assert seeds == [0, 1]
    assert all((tmp_path / job / "best_model.zip").is_file() for job in ("0", "1"))
