"""Mapping baselines behind one interface: ``propose(task, t_s, threshold) -> Proposal``.

Every method returns a mapping that respects the action masks (only analog-capable layers
analog, tiles within capacity) and reports how many exact accuracy evaluations it used.

* ``AllDigital``: nothing analog (always feasible, speedup 1).
* ``AllAnalog``: every analog-capable layer, largest MACs first, while the tiles fit; ignores accuracy.
* ``RandomFeasible``: a random mask-respecting mapping, thinned at random until the surrogate
  predicts it within the threshold.
* ``LionHeartGreedy``: layers by descending MACs (ties in network order); a layer stays analog if
  the *exact* drop with it and every earlier kept layer is within the threshold. One exact
  evaluation per analog-capable layer that fits; no retraining.
* ``SensitivityKnapsack``: maximise the latency saved (i.e. the speedup) subject to the additive
  predicted drop (sensitivity profile at t) <= threshold and tiles <= capacity; exact dynamic
  programming over a 0.01-point drop grid and the integer tile budget.
* ``ExhaustiveOptimum``: for networks of at most 14 layers, every mask-respecting mapping in
  order of speedup; those the surrogate puts within ``threshold + screen_margin`` are verified
  exactly until the first verified-feasible one (at most ``max_evaluations``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from envs.tasks import MappingTask

DROP_GRID = 0.01  # points per knapsack drop unit


@dataclass(frozen=True)
class Proposal:
    method: str
    mapping: np.ndarray
    exact_evaluations: int


class ExactVerifier:
    """Counts the exact accuracy evaluations a method asks for: ``drop(mapping, t)``."""

    def __init__(self, drop: Callable[[np.ndarray, float], float]) -> None:
        self._drop = drop
        self.evaluations = 0

    def __call__(self, mapping: np.ndarray, t_s: float) -> float:
        if not np.any(mapping):
            return 0.0
        self.evaluations += 1
        return float(self._drop(np.asarray(mapping, bool), t_s))


class Baseline(Protocol):
    name: str

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal: ...


def fits(task: MappingTask, mapping: np.ndarray) -> bool:
    cost = task.cost
    return bool(not (mapping & ~cost.analog_capable).any() and cost.tiles[mapping].sum() <= cost.tile_capacity)


def mac_order(task: MappingTask) -> np.ndarray:
    """Layer indices by descending MACs, ties in network order (a stable sort)."""
    return np.argsort(-task.cost.macs, kind="stable")


class AllDigital:
    name = "all_digital"

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        return Proposal(self.name, np.zeros(len(task), bool), 0)


class AllAnalog:
    name = "all_analog"

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        mapping = np.zeros(len(task), bool)
        left = task.cost.tile_capacity
        for i in mac_order(task):
            if task.cost.analog_capable[i] and task.cost.tiles[i] <= left:
                mapping[i] = True
                left -= int(task.cost.tiles[i])
        return Proposal(self.name, mapping, 0)


class RandomFeasible:
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        mapping = np.zeros(len(task), bool)
        left = task.cost.tile_capacity
        for i in self.rng.permutation(len(task)):
            if task.cost.analog_capable[i] and task.cost.tiles[i] <= left and self.rng.random() < 0.5:
                mapping[i] = True
                left -= int(task.cost.tiles[i])
        while mapping.any() and task.drop(mapping, t_s) > threshold:
            mapping[self.rng.choice(np.flatnonzero(mapping))] = False
        return Proposal(self.name, mapping, 0)


class LionHeartGreedy:
    name = "lionheart_greedy"

    def __init__(self, verifier: ExactVerifier) -> None:
        self.verifier = verifier

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        start = self.verifier.evaluations
        mapping = np.zeros(len(task), bool)
        left = task.cost.tile_capacity
        for i in mac_order(task):
            if not task.cost.analog_capable[i] or task.cost.tiles[i] > left:
                continue
            mapping[i] = True
            if self.verifier(mapping, t_s) <= threshold:
                left -= int(task.cost.tiles[i])
            else:
                mapping[i] = False
        return Proposal(self.name, mapping, self.verifier.evaluations - start)


class SensitivityKnapsack:
    name = "knapsack"

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        cost = task.cost
        saving = cost.digital_latency_s - cost.analog_latency_s
        drops = np.maximum(task.profile.at(t_s), 0.0)
        weight = np.ceil(drops / DROP_GRID - 1e-9).astype(int)
        budget, capacity = int(np.floor(threshold / DROP_GRID + 1e-9)), int(cost.tile_capacity)
        candidates = [i for i in range(len(task)) if cost.analog_capable[i] and saving[i] > 0
                      and weight[i] <= budget and cost.tiles[i] <= capacity]
        # best[d, c]: the largest saving with drop units <= d and tiles <= c; keep[k] records choices.
        best = np.zeros((budget + 1, capacity + 1))
        keep = np.zeros((len(candidates), budget + 1, capacity + 1), bool)
        for k, i in enumerate(candidates):
            w, c = weight[i], int(cost.tiles[i])
            with_item = np.full_like(best, -np.inf)
            with_item[w:, c:] = best[:budget + 1 - w, :capacity + 1 - c] + saving[i]
            keep[k] = with_item > best
            best = np.maximum(best, with_item)
        mapping = np.zeros(len(task), bool)
        d, c = budget, capacity
        for k in range(len(candidates) - 1, -1, -1):
            if keep[k, d, c]:
                i = candidates[k]
                mapping[i] = True
                d, c = d - weight[i], c - int(cost.tiles[i])
        return Proposal(self.name, mapping, 0)


class ExhaustiveOptimum:
    name = "optimum"
    MAX_LAYERS = 14

    def __init__(self, verifier: ExactVerifier, screen_margin: float = 1.0, max_evaluations: int = 200) -> None:
        self.verifier, self.screen_margin, self.max_evaluations = verifier, screen_margin, max_evaluations

    @staticmethod
    def applicable(task: MappingTask) -> bool:
        return len(task) <= ExhaustiveOptimum.MAX_LAYERS

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        if not self.applicable(task):
            raise ValueError(f"{task.name} has {len(task)} layers; exhaustive search is limited to "
                             f"{self.MAX_LAYERS}")
        start = self.verifier.evaluations
        n = len(task)
        codes = np.arange(2 ** n, dtype=np.int64)
        mappings = ((codes[:, None] >> np.arange(n)) & 1).astype(bool)
        costs = task.cost.evaluate_batch(mappings)
        mappings, speedups = mappings[costs["feasible"]], costs["speedup"][costs["feasible"]]
        order = np.argsort(-speedups, kind="stable")
        predicted = self._predict(task, mappings, t_s)
        for index in order:
            mapping = mappings[index]
            if not mapping.any():
                break  # all-digital: always feasible, and everything faster was rejected
            if predicted[index] > threshold + self.screen_margin:
                continue
            if self.verifier.evaluations - start >= self.max_evaluations:
                break
            if self.verifier(mapping, t_s) <= threshold:
                return Proposal(self.name, mapping.copy(), self.verifier.evaluations - start)
        return Proposal(self.name, np.zeros(n, bool), self.verifier.evaluations - start)

    @staticmethod
    def _predict(task: MappingTask, mappings: np.ndarray, t_s: float) -> np.ndarray:
        batch = getattr(task, "drop_batch", None)
        if batch is not None:
            return batch(mappings, t_s)
        return np.array([task.drop(m, t_s) if m.any() else 0.0 for m in mappings])
