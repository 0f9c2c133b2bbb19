"""The one validation layer of train.py and evaluate.py: every configuration value is checked
before any work, and every problem is a :class:`ConfigError` naming the key, what was wrong and
how to fix it (the entry points print it as one line and exit with code 2).

Cheap checks (types, ranges, lists, names) come first, so most mistakes are reported in about
a second; then the ones that load something (presets, checkpoints, datasets, a policy).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

from common.presets import PresetError

NETWORK_KEYS = ("name", "model", "checkpoint")


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the key and the fix."""


# --- value checks ---------------------------------------------------------------------------------

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number(cfg: Mapping, key: str, *, above: float | None = None, at_least: float | None = None,
           at_most: float | None = None, path: str = "") -> float:
    """A finite number within the given bounds."""
    name = path + key
    value = cfg.get(key)
    if not _is_number(value) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if above is not None and not value > above:
        raise ConfigError(f"{name} must be > {above:g}, got {value!r}")
    if at_least is not None and not value >= at_least:
        raise ConfigError(f"{name} must be >= {at_least:g}, got {value!r}")
    if at_most is not None and not value <= at_most:
        raise ConfigError(f"{name} must be <= {at_most:g}, got {value!r}")
    return float(value)


def integer(cfg: Mapping, key: str, *, at_least: int = 1, path: str = "") -> int:
    name = path + key
    value = cfg.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{name} must be a whole number >= {at_least}, got {value!r}")
    if value < at_least:
        raise ConfigError(f"{name} must be >= {at_least}, got {value}")
    return value


def boolean(cfg: Mapping, key: str, path: str = "") -> bool:
    value = cfg.get(key)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}{key} must be true or false, got {value!r}")
    return value


def number_list(cfg: Mapping, key: str, *, above: float, example: str, path: str = "") -> list[float]:
    """A non-empty list of finite numbers > ``above`` (a scalar or a string is a clear error)."""
    name = path + key
    values = cfg.get(key)
    if not isinstance(values, list):
        raise ConfigError(f"{name} must be a list, e.g. {name}={example}, got {values!r}")
    if not values:
        raise ConfigError(f"{name} is empty; give at least one value, e.g. {name}={example}")
    for value in values:
        if not _is_number(value) or not math.isfinite(value) or not value > above:
            raise ConfigError(f"{name} must hold finite numbers > {above:g}, got {value!r} in {values!r}")
    return [float(v) for v in values]


def seed_list(cfg: Mapping, key: str, path: str = "") -> list[int]:
    name = path + key
    values = cfg.get(key)
    if not isinstance(values, list) or not values:
        raise ConfigError(f"{name} must be a non-empty list of whole numbers, e.g. {name}=[0,1], got {values!r}")
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for v in values):
        raise ConfigError(f"{name} must hold whole numbers >= 0, got {values!r}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} repeats a seed: {values!r}")
    return values


def choice(cfg: Mapping, key: str, options: tuple[str, ...], path: str = "") -> str:
    value = cfg.get(key)
    if value not in options:
        raise ConfigError(f"{path}{key} must be one of {', '.join(options)}, got {value!r}")
    return value


def network_names(cfg: Mapping, key: str, *, allow_empty: bool, path: str = "") -> list[str]:
    from workloads.registry import zoo_names

    name = path + key
    values = cfg.get(key)
    if values is None and allow_empty:
        return []
    if not isinstance(values, list) or any(not isinstance(v, str) for v in values):
        raise ConfigError(f"{name} must be a list of network names, e.g. {name}=[lenet5,mlp], got {values!r}")
    if not values and not allow_empty:
        raise ConfigError(f"{name} is empty; name at least one network ({', '.join(zoo_names())})")
    unknown = [v for v in values if v not in zoo_names()]
    if unknown:
        raise ConfigError(f"{name}: unknown network {unknown[0]!r}; zoo networks: {', '.join(zoo_names())}")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} repeats a network: {values!r}")
    return values


def writable_folder(folder: str | Path, key: str) -> None:
    """The folder exists (or can be made) and a file can be created in it (removed at once)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-check-", dir=folder)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(f"{key}: cannot write into {folder} ({error.strerror or error}); "
                          "choose a writable folder") from None


# --- shared sections ----------------------------------------------------------------------------

def check_presets(cfg: Mapping) -> None:
    """hw and noise describe a valid system and device."""
    from accuracy.noise import NoiseConfigError, load_noise
    from hw_model.system import HardwareConfigError, load_system

    try:
        system = load_system(cfg.get("hw"))
        load_noise(cfg.get("noise"), system.tiles.rows, system.tiles.cols)
    except (HardwareConfigError, NoiseConfigError, PresetError) as error:
        raise ConfigError(str(error)) from None


def check_env_section(env: Any) -> None:
    from accuracy.surrogate import MODELS
    from envs.reward import RewardWeights
    from envs.tasks import PROFILE_SOURCES

    if not isinstance(env, Mapping):
        raise ConfigError(f"env must be a mapping (conf/env/default.yaml), got {env!r}")
    choice(env, "accuracy", ("surrogate", "oracle"), "env.")
    choice(env, "surrogate_model", MODELS, "env.")
    choice(env, "profile", PROFILE_SOURCES, "env.")
    if env.get("estimator") is not None:
        from accuracy.cheap_sensitivity import ESTIMATORS

        if env["estimator"] not in ESTIMATORS:
            raise ConfigError(f"env.estimator must be null (the calibration's default) or one of "
                              f"{', '.join(ESTIMATORS)}, got {env['estimator']!r}")
        if env.get("profile") != "cheap":
            raise ConfigError(f"env.estimator={env['estimator']} picks the cheap estimate's score, but "
                              f"env.profile={env.get('profile')}: set env.profile=cheap or env.estimator=null")
    boolean(env, "shaping", "env.")
    for key in ("t_range_s", "threshold_range"):
        low_high = number_list(env, key, above=0, example="[1,5]", path="env.")
        if len(low_high) != 2 or low_high[0] > low_high[1]:
            raise ConfigError(f"env.{key} must be [low, high] with 0 < low <= high, got {env[key]!r}")
    reward = env.get("reward")
    if not isinstance(reward, Mapping):
        raise ConfigError(f"env.reward must be a mapping of reward weights, got {reward!r}")
    for key in reward:
        number(reward, key, at_least=0, path="env.reward.")
    try:
        RewardWeights(**reward)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"env.reward: {error}") from None


def check_network_spec(spec, *, load_data: bool = True) -> None:
    """The checkpoint loads into the builder, the network has a Conv/Linear layer, the data is there."""
    from workloads.datasets import DatasetError
    from workloads.layers import build_layer_table
    from workloads.registry import NetworkError

    try:
        model = spec.load()
        build_layer_table(model, spec.input_shape, spec.name)
        if load_data:
            spec.data()
    except (NetworkError, DatasetError) as error:
        raise ConfigError(str(error)) from None
    except ValueError as error:  # no Conv/Linear layer reached, or shapes that do not fit
        raise ConfigError(f"network {spec.name!r}: {error}") from None


# --- evaluate.py --------------------------------------------------------------------------------

def check_certify(cfg: Mapping[str, Any]) -> None:
    """The certify section: a valid population plan on chips and images no search or report uses."""
    from accuracy.population import PopulationPlan

    part = cfg.get("certify")
    if part is None:
        return
    if not isinstance(part, Mapping):
        raise ConfigError(f"certify must be a mapping like {{enabled: true, images: 1000, image_offset: 1000, "
                          f"plan: {{...}}}}, got {part!r}")
    boolean(part, "enabled", path="certify.")
    if not part["enabled"]:
        return
    integer(part, "images", at_least=1, path="certify.")
    integer(part, "image_offset", at_least=0, path="certify.")
    if part["image_offset"] < cfg["verify"]["images"]:
        raise ConfigError(f"certify.image_offset {part['image_offset']} overlaps the searches' validation images "
                          f"[0, {cfg['verify']['images']}): certification must use images no search selected on; "
                          f"set certify.image_offset={cfg['verify']['images']} or more")
    if part.get("plan") is not None and not isinstance(part["plan"], Mapping):
        raise ConfigError(f"certify.plan must be a mapping of population-plan keys, got {part['plan']!r}")
    try:
        plan = PopulationPlan.of(part.get("plan"))
    except (TypeError, ValueError) as error:
        raise ConfigError(f"certify.plan: {error}") from None
    chips = plan.seed_range()
    for section in ("verify", "report"):
        shared = sorted(seed for seed in cfg[section]["seeds"] if seed in chips)
        if shared:
            raise ConfigError(f"certify.plan chips (seeds {chips.start}..{chips.stop - 1}, draw {plan.draw}) "
                              f"share seeds {shared} with {section}.seeds; move certify.plan.seed_start")


def check_evaluate(cfg: Mapping[str, Any], out_dir: str | Path | None = None) -> None:
    """Every value evaluate.py reads (``cfg`` is the plain, resolved config)."""
    from agents.methods import method_names
    from workloads.registry import NetworkError, NetworkSpec

    number_list(cfg, "times_s", above=0, example="[86400,31536000]")
    number_list(cfg, "thresholds", above=0, example="[1,2,5]")
    if cfg.get("lifetime_threshold") is not None:  # null: no lifetime schedule
        number(cfg, "lifetime_threshold", above=0)
    integer(cfg, "policy_evaluations", at_least=1)
    for section in ("verify", "report"):
        part = cfg.get(section)
        if not isinstance(part, Mapping):
            raise ConfigError(f"{section} must be a mapping like {{images: 1000, seeds: [0, 1]}}, got {part!r}")
        integer(part, "images", at_least=1, path=f"{section}.")
        seed_list(part, "seeds", path=f"{section}.")
    overlap = set(cfg["verify"]["seeds"]) & set(cfg["report"]["seeds"])
    if overlap:
        raise ConfigError(f"report.seeds share programming seeds {sorted(overlap)} with verify.seeds: the final "
                          "report must use chips the search did not select on; choose disjoint seeds")
    check_certify(cfg)
    baselines = cfg.get("baselines")
    if not (baselines == "all" or isinstance(baselines, list)):
        raise ConfigError(f"baselines must be all or a list of method names, got {baselines!r}")
    try:
        method_names(baselines)
    except ValueError as error:
        raise ConfigError(f"baselines: {error}") from None
    options = cfg.get("method_options") or {}
    if not isinstance(options, Mapping) or any(not isinstance(v, Mapping) for v in options.values()):
        raise ConfigError(f"method_options must map a method name to its options, got {options!r}")
    try:
        method_names(list(options))
    except ValueError as error:
        raise ConfigError(f"method_options: {error}") from None
    boolean(cfg, "progress")
    policy = cfg.get("policy")
    if not isinstance(policy, str) or not policy:
        raise ConfigError(f"policy must be latest, none or the path of a model .zip, got {policy!r}")
    if policy not in ("latest", "none") and not cfg.get("mapping_file"):
        if not Path(policy).is_file():
            raise ConfigError(f"policy {policy} does not exist (give the .zip saved by train.py, latest or none)")
        check_policy_file(Path(policy), "policy")
    if cfg.get("cache") is not None and not isinstance(cfg["cache"], str):
        raise ConfigError(f"cache must be the path of an SQLite file or null, got {cfg['cache']!r}")
    check_env_section(cfg.get("env"))
    check_presets(cfg)
    if cfg.get("network"):
        if not isinstance(cfg["network"], Mapping):
            raise ConfigError("network must be a description {name, model: {_target_, ...}, checkpoint, dataset}, "
                              f"got {cfg['network']!r}")
        try:
            specs = [NetworkSpec.from_config(cfg["network"])]
        except NetworkError as error:
            raise ConfigError(str(error)) from None
    else:
        specs = [NetworkSpec.zoo(name) for name in network_names(cfg, "networks", allow_empty=False)]
    for spec in specs:
        check_network_spec(spec)
    if cfg.get("cache"):
        writable_folder(Path(cfg["cache"]).parent, "cache")
    if out_dir is not None:
        writable_folder(out_dir, "the output folder (hydra.run.dir)")


# --- train.py -----------------------------------------------------------------------------------

AGENT_BOUNDS = {  # key: (check, bounds) for the MaskablePPO options a typo most often breaks
    "learning_rate": {"above": 0}, "gamma": {"at_least": 0, "at_most": 1}, "gae_lambda": {"at_least": 0, "at_most": 1},
    "clip_range": {"above": 0}, "ent_coef": {"at_least": 0},
}


def check_train(cfg: Mapping[str, Any], out_dir: str | Path | None = None) -> None:
    """Every value train.py reads (``cfg`` is the plain, resolved config)."""
    integer(cfg, "seed", at_least=0)
    train = cfg.get("train")
    if not isinstance(train, Mapping):
        raise ConfigError(f"train must be a mapping (conf/train.yaml), got {train!r}")
    networks = network_names(train, "networks", allow_empty=False, path="train.")
    holdout = network_names(train, "holdout", allow_empty=True, path="train.")
    shared = sorted(set(networks) & set(holdout))
    if shared:
        raise ConfigError(f"train.networks and train.holdout share {', '.join(shared)}: a held-out network must "
                          "not be trained on; remove it from one of the lists")
    integer(train, "total_timesteps", at_least=1, path="train.")
    integer(train, "n_envs", at_least=1, path="train.")
    choice(train, "vec_env", ("subproc", "dummy"), "train.")
    integer(train, "eval_every", at_least=1, path="train.")
    integer(train, "checkpoint_every", at_least=1, path="train.")
    number_list(train, "eval_times_s", above=0, example="[86400]", path="train.")
    number_list(train, "eval_thresholds", above=0, example="[1,2]", path="train.")
    choice(train, "total_timesteps_mode", ("extra", "total"), "train.")
    integer(train, "torch_threads", at_least=0, path="train.")
    agent = cfg.get("agent")
    if not isinstance(agent, Mapping):
        raise ConfigError(f"agent must be a mapping (conf/agent/*.yaml), got {agent!r}")
    integer(agent, "n_steps", at_least=1, path="agent.")
    integer(agent, "batch_size", at_least=2, path="agent.")
    integer(agent, "n_epochs", at_least=1, path="agent.")
    for key, bounds in AGENT_BOUNDS.items():
        if key in agent:
            number(agent, key, path="agent.", **bounds)
    check_env_section(cfg.get("env"))
    check_presets(cfg)
    resume = train.get("resume")
    if resume is not None:
        if not isinstance(resume, str) or not Path(resume).is_file():
            raise ConfigError(f"train.resume={resume} does not exist (give a model .zip saved by train.py)")
        check_policy_file(Path(resume), "train.resume")
    if out_dir is not None:
        writable_folder(out_dir, "the run folder (hydra.run.dir)")


def check_policy_file(path: Path, key: str) -> None:
    """A policy file is loadable without running code and fits the environment's spaces."""
    from agents.policy_file import PolicyFileError, load_policy

    try:
        load_policy(path)
    except PolicyFileError as error:
        raise ConfigError(f"{key} {path} cannot be loaded: {str(error).removeprefix(str(path) + ': ')}") from None
