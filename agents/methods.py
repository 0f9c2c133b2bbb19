"""Mapping methods behind one interface, ``propose(task, t_s, threshold) -> Proposal``, and ONE
registry of them (:data:`METHODS`): evaluate.py, the comparison benchmark and its summaries take
their list from here, so adding a method is one class, one ``@register_method`` and one test.

Every method returns a mapping that respects the action masks (only analog-capable layers
analog, tiles within capacity) and reports how many exact accuracy evaluations it used.
Methods that evaluate exactly get an evaluation-counting :class:`agents.verify.ExactVerifier`.

* ``all_digital``: nothing analog (always feasible, speedup 1). Not run by default.
* ``all_analog``: every analog-capable layer, largest MACs first, while the tiles fit; ignores accuracy.
* ``random``: a random mask-respecting mapping, thinned at random until the surrogate
  predicts it within the threshold.
* ``lionheart_greedy``: layers by descending MACs (ties in network order); a layer stays analog if
  the *exact* drop with it and every earlier kept layer is within the threshold. One exact
  evaluation per analog-capable layer that fits; no retraining.
* ``lionheart_costaware`` (not run by default): the same greedy over only the layers that are
  faster on analog, by descending latency saved.
* ``search`` (not run by default): a budgeted exact-verified local search from the other methods'
  mappings (default 100 exact evaluations per point): the best-known reference on networks too
  large for the exhaustive optimum.
* ``lionheart_protocol`` (not run by default): LionHeart's greedy with the original paper's
  evaluation protocol: every candidate evaluated at t = 1 day whatever the target time, on 5,000
  validation images (all of them when the split has fewer) and 10 programming seeds (chips
  0..9). Its exact evaluations are counted in evaluations of the standard protocol (1,000
  images x 2 chips: one of its evaluations counts 25).
* ``knapsack_ladder``, ``random_ladder`` (not run by default): the same verified threshold-ladder
  search the policy uses (``agents.verify.policy_search``: proposals at the threshold times each
  factor of ``THRESHOLD_LADDER``, a binary search with ``evaluations`` exact evaluations, repair
  when none verifies) around the knapsack's or random's proposals: the policy's exact budget
  given to a proposer that can propose at any threshold, so the rows compare proposals, not
  search effort.
* ``knapsack``: maximise the latency saved (i.e. the speedup) subject to the additive
  predicted drop (sensitivity profile at t) <= threshold and tiles <= capacity; exact dynamic
  programming over a 0.01-point drop grid and the integer tile budget.
* ``optimum``: for networks of at most 14 layers, every mask-respecting mapping in
  order of speedup; those the surrogate puts within ``threshold + screen_margin`` are verified
  exactly until the first verified-feasible one (at most ``max_evaluations``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from agents.verify import THRESHOLD_LADDER, ExactVerifier, policy_search
from envs.tasks import MappingTask

DROP_GRID = 0.01  # points per knapsack drop unit


@dataclass(frozen=True)
class Proposal:
    method: str
    mapping: np.ndarray
    exact_evaluations: int


class MappingMethod(Protocol):
    name: str

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal: ...


@dataclass(frozen=True)
class MethodEntry:
    """One registered method: how to build it and where it applies."""

    name: str
    label: str  # for tables and plots
    factory: Callable[..., MappingMethod]  # factory(verifier=..., **options)
    exact: bool  # spends exact evaluations (gets the verifier)
    default: bool  # run when the configuration asks for "all"
    applicable: Callable[[MappingTask], bool]
    sensitivity: bool = False  # reads the network's sensitivity (profile or drop model): its one-time cost is the method's


METHODS: dict[str, MethodEntry] = {}


def register_method(name: str, *, label: str | None = None, exact: bool = False, default: bool = True,
                    applicable: Callable[[MappingTask], bool] | None = None, sensitivity: bool = False):
    """Class decorator: register a mapping method under ``name`` (its constructor takes the
    keyword ``verifier`` when ``exact``, and its configurable options as keywords). ``sensitivity``:
    the method reads the network's sensitivity (the profile or the drop model over it, from the
    accuracy artifact or the cheap estimate), so the one-time cost of measuring it is part of what
    the method costs on a new network."""
    def decorate(cls):
        if name in METHODS:
            raise ValueError(f"a mapping method named {name!r} is already registered")
        cls.name = name
        METHODS[name] = MethodEntry(name, label or name, cls, exact, default,
                                    applicable or (lambda task: True), sensitivity)
        return cls
    return decorate


def method_names(selection: str | Sequence[str] = "all") -> list[str]:
    """Registered names, in registration order: every default method for "all", else the
    given ones (an unknown name is a ValueError naming the choices)."""
    if isinstance(selection, str):
        if selection != "all":
            selection = [selection]
        else:
            return [name for name, entry in METHODS.items() if entry.default]
    unknown = [name for name in selection if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown mapping method(s) {', '.join(map(repr, unknown))}; registered: "
                         f"{', '.join(METHODS)}")
    return [name for name in METHODS if name in selection]


def applicable_names(task: MappingTask, selection: str | Sequence[str] = "all") -> list[str]:
    """The selected names (:func:`method_names`) whose method applies to ``task``."""
    return [name for name in method_names(selection) if METHODS[name].applicable(task)]


def make_methods(task: MappingTask, verifier: ExactVerifier, selection: str | Sequence[str] = "all",
                 options: dict[str, dict[str, Any]] | None = None) -> list[MappingMethod]:
    """The selected methods that apply to ``task``, built with their options
    (``options[name]``: keyword arguments), exact ones sharing ``verifier``."""
    options = options or {}
    methods = []
    for name in applicable_names(task, selection):
        entry = METHODS[name]
        kwargs = dict(options.get(name) or {})
        if entry.exact:
            kwargs["verifier"] = verifier
        methods.append(entry.factory(**kwargs))
    return methods


def fits(task: MappingTask, mapping: np.ndarray) -> bool:
    cost = task.cost
    return bool(not (mapping & ~cost.analog_capable).any() and cost.tiles[mapping].sum() <= cost.tile_capacity)


def mac_order(task: MappingTask) -> np.ndarray:
    """Layer indices by descending MACs, ties in network order (a stable sort)."""
    return np.argsort(-task.cost.macs, kind="stable")


@register_method("lionheart_greedy", label="LionHeart greedy", exact=True)
class LionHeartGreedy:

    def __init__(self, verifier: ExactVerifier) -> None:
        self.verifier = verifier

    def order(self, task: MappingTask) -> np.ndarray:
        """The layers to try, in order: LionHeart's, by descending MACs."""
        return mac_order(task)

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        start = self.verifier.evaluations
        mapping = np.zeros(len(task), bool)
        left = task.cost.tile_capacity
        for i in self.order(task):
            if not task.cost.analog_capable[i] or task.cost.tiles[i] > left:
                continue
            mapping[i] = True
            if self.verifier(mapping, t_s) <= threshold:
                left -= int(task.cost.tiles[i])
            else:
                mapping[i] = False
        return Proposal(self.name, mapping, self.verifier.evaluations - start)


@register_method("lionheart_costaware", label="cost-aware greedy", exact=True, default=False)
class CostAwareGreedy(LionHeartGreedy):
    """LionHeart's greedy made aware of run time: it tries only layers whose analog latency is
    below their digital latency, by descending latency saved (ties in network order); the rest
    stays LionHeart's (one exact evaluation per layer tried, a layer kept when the drop with it
    and every earlier kept layer is within the threshold)."""

    def order(self, task: MappingTask) -> np.ndarray:
        saving = task.cost.digital_latency_s - task.cost.analog_latency_s
        by_saving = np.argsort(-saving, kind="stable")
        return by_saving[saving[by_saving] > 0]


@register_method("lionheart_protocol", label="LionHeart greedy, paper protocol", exact=True, default=False)
class LionHeartProtocol(LionHeartGreedy):
    """LionHeart's greedy evaluated as published (t = 1 day, 5,000 images, 10 repetitions), minus
    its per-candidate retraining; see the module docstring. Its search shares validation images
    with the certification when the split has no more than 5,000 (the chips differ); the final
    report is on the test split and fresh chips as for every method."""

    def __init__(self, verifier: ExactVerifier, images: int = 5000, repetitions: int = 10,
                 t_eval_s: float = 86400.0) -> None:
        super().__init__(verifier)
        if images < 1 or repetitions < 1 or t_eval_s <= 0:
            raise ValueError("lionheart_protocol needs images >= 1, repetitions >= 1 and t_eval_s > 0, got "
                             f"{images}, {repetitions}, {t_eval_s}")
        self.images, self.repetitions, self.t_eval_s = int(images), int(repetitions), float(t_eval_s)

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        standard = self.verifier
        self.verifier = standard.with_protocol(self.images, self.repetitions)
        try:
            proposal = super().propose(task, self.t_eval_s, threshold)
        finally:
            protocol, self.verifier = self.verifier, standard
        equivalents = int(np.ceil(protocol.evaluations * protocol.weight - 1e-9))
        return Proposal(self.name, proposal.mapping, equivalents)


class _SameBudget:
    """The policy's verified threshold-ladder search around a threshold-driven proposer (``inner``)."""

    inner = ""

    def __init__(self, verifier: ExactVerifier, evaluations: int = 2, **inner_options: Any) -> None:
        if evaluations < 1:
            raise ValueError(f"{self.name}: evaluations must be >= 1, got {evaluations}")
        self.verifier, self.evaluations = verifier, int(evaluations)
        self.proposer = METHODS[self.inner].factory(**inner_options)

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        start = self.verifier.evaluations
        verified = policy_search(self.proposer, task, t_s, threshold, self.verifier,
                                 evaluations=self.evaluations, ladder=THRESHOLD_LADDER)
        return Proposal(self.name, verified.mapping, self.verifier.evaluations - start)


@register_method("knapsack", label="knapsack", sensitivity=True)
class SensitivityKnapsack:

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


def _small_enough(task: MappingTask) -> bool:
    return len(task) <= ExhaustiveOptimum.MAX_LAYERS


@register_method("optimum", label="optimum", exact=True, applicable=_small_enough, sensitivity=True)
class ExhaustiveOptimum:
    MAX_LAYERS = 14

    def __init__(self, verifier: ExactVerifier, screen_margin: float = 1.0, max_evaluations: int = 200) -> None:
        self.verifier, self.screen_margin, self.max_evaluations = verifier, screen_margin, max_evaluations

    @staticmethod
    def applicable(task: MappingTask) -> bool:
        return _small_enough(task)

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



@register_method("search", label="local search", exact=True, default=False, sensitivity=True)
class LocalSearch:
    """A budgeted, exactly verified local search: the best-known reference where exhaustive search
    is out of reach. Starts from the mappings of ``starts`` (registered methods, run here; their
    exact evaluations count against the budget) and of ``extra_starts``; from the fastest verified
    start it takes first improvements among neighbours -- one more layer analog, or one analog
    layer swapped for a digital one -- tried in order of speedup (cheap, from the cost model), the
    surrogate screening out those predicted beyond ``threshold + screen_margin``. Every mapping is
    verified once at most; the search stops when the budget is spent or no neighbour improves."""

    accepts_starts = True  # a caller may seed it with other methods' mappings (``extra_starts``)

    def __init__(self, verifier: ExactVerifier, budget: int = 100,
                 starts: Sequence[str] = ("knapsack", "lionheart_costaware", "all_analog"),
                 screen_margin: float = 1.0) -> None:
        if budget < 1:
            raise ValueError(f"search budget must be >= 1 exact evaluation, got {budget}")
        self.verifier, self.budget, self.starts, self.screen_margin = verifier, budget, tuple(starts), screen_margin

    def propose(self, task: MappingTask, t_s: float, threshold: float,
                extra_starts: Sequence[np.ndarray] = ()) -> Proposal:
        first = self.verifier.evaluations
        drops: dict[bytes, float] = {}

        def spent() -> int:
            return self.verifier.evaluations - first

        def verified_drop(mapping: np.ndarray) -> float:
            key = mapping.tobytes()
            if key not in drops:
                drops[key] = self.verifier(mapping, t_s)
            return drops[key]

        starts = [np.asarray(m, bool) for m in extra_starts]
        for method in make_methods(task, self.verifier, [n for n in self.starts if n != self.name]):
            starts.append(method.propose(task, t_s, threshold).mapping)
        best = np.zeros(len(task), bool)
        for mapping in sorted(starts, key=lambda m: -task.cost.evaluate(m).speedup):
            if fits(task, mapping) and spent() < self.budget and verified_drop(mapping) <= threshold:
                best = mapping.copy()
                break
        improved = True
        while improved and spent() < self.budget:
            improved = False
            best_speedup = task.cost.evaluate(best).speedup
            for candidate in self._neighbours(task, best, t_s, threshold, best_speedup):
                if candidate.tobytes() in drops:
                    continue
                if spent() >= self.budget:
                    break
                if verified_drop(candidate) <= threshold:
                    best, improved = candidate, True
                    break
        return Proposal(self.name, best, spent())

    def _neighbours(self, task: MappingTask, mapping: np.ndarray, t_s: float, threshold: float,
                    floor: float) -> list[np.ndarray]:
        """Mask-respecting neighbours faster than ``floor``, fastest first, surrogate-screened."""
        capable = np.flatnonzero(task.cost.analog_capable & ~mapping)
        analog = np.flatnonzero(mapping)
        found = []
        for i in capable:
            added = mapping.copy()
            added[i] = True
            found.append(added)
            for j in analog:
                swapped = added.copy()
                swapped[j] = False
                found.append(swapped)
        if not found:
            return []
        found = np.array(found)
        costs = task.cost.evaluate_batch(found)
        keep = costs["feasible"] & (costs["speedup"] > floor)
        found, speedups = found[keep], costs["speedup"][keep]
        if not len(found):
            return []
        predicted = ExhaustiveOptimum._predict(task, found, t_s)
        order = np.argsort(-speedups, kind="stable")
        return [found[k] for k in order if predicted[k] <= threshold + self.screen_margin]


@register_method("random", label="random", sensitivity=True)
class RandomFeasible:

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


@register_method("knapsack_ladder", label="knapsack, same budget", exact=True, default=False, sensitivity=True)
class KnapsackLadder(_SameBudget):
    inner = "knapsack"


@register_method("random_ladder", label="random, same budget", exact=True, default=False, sensitivity=True)
class RandomLadder(_SameBudget):
    inner = "random"


@register_method("all_analog", label="all-analog")
class AllAnalog:

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        mapping = np.zeros(len(task), bool)
        left = task.cost.tile_capacity
        for i in mac_order(task):
            if task.cost.analog_capable[i] and task.cost.tiles[i] <= left:
                mapping[i] = True
                left -= int(task.cost.tiles[i])
        return Proposal(self.name, mapping, 0)


@register_method("all_digital", label="all-digital", default=False)
class AllDigital:

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        return Proposal(self.name, np.zeros(len(task), bool), 0)
