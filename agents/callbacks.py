"""Training callbacks: mapping metrics, hyperparameters, mapping images, best model, checkpoints,
progress. Every model file is written atomically (:func:`save_model`)."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Figure, HParam
from tqdm import tqdm

from agents.ppo import PolicyMapper
from common.io import atomic_write
from common.units import DAY_S
from envs.tasks import MappingTask

NOT_TEXT = ("stdout", "log", "json", "csv")


def save_model(model, path: Path) -> Path:
    """``model.save`` into memory, then one atomic write: a reader never sees half a zip."""
    buffer = io.BytesIO()
    model.save(buffer)
    return atomic_write(path, buffer.getvalue())


class CheckpointEvery(BaseCallback):
    """``<folder>/ppo_<steps>_steps.zip`` every ``every`` calls (per-environment steps), atomically."""

    def __init__(self, every: int, folder: Path) -> None:
        super().__init__()
        self.every, self.folder = every, Path(folder)

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            self.folder.mkdir(parents=True, exist_ok=True)
            save_model(self.model, self.folder / f"ppo_{self.num_timesteps}_steps.zip")
        return True


def evaluate_policy_grid(mapper: PolicyMapper, tasks: Sequence[MappingTask], times_s: Sequence[float],
                         thresholds: Sequence[float]) -> dict[str, dict[str, float]]:
    """Per network: mean speedup, energy gain, drop, feasible rate and analog MAC share over the grid."""
    results = {}
    for task in tasks:
        rows = [mapper.rollout(task, t, thr) for t in times_s for thr in thresholds]
        results[task.name] = {
            "speedup": float(np.mean([r["speedup"] for r in rows])),
            "energy_gain": float(np.mean([r["energy_gain"] for r in rows])),
            "accuracy_drop": float(np.mean([r["drop"] for r in rows])),
            "feasible_rate": float(np.mean([r["feasible"] for r in rows])),
            "analog_mac_share": float(np.mean([task.mac_share[np.array(r["mapping"], bool)].sum() for r in rows])),
            # the score: mean log speedup of feasible mappings, infeasible ones count as log(1) - 1
            "score": float(np.mean([math.log(r["speedup"]) if r["feasible"] else -1.0 for r in rows])),
        }
    return results


def mapping_figure(mapper: PolicyMapper, tasks: Sequence[MappingTask], t_s: float, threshold: float):
    """Layers x networks: which layers the policy maps analog at one (t, threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = max(len(task) for task in tasks)
    grid = np.full((len(tasks), width), np.nan)
    for row, task in enumerate(tasks):
        grid[row, :len(task)] = mapper.rollout(task, t_s, threshold)["mapping"]
    fig, ax = plt.subplots(figsize=(max(6, width * 0.3), 0.5 * len(tasks) + 1.2))
    ax.imshow(grid, cmap="coolwarm", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(tasks)), [task.name for task in tasks])
    ax.set_xlabel("layer (execution order); red = analog, blue = digital")
    ax.set_title(f"policy mappings at t = {t_s:.0f} s, threshold {threshold} points")
    fig.tight_layout()
    return fig


class MappingMetricsCallback(BaseCallback):
    """Every ``every`` steps: map/* metrics per network, an image of mappings, the best model."""

    def __init__(self, train_tasks: Sequence[MappingTask], holdout_tasks: Sequence[MappingTask],
                 env_kwargs: dict[str, Any], every: int, times_s: Sequence[float], thresholds: Sequence[float],
                 best_path: Path, hparams: dict[str, Any]) -> None:
        super().__init__()
        self.train_tasks, self.holdout_tasks = list(train_tasks), list(holdout_tasks)
        self.env_kwargs, self.every = env_kwargs, every
        self.times_s, self.thresholds = list(times_s), list(thresholds)
        self.best_path, self.hparams = best_path, hparams
        self.best_score = -math.inf
        self.last: dict[str, Any] = {}
        self._next = 0

    def _on_training_start(self) -> None:
        metrics = {"map/score/train_mean": 0.0, "map/speedup/train_mean": 0.0, "map/feasible_rate/train_mean": 0.0}
        self.logger.record("hparams", HParam(self.hparams, metrics), exclude=NOT_TEXT)
        self._next = self.num_timesteps  # evaluate at the start, then every ``every`` steps

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next = self.num_timesteps + self.every
            self.evaluate()
        return True

    def _on_training_end(self) -> None:
        self.evaluate()

    def evaluate(self) -> dict[str, Any]:
        mapper = PolicyMapper(self.model, self.env_kwargs)
        results = {}
        for prefix, tasks in (("map", self.train_tasks), ("eval", self.holdout_tasks)):
            if not tasks:
                continue
            per_network = evaluate_policy_grid(mapper, tasks, self.times_s, self.thresholds)
            group = "train" if prefix == "map" else "holdout"
            for network, values in per_network.items():
                for metric, value in values.items():
                    self.logger.record(f"{prefix}/{metric}/{network}", value)
            for metric in next(iter(per_network.values())):
                mean = float(np.mean([v[metric] for v in per_network.values()]))
                self.logger.record(f"{prefix}/{metric}/{group}_mean", mean)
            results[group] = per_network
        score = float(np.mean([v["score"] for v in results["train"].values()]))
        if score > self.best_score:
            self.best_score = score
            save_model(self.model, self.best_path)
        figure = mapping_figure(mapper, self.train_tasks + self.holdout_tasks, DAY_S, 2.0)
        self.logger.record("map/mappings", Figure(figure, close=True), exclude=NOT_TEXT)
        self.logger.dump(self.num_timesteps)
        self.last = {"step": self.num_timesteps, "score": score, **results}
        return self.last


class ProgressCallback(BaseCallback):
    """A tqdm bar over the run's timesteps.

    SB3 collects whole rollouts (``n_steps`` per environment), so a run ends at the first rollout
    boundary at or past its target; the bar's total is that boundary, counted from where a resumed
    run starts.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        start, target = self.num_timesteps, self.model._total_timesteps
        rollout = getattr(self.model, "n_steps", 1) * self.training_env.num_envs
        total = start + -(-max(0, target - start) // rollout) * rollout
        self.bar = tqdm(total=total, initial=start, unit="step", desc="training", dynamic_ncols=True)

    def _on_step(self) -> bool:
        if self.bar is not None:
            self.bar.update(self.training_env.num_envs)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
