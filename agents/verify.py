"""Exact verification of mappings: counting evaluations, repairing, and the policy's search.

:class:`ExactVerifier` wraps an exact drop function and counts every evaluation a method asks
for (the all-digital mapping is free: its drop is 0 by definition).

``verify_and_repair``: evaluate the mapping with the exact oracle; while its drop exceeds the
threshold, move the analog layer with the largest sensitivity at t (profile) back to digital
and verify again. The all-digital mapping is always feasible, so this ends.

``policy_search``: how a trained policy maps a network. The policy learned from the surrogate,
which is off by a fraction of a point where it matters most, near the threshold; so the policy
is asked for its mapping at the threshold and at tightened and relaxed ones (``THRESHOLD_LADDER``
times the threshold), which gives a short list of its own proposals ordered by aggressiveness.
A binary search over that list, starting at the nominal threshold's proposal and bounded by an
exact-evaluation budget, finds the most aggressive proposal that verifies; the fastest verified
proposal is returned. If none verified within the budget, the least aggressive one that failed
is repaired as above. Every exact evaluation is counted.

``certify_and_repair``: the search above selects on a few chips and images, so its verdict is
biased toward lucky mappings. A mapping a method emits as feasible is therefore certified with a
population statement (:mod:`accuracy.population`) on chips and images no search used, and
repaired (its most drift-sensitive analog layers moved to digital, the number found by binary
search) until the statement says it holds. Chip passes are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from accuracy.cache import ResultCache
from accuracy.noise import load_noise
from accuracy.oracle import AccuracyOracle, mapping_bits
from accuracy.population import HOLDS, PopulationPlan, PopulationStatement, population_statement
from accuracy.profiles import DEFAULT_CACHE
from envs.tasks import MappingTask
from hw_model.system import load_system
from workloads.registry import NetworkSpec

THRESHOLD_LADDER = (0.35, 0.5, 0.71, 1.0, 1.41, 2.0, 2.83, 4.0)


class ExactVerifier:
    """Counts the exact accuracy evaluations a method asks for: ``drop(mapping, t)``.

    ``protocol(images, chips)``, when given, returns the exact drop function of another evaluation
    protocol on the same network (more validation images, more programming seeds), for methods
    that search with their own protocol (``lionheart_protocol``); see :meth:`with_protocol`.
    """

    def __init__(self, drop: Callable[[np.ndarray, float], float],
                 protocol: Callable[[int, int], tuple[Callable[[np.ndarray, float], float], float]] | None = None,
                 weight: float = 1.0) -> None:
        self._drop = drop
        self._protocol = protocol
        self.weight = weight  # one evaluation of this verifier in evaluations of the standard protocol
        self.evaluations = 0

    def with_protocol(self, images: int, chips: int) -> "ExactVerifier":
        """A counting verifier over ``images`` validation images and ``chips`` programming seeds;
        its ``weight`` is its cost in evaluations of this verifier's protocol (images x chips)."""
        if self._protocol is None:
            raise ValueError("this verifier has no other evaluation protocol (build it with protocol=...)")
        drop, weight = self._protocol(images, chips)
        return ExactVerifier(drop, weight=weight)

    def __call__(self, mapping: np.ndarray, t_s: float) -> float:
        if not np.any(mapping):
            return 0.0
        self.evaluations += 1
        return float(self._drop(np.asarray(mapping, bool), t_s))


@dataclass(frozen=True)
class Verified:
    mapping: np.ndarray
    drop: float
    repaired_layers: int
    exact_evaluations: int


def exact_verifier(network: str | NetworkSpec, hw: str | dict = "alpine_like", noise: str | dict = "lionheart",
                   images: int = 1000, seeds: tuple[int, ...] = (0, 1),
                   cache_path: Path | None = DEFAULT_CACHE) -> ExactVerifier:
    """An evaluation-counting exact drop function on the validation split (fast path, cached)."""
    spec = NetworkSpec.zoo(network) if isinstance(network, str) else network
    system = load_system(hw)
    noise_config = load_noise(noise, system.tiles.rows, system.tiles.cols)
    oracle = AccuracyOracle(spec, noise_config, images=images, seeds=seeds,
                            cache=ResultCache(cache_path) if cache_path else None)
    return ExactVerifier(lambda mapping, t_s: oracle.evaluate(mapping, t_s).drop)


def verify_and_repair(task: MappingTask, mapping: np.ndarray, t_s: float, threshold: float,
                      verifier: ExactVerifier, drop: float | None = None) -> Verified:
    """``drop``: the mapping's verified drop when the caller already has it (not re-evaluated)."""
    start = verifier.evaluations
    mapping = np.asarray(mapping, bool).copy()
    sensitivity = task.profile.at(t_s)
    repaired = 0
    drop = verifier(mapping, t_s) if drop is None else drop
    while drop > threshold and mapping.any():
        analog = np.flatnonzero(mapping)
        mapping[analog[np.argmax(sensitivity[analog])]] = False
        repaired += 1
        drop = verifier(mapping, t_s)
    return Verified(mapping, float(drop), repaired, verifier.evaluations - start)


def ladder_proposals(mapper, task: MappingTask, t_s: float, threshold: float,
                     ladder: tuple[float, ...] = THRESHOLD_LADDER) -> tuple[list[np.ndarray], int]:
    """The mapper's distinct non-empty proposals at ``threshold * factor`` for each factor, from the
    tightest factor to the most relaxed, and the position of the nominal (factor 1) proposal."""
    proposals: list[np.ndarray] = []
    nominal = 0
    for factor in sorted(ladder):
        mapping = np.asarray(mapper.propose(task, t_s, threshold * factor).mapping, bool)
        if factor == 1.0:
            nominal = next((k for k, m in enumerate(proposals) if np.array_equal(m, mapping)), len(proposals))
        if mapping.any() and not any(np.array_equal(m, mapping) for m in proposals):
            proposals.append(mapping)
    return proposals, min(nominal, max(len(proposals) - 1, 0))


def policy_search(mapper, task: MappingTask, t_s: float, threshold: float, verifier: ExactVerifier,
                  evaluations: int = 2, ladder: tuple[float, ...] = THRESHOLD_LADDER) -> Verified:
    """The policy's verified mapping (see the module docstring); ``evaluations`` >= 1 bounds the
    search (a repair, when needed, adds its own evaluations)."""
    if evaluations < 1:
        raise ValueError(f"policy search needs at least 1 exact evaluation, got {evaluations}")
    if 1.0 not in ladder:
        raise ValueError(f"the threshold ladder must contain 1.0 (the nominal threshold), got {ladder}")
    start = verifier.evaluations
    proposals, nominal = ladder_proposals(mapper, task, t_s, threshold, ladder)
    if not proposals:  # the policy keeps everything digital at every threshold
        return Verified(np.zeros(len(task.cost.tiles), bool), 0.0, 0, 0)
    # Proposals are ordered from least to most aggressive. Binary search for the boundary between
    # the ones that verify and the ones that do not: every index <= highest_pass is taken to pass,
    # every index >= lowest_fail to fail; the search ends when they are adjacent or the budget is spent.
    highest_pass, lowest_fail = -1, len(proposals)
    drops: dict[int, float] = {}  # index -> verified drop
    probe = nominal
    while len(drops) < evaluations:
        drops[probe] = verifier(proposals[probe], t_s)
        if drops[probe] <= threshold:
            highest_pass = probe
        else:
            lowest_fail = probe
        if lowest_fail - highest_pass <= 1:
            break
        probe = (highest_pass + lowest_fail) // 2
    verified = {k: task.cost.evaluate(proposals[k]) for k, drop in drops.items() if drop <= threshold}
    fitting = [k for k, cost in verified.items() if cost.feasible]
    if fitting:
        best = max(fitting, key=lambda k: (verified[k].speedup, -drops[k]))
        return Verified(proposals[best], drops[best], 0, verifier.evaluations - start)
    least_aggressive_failure = min(drops)
    repaired = verify_and_repair(task, proposals[least_aggressive_failure], t_s, threshold, verifier,
                                 drop=drops[least_aggressive_failure])
    return Verified(repaired.mapping, repaired.drop, repaired.repaired_layers, verifier.evaluations - start)


class Certifier:
    """Population statements (``accuracy.population``) of mappings on a verification oracle whose
    chips and images no search used; counts chip passes (one chip over the oracle's images)."""

    def __init__(self, oracle: AccuracyOracle, plan: PopulationPlan) -> None:
        self.oracle, self.plan = oracle, plan
        self.chip_passes = 0

    def __call__(self, mapping: np.ndarray, t_s: float, threshold: float) -> PopulationStatement:
        mapping = np.asarray(mapping, bool)
        if not mapping.any():  # all-digital: no analog error on any chip
            return PopulationStatement(HOLDS, self.plan.criterion, self.plan.confidence, float(threshold), 0, (),
                                       (), 0.0, 0.0, 0.0, 0.0, population=self.plan.population, draw=self.plan.draw)
        def chip_drops(seeds: tuple[int, ...]) -> list[float] | np.ndarray:
            self.chip_passes += len(seeds)
            if self.plan.population == "chips_and_images":  # per chip and sample: the images' error too
                return self.oracle.sample_drops(mapping, t_s, seeds=seeds)
            result = self.oracle.evaluate(mapping, t_s, seeds=seeds)
            return [result.baseline - accuracy for accuracy in result.per_seed]

        key = f"{self.oracle.spec.name}/{mapping_bits(mapping)}/{float(t_s)!r}"
        return population_statement(chip_drops, threshold, self.plan, key=key)


@dataclass(frozen=True)
class Certified:
    mapping: np.ndarray
    statement: PopulationStatement
    repaired_layers: int
    chip_passes: int


def certify_and_repair(task: MappingTask, mapping: np.ndarray, t_s: float, threshold: float,
                       certifier: Certifier) -> Certified:
    """The mapping, with its k most drift-sensitive analog layers (at t) moved to digital for the
    smallest k whose population statement holds. The candidates are nested (k = 0, 1, ...; the
    all-digital mapping always holds), so k is found by binary search: about log2(analog layers)
    statements instead of one per layer, each a sequential test of up to ``max_chips`` chips. The
    returned mapping's own statement holds, whatever the others said."""
    start = certifier.chip_passes
    mapping = np.asarray(mapping, bool).copy()
    statement = certifier(mapping, t_s, threshold)
    if statement.holds:
        return Certified(mapping, statement, 0, certifier.chip_passes - start)
    sensitivity = task.profile.at(t_s)
    analog = np.flatnonzero(mapping)
    order = analog[np.argsort(-sensitivity[analog], kind="stable")]  # most sensitive first

    def without(k: int) -> np.ndarray:
        candidate = mapping.copy()
        candidate[order[:k]] = False
        return candidate

    fails, holds = 0, len(order)  # k = 0 failed; k = all holds (all-digital)
    held = certifier(without(holds), t_s, threshold)
    while holds - fails > 1:
        k = (fails + holds) // 2
        probe = certifier(without(k), t_s, threshold)
        if probe.holds:
            holds, held = k, probe
        else:
            fails = k
    return Certified(without(holds), held, holds, certifier.chip_passes - start)
