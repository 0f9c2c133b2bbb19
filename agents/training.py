"""``train(cfg)``: MaskablePPO on the training networks, evaluated on held-out ones.

Writes into the run directory: ``run.json`` (resolved config, command line, package versions,
seed), ``tb/`` (TensorBoard), ``checkpoints/`` (every ``train.checkpoint_every`` steps),
``best_model.zip`` (best training-network score so far), ``final_model.zip`` (or
``interrupted_model.zip`` after Ctrl-C) and ``metrics.json``. Every file is written atomically.

Resuming (``train.resume=<model .zip>``): ``train.total_timesteps_mode=extra`` (the default)
trains ``total_timesteps`` more steps; ``total`` trains until the model has seen
``total_timesteps`` steps in all (an error if it already has).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from stable_baselines3.common.callbacks import CallbackList

from agents.callbacks import CheckpointEvery, MappingMetricsCallback, ProgressCallback, save_model
from agents.policy_file import PolicyFileError, load_policy
from agents.ppo import build_model, make_vec_env
from common.io import atomic_write
from envs.tasks import build_tasks

PACKAGES = ("torch", "aihwkit", "gymnasium", "stable-baselines3", "sb3-contrib", "hydra-core", "numpy")


def env_kwargs_from(cfg: dict[str, Any]) -> dict[str, Any]:
    env = cfg["env"]
    return {"t_range_s": tuple(env["t_range_s"]), "threshold_range": tuple(env["threshold_range"]),
            "reward_weights": dict(env["reward"]), "shaping": bool(env["shaping"])}


def hydra_choices() -> dict[str, Any]:
    """The config-group options of the running hydra job (``experiment``, ``hw``, ...), or {} when
    train() is called outside one."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return dict(HydraConfig.get().runtime.choices)
    except ValueError:
        return {}


def write_run_metadata(run_dir: Path, cfg: dict[str, Any]) -> None:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except Exception:  # a package that is not installed is reported, not fatal
            versions[package] = None
    choices = hydra_choices()
    metadata = {"config": cfg, "command": sys.argv, "python": platform.python_version(), "packages": versions,
                "seed": cfg["seed"], "experiment": choices.get("experiment"), "choices": choices,
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write(run_dir / "run.json", json.dumps(metadata, indent=2, default=str) + "\n")


def train(cfg: DictConfig | dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Train a policy as configured; returns the final metrics (also written to metrics.json).

    Runs with ``train.torch_threads`` torch threads (the policy is small: more threads cost more
    than they give, ``bench/bench_training.py``) and restores the caller's setting afterwards."""
    threads = int((cfg["train"].get("torch_threads") or 0))
    previous = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        return _train(cfg, run_dir)
    finally:
        torch.set_num_threads(previous)


def _train(cfg: DictConfig | dict[str, Any], run_dir: str | Path) -> dict[str, Any]:
    """Train a policy as configured; returns the final metrics (also written to metrics.json)."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)  # SB3 needs plain dicts (net_arch, policy_kwargs)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_run_metadata(run_dir, cfg)
    settings = cfg["train"]
    task_options = {"hw": cfg["hw"], "noise": cfg["noise"], "accuracy": cfg["env"]["accuracy"],
                    "surrogate_model": cfg["env"]["surrogate_model"],
                    "profile": cfg["env"].get("profile", "exact"),  # observed; the reward stays the artifact's
                    "estimator": cfg["env"].get("estimator")}
    train_tasks = build_tasks(settings["networks"], **task_options)
    holdout_tasks = build_tasks(settings.get("holdout") or [], **task_options)
    env_kwargs = env_kwargs_from(cfg)
    venv = make_vec_env(train_tasks, env_kwargs, settings["n_envs"], cfg["seed"], settings["vec_env"])
    tensorboard = str(run_dir / "tb")
    steps = settings["total_timesteps"]
    if settings.get("resume"):
        resume = Path(settings["resume"])
        if not resume.is_file():
            raise FileNotFoundError(f"train.resume={resume} does not exist (give a saved model .zip)")
        model = load_policy(resume, env=venv, tensorboard_log=tensorboard)
        if settings.get("total_timesteps_mode", "extra") == "total":
            steps = settings["total_timesteps"] - model.num_timesteps
            if steps <= 0:
                venv.close()
                raise PolicyFileError(f"train.resume={resume} has trained {model.num_timesteps} steps already, "
                                      f"not fewer than train.total_timesteps={settings['total_timesteps']} "
                                      "(total_timesteps_mode=total); raise total_timesteps or use mode extra")
    else:
        model = build_model(venv, cfg["agent"], cfg["seed"], tensorboard)
    hparams = {"seed": cfg["seed"], "total_timesteps": settings["total_timesteps"], "n_envs": settings["n_envs"],
               "networks": ",".join(settings["networks"]), "hw": cfg["hw"]["name"],
               **{f"agent/{k}": v for k, v in cfg["agent"].items() if isinstance(v, (int, float, str))},
               **{f"reward/{k}": v for k, v in cfg["env"]["reward"].items()}, "shaping": cfg["env"]["shaping"]}
    metrics_cb = MappingMetricsCallback(train_tasks, holdout_tasks, env_kwargs, settings["eval_every"],
                                        settings["eval_times_s"], settings["eval_thresholds"],
                                        run_dir / "best_model.zip", hparams)
    callbacks = [metrics_cb,
                 CheckpointEvery(max(1, settings["checkpoint_every"] // settings["n_envs"]), run_dir / "checkpoints"),
                 ProgressCallback()]
    interrupted = False
    started = time.time()
    try:
        model.learn(steps, callback=CallbackList(callbacks),
                    reset_num_timesteps=not settings.get("resume"), tb_log_name="ppo")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        save_model(model, run_dir / ("interrupted_model.zip" if interrupted else "final_model.zip"))
        venv.close()
    metrics = {"run_dir": str(run_dir), "timesteps": int(model.num_timesteps), "interrupted": interrupted,
               "seconds": round(time.time() - started, 1), "best_score": metrics_cb.best_score,
               "last_evaluation": metrics_cb.last}
    atomic_write(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    return metrics
