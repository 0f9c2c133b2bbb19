"""What the environment needs per network, precomputed: costs, sensitivities, a drop model.

A :class:`MappingTask` is built once (cost model from the layer table and the hardware preset;
sensitivity profile and drop model from the network's accuracy) and then serves every episode on
that network without touching torch or aihwkit.

The sensitivity profile the policy observes comes from one of two sources (``profile``):

* ``exact``: the network's accuracy artifact (``accuracy.profiles``: every analog-capable layer
  alone, exactly, at 10 drift times, plus 150 exact samples for the surrogate; hundreds of exact
  evaluations, built once per network);
* ``cheap``: the cheap estimate (``accuracy.cheap_sensitivity``: a few exact-evaluation
  equivalents, cached in SQLite). With ``artifact=True`` (training) the drop model is still the
  artifact's surrogate (the reward); with ``artifact=False`` (mapping a new network) no artifact
  is read or built: the drop model is the additive one over the cheap profile and the baseline
  comes from one digital pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from accuracy.noise import load_noise
from accuracy.surrogate import DropSurrogate, SensitivityProfile
from hw_model.cost import NetworkCost, network_cost
from hw_model.system import load_system
from workloads.registry import NetworkSpec

KIND_ORDER = ("conv", "depthwise_conv", "linear", "attention", "classifier")
DropFunction = Callable[[np.ndarray, float], float]


@dataclass
class MappingTask:
    """One network on one system, ready for fast episodes."""

    name: str
    cost: NetworkCost
    profile: SensitivityProfile
    drop: DropFunction  # (mapping bool (L,), t_s) -> drop in points
    baseline: float  # all-digital accuracy (percent) on the validation images
    drop_batch: Callable[[np.ndarray, float], np.ndarray] | None = None  # (N, L) -> (N,), when cheap
    profile_source: str = "exact"  # where ``profile`` came from: exact (artifact) | cheap (estimate)
    profile_cost: dict | None = None  # the cheap estimate's cost record (None for the artifact)

    def __post_init__(self) -> None:
        table = self.cost.table
        n = len(table)
        if self.profile.drops.shape[0] != n:
            raise ValueError(f"{self.name}: profile has {self.profile.drops.shape[0]} layers, the network {n}")
        self.kinds = np.zeros((n, len(KIND_ORDER)), np.float32)
        for i, layer in enumerate(table.layers):
            self.kinds[i, KIND_ORDER.index(layer.kind)] = 1.0
        macs = np.array([layer.macs for layer in table.layers], float)
        weights = np.array([layer.weights for layer in table.layers], float)
        self.mac_share = macs / macs.sum()
        self.weight_share = weights / weights.sum()
        self.remaining_mac_share = np.concatenate([np.cumsum(self.mac_share[::-1])[::-1][1:], [0.0]])
        base = self.cost.baseline.latency_s
        self.latency_share = self.cost.digital_latency_s / base
        self.latency_saving = (self.cost.digital_latency_s - self.cost.analog_latency_s) / base
        self.layer_speedup = self.cost.digital_latency_s / self.cost.analog_latency_s
        self.layer_energy_gain = self.cost.digital_energy_j / self.cost.analog_energy_j

    def __len__(self) -> int:
        return len(self.cost)


PROFILE_SOURCES = ("exact", "cheap")


def build_task(network: str | NetworkSpec, hw: str | dict = "alpine_like", noise: str | dict = "lionheart",
               accuracy: str = "surrogate", surrogate_model: str = "linear", oracle_options: dict | None = None,
               progress: bool = True, allow_build: bool = True, cache_path: str | Path | None = None,
               profile: str = "exact", artifact: bool = True, estimator: str | None = None) -> MappingTask:
    """A task from names or configs. ``accuracy``: "surrogate" (default) or "oracle" (exact, cached).
    ``profile``: the observed sensitivity, "exact" (the artifact's) or "cheap" (the estimate);
    ``artifact``: whether the accuracy artifact may be read (needed for ``profile="exact"``; with
    "cheap" and False no artifact is read or built, see the module docstring); ``estimator``: the
    cheap estimate's raw score (``accuracy.cheap_sensitivity.ESTIMATORS``; None: the calibration's
    default).

    A missing or stale accuracy artifact is rebuilt (minutes) unless ``allow_build`` is False;
    its exact evaluations, the oracle's and the cheap estimate are cached in ``cache_path``
    (default ``cache/accuracy.sqlite``).
    """
    from accuracy.cache import ResultCache
    from accuracy.oracle import AccuracyOracle
    from accuracy.profiles import DEFAULT_CACHE, load_or_build

    if profile not in PROFILE_SOURCES:
        raise ValueError(f"profile must be one of {PROFILE_SOURCES}, got {profile!r}")
    if accuracy not in ("surrogate", "oracle"):
        raise ValueError(f"accuracy must be 'surrogate' or 'oracle', got {accuracy!r}")
    if profile == "exact" and not artifact:
        raise ValueError("profile='exact' reads the accuracy artifact: use profile='cheap' to map without it")
    spec = NetworkSpec.zoo(network) if isinstance(network, str) else network
    system = load_system(hw)
    noise_config = load_noise(noise, system.tiles.rows, system.tiles.cols)
    cache_path = Path(cache_path) if cache_path else DEFAULT_CACHE
    cache = ResultCache(cache_path) if profile == "cheap" or accuracy == "oracle" else None
    cheap = None
    if profile == "cheap":
        from accuracy.cheap_sensitivity import cached_cheap_profile
        from accuracy.profiles import plan_for

        plan = plan_for(spec)
        cheap = cached_cheap_profile(AccuracyOracle(spec, noise_config, images=plan.images, seeds=plan.seeds,
                                                    cache=cache), cache, estimator=estimator, progress=progress)
    data = load_or_build(spec, noise_config, cache_path=cache_path, progress=progress,
                         allow_build=allow_build) if artifact else None
    drop_batch = None
    if accuracy == "oracle":
        from accuracy.profiles import ProfilePlan

        plan = ProfilePlan()
        options = {"images": plan.images, "seeds": plan.seeds, **(oracle_options or {})}
        oracle = AccuracyOracle(spec, noise_config, cache=cache, **options)
        drop: DropFunction = lambda mapping, t_s: oracle.evaluate(mapping, t_s).drop  # noqa: E731
    else:  # surrogate: the artifact's; without the artifact, the additive model over the cheap profile
        surrogate = data.surrogate(surrogate_model) if data is not None else DropSurrogate(cheap.profile, "additive")
        drop = lambda mapping, t_s: float(surrogate.predict(mapping[None, :], t_s)[0])  # noqa: E731
        drop_batch = surrogate.predict
    cost = network_cost(spec, system)
    if cheap is None:
        return MappingTask(spec.name, cost, data.profile, drop, data.baseline, drop_batch)
    return MappingTask(spec.name, cost, cheap.profile, drop, data.baseline if data is not None else cheap.baseline,
                       drop_batch, "cheap", {**cheap.cost, "cached": cheap.cached})


def build_tasks(networks: Sequence[str], **kwargs) -> list[MappingTask]:
    return [build_task(name, **kwargs) for name in networks]
