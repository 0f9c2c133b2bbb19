"""Exact verification of proposed mappings, and repair of infeasible ones.

``verify_and_repair``: evaluate the mapping with the exact oracle; while its drop exceeds the
threshold, move the analog layer with the largest sensitivity at t (profile) back to digital
and verify again. The all-digital mapping is always feasible, so this ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agents.baselines import ExactVerifier
from envs.tasks import MappingTask, load_noise, load_system
from hw_model.cache import ResultCache
from hw_model.oracle import AccuracyOracle
from hw_model.profiles import DEFAULT_CACHE
from workloads.registry import NetworkSpec


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
    noise_config = load_noise(noise, load_system(hw))
    oracle = AccuracyOracle(spec, noise_config, images=images, seeds=seeds,
                            cache=ResultCache(cache_path) if cache_path else None)
    return ExactVerifier(lambda mapping, t_s: oracle.evaluate(mapping, t_s).drop)


def verify_and_repair(task: MappingTask, mapping: np.ndarray, t_s: float, threshold: float,
                      verifier: ExactVerifier) -> Verified:
    start = verifier.evaluations
    mapping = np.asarray(mapping, bool).copy()
    sensitivity = task.profile.at(t_s)
    repaired = 0
    drop = verifier(mapping, t_s)
    while drop > threshold and mapping.any():
        analog = np.flatnonzero(mapping)
        mapping[analog[np.argmax(sensitivity[analog])]] = False
        repaired += 1
        drop = verifier(mapping, t_s)
    return Verified(mapping, float(drop), repaired, verifier.evaluations - start)
