"""The mapping reward: pure functions with named weights (see LayerMappingEnv's docstring).

Terminal reward of a finished mapping::

    feasible   (drop <= threshold):  R = w_speedup * ln(speedup) + w_energy * ln(energy_gain)
    infeasible (drop >  threshold):  R = -w_violation * (1 + (drop - threshold) / violation_scale)

``drop`` is the drift-aged accuracy drop in percentage points (baseline minus mean accuracy at
the episode's drift time). The all-digital mapping has speedup = energy gain = 1, so R = 0 and
it is always feasible; every infeasible mapping scores below ``-w_violation``, so no violation
pays, and a larger violation costs more.

Optional shaping (potential-based, Ng et al. 1999, with gamma = 1): with
``Phi(prefix) = w_speedup * ln S(prefix) + w_energy * ln E(prefix)``, where undecided layers count
as digital, step t earns ``Phi(prefix_t) - Phi(prefix_{t-1})`` and the terminal step adds
``R - Phi(final)``. The return of every episode is unchanged; only its timing moves earlier.

Each invalid action (analog on a digital-only layer, or beyond the remaining tiles) is carried
out as digital and costs ``invalid_action_penalty`` on that step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RewardWeights:
    speedup: float = 1.0
    energy: float = 0.5
    violation: float = 2.0
    violation_scale: float = 1.0  # percentage points of drop beyond the threshold per unit penalty
    invalid_action_penalty: float = 0.1

    def __post_init__(self) -> None:
        for name in ("speedup", "energy", "violation", "invalid_action_penalty"):
            if getattr(self, name) < 0:
                raise ValueError(f"reward weight {name} must be >= 0, got {getattr(self, name)}")
        if self.violation_scale <= 0:
            raise ValueError(f"reward violation_scale must be > 0, got {self.violation_scale}")


def potential(speedup: float, energy_gain: float, weights: RewardWeights) -> float:
    """Phi: the feasible reward of a (partial) mapping."""
    return weights.speedup * math.log(speedup) + weights.energy * math.log(energy_gain)


def terminal_reward(speedup: float, energy_gain: float, drop: float, threshold: float,
                    weights: RewardWeights) -> float:
    """R of a finished mapping (see the module docstring)."""
    if drop <= threshold:
        return potential(speedup, energy_gain, weights)
    return -weights.violation * (1.0 + (drop - threshold) / weights.violation_scale)
