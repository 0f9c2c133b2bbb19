"""LayerMappingEnv: map a network's layers to analog tiles or digital cores, one layer per step."""

from __future__ import annotations

import math
from typing import Any, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from common.units import HOUR_S, YEAR_S
from envs.reward import RewardWeights, potential, terminal_reward
from envs.tasks import KIND_ORDER, MappingTask, build_tasks

LOG_T_MAX = math.log10(10 * YEAR_S)  # t is normalised on [1 s, 10 years]
THRESHOLD_MAX = 10.0  # points; thresholds are normalised on [0, 10]
RATIO_SCALE = math.log(100.0)  # log-ratios are normalised by ln 100
SENSITIVITY_CAP = 4.0  # drops relative to the threshold are clipped at 4x

FEATURES = (
    # name, min, max
    *((f"kind_{kind}", 0.0, 1.0) for kind in KIND_ORDER),
    ("analog_capable", 0.0, 1.0),
    ("mac_share", 0.0, 1.0),
    ("weight_share", 0.0, 1.0),
    ("tiles_over_capacity", 0.0, 1.0),
    ("latency_share", 0.0, 1.0),
    ("log_speedup", -1.0, 1.0),
    ("log_energy_gain", -1.0, 1.0),
    ("latency_saving", -1.0, 1.0),
    ("sensitivity", 0.0, 1.0),
    ("position", 0.0, 1.0),
    ("tiles_remaining", 0.0, 1.0),
    ("drop_so_far", 0.0, 1.0),
    ("sensitivity_ahead", 0.0, 1.0),
    ("macs_ahead", 0.0, 1.0),
    ("log_t", 0.0, 1.0),
    ("threshold", 0.0, 1.0),
    ("previous_action", 0.0, 1.0),
    ("log_speedup_so_far", -1.0, 1.0),
)
COLUMN = {name: index for index, (name, _, _) in enumerate(FEATURES)}  # feature name -> observation index
KIND_COLUMNS = slice(COLUMN[f"kind_{KIND_ORDER[0]}"], COLUMN[f"kind_{KIND_ORDER[-1]}"] + 1)


class LayerMappingEnv(gym.Env):
    """Map each Conv/Linear layer of a DNN to analog PCM tiles or to digital cores.

    ## Description
    An episode maps one network for one deployment: a drift time ``t`` (seconds after the
    analog weights were programmed) and an accuracy threshold (percentage points of drop allowed
    below the all-digital accuracy). The agent visits the network's mappable layers in execution
    order and decides, for each, digital (0) or analog (1). Analog layers are faster and cheaper
    (from the system cost model, ``hw_model.cost``) but add noise that grows with drift. When the
    last layer is decided, the finished mapping is scored: system speedup and energy gain
    against all-digital, and the drift-aged accuracy drop from the configured accuracy source
    (the surrogate by default, or the exact oracle).

    ## Action Space
    ``Discrete(2)``: 0 = digital, 1 = analog. ``action_masks()`` returns ``[True, analog_ok]``
    where analog is invalid for digital-only layers (grouped/depthwise convolutions) and when the
    layer's tiles exceed the remaining tile capacity. An invalid analog action is carried out as
    digital and costs ``reward_weights.invalid_action_penalty`` on that step (``info
    ["invalid_action"]`` is True); it never raises. Actions outside {0, 1} raise ValueError.

    ## Observation Space
    ``Box(23,)`` float32, network-agnostic (no absolute layer index, no network id), describing
    the current layer and the state of the mapping:

    | index | feature | min | max | meaning |
    |---|---|---|---|---|
    | 0-4 | kind_* | 0 | 1 | one-hot kind: conv, depthwise_conv, linear, attention, classifier |
    | 5 | analog_capable | 0 | 1 | 1 unless the layer is digital-only |
    | 6 | mac_share | 0 | 1 | layer MACs / network MACs |
    | 7 | weight_share | 0 | 1 | layer weights / network weights |
    | 8 | tiles_over_capacity | 0 | 1 | tiles the layer needs / tiles in the system (clipped) |
    | 9 | latency_share | 0 | 1 | layer's digital latency / all-digital network latency |
    | 10 | log_speedup | -1 | 1 | ln(layer digital / analog latency) / ln 100 (0 if digital-only) |
    | 11 | log_energy_gain | -1 | 1 | ln(layer digital / analog energy) / ln 100 (0 if digital-only) |
    | 12 | latency_saving | -1 | 1 | (digital - analog latency) / all-digital latency (0 if digital-only) |
    | 13 | sensitivity | 0 | 1 | min(drop with only this layer analog at t / threshold, 4) / 4 |
    | 14 | position | 0 | 1 | layers decided / layers in the network |
    | 15 | tiles_remaining | 0 | 1 | unused tiles / tiles in the system |
    | 16 | drop_so_far | 0 | 1 | min(sum of sensitivities of the analog layers so far / threshold, 4) / 4 |
    | 17 | sensitivity_ahead | 0 | 1 | min(sum of sensitivities of later capable layers / threshold, 4) / 4 |
    | 18 | macs_ahead | 0 | 1 | MAC share of the layers after this one |
    | 19 | log_t | 0 | 1 | log10(t / 1 s) / log10(10 years), clipped |
    | 20 | threshold | 0 | 1 | threshold / 10 points, clipped |
    | 21 | previous_action | 0 | 1 | the action carried out on the previous layer (0 at the first) |
    | 22 | log_speedup_so_far | -1 | 1 | ln(speedup of the mapping so far, later layers digital) / ln 100 |

    ## Rewards
    With ``drop`` the drift-aged drop in points at ``t``, ``S`` the speedup and ``E`` the energy
    gain of the finished mapping (``envs.reward``)::

        terminal, drop <= threshold:  R = w_speedup * ln S + w_energy * ln E
        terminal, drop >  threshold:  R = -w_violation * (1 + (drop - threshold) / violation_scale)
        each invalid action:          -invalid_action_penalty on its step

    Defaults: w_speedup 1.0, w_energy 0.5, w_violation 2.0, violation_scale 1.0 point,
    invalid_action_penalty 0.1. With ``shaping=True``, step k also earns
    ``Phi(mapping after k) - Phi(mapping before k)`` with ``Phi = w_speedup ln S + w_energy ln E``
    of the partial mapping (undecided layers digital), and the terminal reward is reduced by
    ``Phi(final)``: every episode's return is unchanged (potential-based shaping, gamma = 1).

    ## Starting State
    ``reset`` draws a network uniformly from ``tasks``, ``t`` log-uniformly from ``t_range_s``
    and the threshold uniformly from ``threshold_range``, all from ``self.np_random``;
    ``reset(options={"network": name, "t_s": t, "threshold": points})`` fixes any of them.
    No layer is decided and every tile is free.

    ## Episode End
    ``terminated`` after the last mappable layer is decided (exactly L steps for a network of L
    layers). ``truncated`` is always False. The terminal ``info`` holds ``speedup``,
    ``energy_gain``, ``drop``, ``accuracy`` (baseline - drop), ``baseline``, ``feasible``,
    ``mapping`` (list of 0/1), ``tiles_used``, ``network``, ``t_s`` and ``threshold``; every
    ``info`` holds ``action_mask`` and ``invalid_action``.

    ## Arguments
    * ``tasks``: prepared :class:`envs.tasks.MappingTask` objects, or
    * ``networks`` (names of ``conf/network`` entries) with ``hw``, ``noise`` (preset names or
      descriptions), ``accuracy`` ("surrogate" or "oracle") and ``surrogate_model``, from which the
      tasks are built. With neither, ``networks``, ``hw`` and ``noise`` default to the training
      networks and presets of ``conf/train.yaml`` (so ``gym.make("AIMCMapping-v0")`` works);
    * ``t_range_s`` (default 1 hour to 1 year), ``threshold_range`` (default 0.5 to 5 points);
    * ``reward_weights`` (a RewardWeights or a dict of its fields), ``shaping`` (default False).

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": []}

    def __init__(self, tasks: Sequence[MappingTask] | None = None, *, networks: Sequence[str] | None = None,
                 hw: str | dict | None = None, noise: str | dict | None = None, accuracy: str = "surrogate",
                 surrogate_model: str = "linear", t_range_s: Sequence[float] = (HOUR_S, YEAR_S),
                 threshold_range: Sequence[float] = (0.5, 5.0),
                 reward_weights: RewardWeights | dict | None = None, shaping: bool = False) -> None:
        super().__init__()
        if tasks is None:
            from common.presets import default_choice, entry_config

            if networks is None:
                networks = entry_config("train")["train"]["networks"]
            if not networks:
                raise ValueError("LayerMappingEnv needs tasks or a non-empty list of network names")
            tasks = build_tasks(list(networks), hw=hw or default_choice("train", "hw"),
                                noise=noise or default_choice("train", "noise"), accuracy=accuracy,
                                surrogate_model=surrogate_model, progress=False)
        self.tasks = {task.name: task for task in tasks}
        if not self.tasks:
            raise ValueError("LayerMappingEnv needs at least one task")
        self.t_range_s = (float(t_range_s[0]), float(t_range_s[1]))
        self.threshold_range = (float(threshold_range[0]), float(threshold_range[1]))
        if not 0 < self.t_range_s[0] <= self.t_range_s[1]:
            raise ValueError(f"t_range_s must satisfy 0 < low <= high, got {self.t_range_s}")
        if not 0 < self.threshold_range[0] <= self.threshold_range[1]:
            raise ValueError(f"threshold_range must satisfy 0 < low <= high, got {self.threshold_range}")
        if isinstance(reward_weights, dict):
            reward_weights = RewardWeights(**reward_weights)
        self.weights = reward_weights or RewardWeights()
        self.shaping = bool(shaping)
        low = np.array([f[1] for f in FEATURES], np.float32)
        high = np.array([f[2] for f in FEATURES], np.float32)
        self.observation_space = spaces.Box(low, high, dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.task: MappingTask | None = None

    # --- episode set-up ------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        options = options or {}
        names = sorted(self.tasks)
        name = options.get("network", names[int(self.np_random.integers(len(names)))])
        if name not in self.tasks:
            raise ValueError(f"unknown network {name!r}; this environment maps {', '.join(names)}")
        low, high = self.t_range_s
        t_s = float(options["t_s"]) if "t_s" in options else float(
            math.exp(self.np_random.uniform(math.log(low), math.log(high))))
        threshold = float(options["threshold"]) if "threshold" in options else float(
            self.np_random.uniform(*self.threshold_range))
        if not t_s > 0 or not threshold > 0:
            raise ValueError(f"t_s and threshold must be > 0, got t_s={t_s}, threshold={threshold}")
        self.task, self.t_s, self.threshold = self.tasks[name], t_s, threshold
        task = self.task
        capable = task.cost.analog_capable
        self.sensitivity = np.where(capable, np.maximum(task.profile.at(t_s), 0.0), 0.0)
        relative = self.sensitivity / threshold
        self.sensitivity_ahead = np.concatenate([np.cumsum(relative[::-1])[::-1][1:], [0.0]])
        capacity = task.cost.tile_capacity
        # Features fixed for the episode, one row per layer.
        static = np.zeros((len(task), len(FEATURES)), np.float32)
        static[:, KIND_COLUMNS] = task.kinds
        static[:, COLUMN["analog_capable"]] = capable
        static[:, COLUMN["mac_share"]] = task.mac_share
        static[:, COLUMN["weight_share"]] = task.weight_share
        static[:, COLUMN["tiles_over_capacity"]] = np.minimum(task.cost.tiles / capacity, 1.0)
        static[:, COLUMN["latency_share"]] = np.clip(task.latency_share, 0.0, 1.0)
        static[:, COLUMN["log_speedup"]] = np.where(
            capable, np.clip(np.log(task.layer_speedup) / RATIO_SCALE, -1, 1), 0.0)
        static[:, COLUMN["log_energy_gain"]] = np.where(
            capable, np.clip(np.log(task.layer_energy_gain) / RATIO_SCALE, -1, 1), 0.0)
        static[:, COLUMN["latency_saving"]] = np.where(capable, np.clip(task.latency_saving, -1, 1), 0.0)
        static[:, COLUMN["sensitivity"]] = np.minimum(relative, SENSITIVITY_CAP) / SENSITIVITY_CAP
        static[:, COLUMN["position"]] = np.arange(len(task)) / len(task)
        static[:, COLUMN["sensitivity_ahead"]] = np.minimum(self.sensitivity_ahead, SENSITIVITY_CAP) / SENSITIVITY_CAP
        static[:, COLUMN["macs_ahead"]] = task.remaining_mac_share
        static[:, COLUMN["log_t"]] = np.clip(math.log10(max(t_s, 1.0)) / LOG_T_MAX, 0.0, 1.0)
        static[:, COLUMN["threshold"]] = min(threshold / THRESHOLD_MAX, 1.0)
        self._static = static
        self.index = 0
        self.mapping = np.zeros(len(task), bool)
        self.tiles_left = capacity
        self.drop_so_far = 0.0
        self.previous_action = 0
        self.latency_s = task.cost.baseline.latency_s
        self.dynamic_energy_j = float(task.cost.digital_energy_j.sum() + task.cost.fixed_energy_j)
        return self._observation(), {"action_mask": self.action_masks(), "invalid_action": False}

    # --- stepping -------------------------------------------------------------------------------

    def action_masks(self) -> np.ndarray:
        """[digital allowed, analog allowed] for the current layer (both False after the end)."""
        if self.task is None or self.index >= len(self.task):
            return np.array([True, False])
        i = self.index
        analog = bool(self.task.cost.analog_capable[i]) and int(self.task.cost.tiles[i]) <= self.tiles_left
        return np.array([True, analog])

    def step(self, action):
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        if self.index >= len(self.task):
            raise RuntimeError("the episode has ended; call reset()")
        if isinstance(action, np.ndarray):
            action = action.item()
        if action not in (0, 1):
            raise ValueError(f"action must be 0 (digital) or 1 (analog), got {action!r}")
        task, i = self.task, self.index
        invalid = action == 1 and not self.action_masks()[1]
        analog = action == 1 and not invalid
        reward = -self.weights.invalid_action_penalty if invalid else 0.0
        before = self._potential() if self.shaping else 0.0
        if analog:
            self.mapping[i] = True
            self.tiles_left -= int(task.cost.tiles[i])
            self.drop_so_far += self.sensitivity[i] / self.threshold
            self.latency_s += task.cost.analog_latency_s[i] - task.cost.digital_latency_s[i]
            self.dynamic_energy_j += task.cost.analog_energy_j[i] - task.cost.digital_energy_j[i]
        if self.shaping:
            reward += self._potential() - before
        self.previous_action = int(analog)
        self.index += 1
        terminated = self.index == len(task)
        info: dict[str, Any] = {"invalid_action": invalid}
        if terminated:
            info.update(self._finish())
            final = terminal_reward(info["speedup"], info["energy_gain"], info["drop"], self.threshold, self.weights)
            reward += final - (self._potential() if self.shaping else 0.0)
        info["action_mask"] = self.action_masks()
        return self._observation(), float(reward), terminated, False, info

    # --- helpers -------------------------------------------------------------------------------

    def _partial_cost(self) -> tuple[float, float]:
        """Speedup and energy gain of the mapping so far (undecided layers digital)."""
        cost = self.task.cost
        tiles_used = cost.tile_capacity - self.tiles_left
        energy = self.dynamic_energy_j + (cost.core_static_w + cost.tile_static_w * tiles_used) * self.latency_s
        return cost.baseline.latency_s / self.latency_s, cost.baseline.energy_j / energy

    def _potential(self) -> float:
        return potential(*self._partial_cost(), self.weights)

    def _finish(self) -> dict[str, Any]:
        task = self.task
        result = task.cost.evaluate(self.mapping)
        drop = float(task.drop(self.mapping, self.t_s)) if self.mapping.any() else 0.0
        return {"network": task.name, "t_s": self.t_s, "threshold": self.threshold,
                "speedup": result.speedup, "energy_gain": result.energy_gain, "drop": drop,
                "baseline": task.baseline, "accuracy": task.baseline - drop,
                "feasible": bool(drop <= self.threshold and result.feasible),
                "mapping": self.mapping.astype(int).tolist(), "tiles_used": result.tiles_used}

    def _observation(self) -> np.ndarray:
        task = self.task
        i = min(self.index, len(task) - 1)
        obs = self._static[i].copy()
        if self.index >= len(task):
            obs[COLUMN["position"]] = 1.0
        obs[COLUMN["tiles_remaining"]] = self.tiles_left / task.cost.tile_capacity
        obs[COLUMN["drop_so_far"]] = min(self.drop_so_far, SENSITIVITY_CAP) / SENSITIVITY_CAP
        obs[COLUMN["previous_action"]] = self.previous_action
        obs[COLUMN["log_speedup_so_far"]] = np.clip(
            math.log(task.cost.baseline.latency_s / self.latency_s) / RATIO_SCALE, -1.0, 1.0)
        return obs
