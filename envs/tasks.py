"""What the environment needs per network, precomputed: costs, sensitivities, a drop model.

A :class:`MappingTask` is built once (cost model from the layer table and the hardware preset;
sensitivity profile and surrogate from the network's accuracy artifact) and then serves every
episode on that network without touching torch or aihwkit.
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


def build_task(network: str | NetworkSpec, hw: str | dict = "alpine_like", noise: str | dict = "lionheart",
               accuracy: str = "surrogate", surrogate_model: str = "linear", oracle_options: dict | None = None,
               progress: bool = True, allow_build: bool = True, cache_path: str | Path | None = None) -> MappingTask:
    """A task from names or configs. ``accuracy``: "surrogate" (default) or "oracle" (exact, cached).

    A missing or stale accuracy artifact is rebuilt (minutes) unless ``allow_build`` is False;
    its exact evaluations, and the oracle's, are cached in ``cache_path`` (default
    ``cache/accuracy.sqlite``).
    """
    from accuracy.profiles import DEFAULT_CACHE, load_or_build

    spec = NetworkSpec.zoo(network) if isinstance(network, str) else network
    system = load_system(hw)
    noise_config = load_noise(noise, system.tiles.rows, system.tiles.cols)
    cache_path = Path(cache_path) if cache_path else DEFAULT_CACHE
    data = load_or_build(spec, noise_config, cache_path=cache_path, progress=progress, allow_build=allow_build)
    if accuracy == "surrogate":
        surrogate: DropSurrogate = data.surrogate(surrogate_model)
        drop: DropFunction = lambda mapping, t_s: float(surrogate.predict(mapping[None, :], t_s)[0])  # noqa: E731
        drop_batch = surrogate.predict
    elif accuracy == "oracle":
        from accuracy.cache import ResultCache
        from accuracy.oracle import AccuracyOracle
        from accuracy.profiles import ProfilePlan

        plan = ProfilePlan()
        options = {"images": plan.images, "seeds": plan.seeds, **(oracle_options or {})}
        oracle = AccuracyOracle(spec, noise_config, cache=ResultCache(cache_path), **options)
        drop = lambda mapping, t_s: oracle.evaluate(mapping, t_s).drop  # noqa: E731
        drop_batch = None
    else:
        raise ValueError(f"accuracy must be 'surrogate' or 'oracle', got {accuracy!r}")
    return MappingTask(spec.name, network_cost(spec, system), data.profile, drop, data.baseline, drop_batch)


def build_tasks(networks: Sequence[str], **kwargs) -> list[MappingTask]:
    return [build_task(name, **kwargs) for name in networks]
