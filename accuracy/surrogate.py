"""A cheap predictor of the drift-aged accuracy drop, drop(mapping, t), for one network.

Built from two things the exact oracle measures once per network:

1. the sensitivity profile: ``d_i(t)``, the drop (points) when only layer ``i`` is analog, on a
   grid of drift times from 1 second to 10 years (interpolated linearly in log10 t);
2. a modest number of exact samples ``(mapping, t, drop)`` of random mappings.

Features of a mapping ``m`` at ``t`` (``d = max(d_i(t), 0)`` over analog layers)::

    additive  = sum_i m_i d_i(t)          rss = sqrt(sum_i m_i d_i^2)     peak = max_i m_i d_i
    n_share   = analog layers / L          mac_share = analog MACs / all MACs     log10 t

Models (chosen per network by held-out error, see ``bench/bench_surrogate.py``):

* ``additive``: drop = additive (no fitting: the LionHeart-style assumption that drops add);
* ``linear``: non-negative least squares on the features (interactions grow with the share);
* ``trees``: gradient-boosted trees on the features (sklearn's HistGradientBoostingRegressor).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from common.units import YEAR_S

# Drift times of the sensitivity profile: 1 s to 10 years, one point per decade plus the ends.
T_GRID_S = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 10 * YEAR_S)
MODELS = ("additive", "linear", "trees")


@dataclass(frozen=True)
class SensitivityProfile:
    """``drops[i, j]``: drop in points with only layer i analog at ``t_grid[j]`` (NaN: digital-only)."""

    t_grid: tuple[float, ...]
    drops: np.ndarray  # (L, T)
    macs: np.ndarray  # (L,)

    def __post_init__(self) -> None:
        if self.drops.shape != (len(self.macs), len(self.t_grid)):
            raise ValueError(f"profile shape {self.drops.shape} does not match {len(self.macs)} layers x "
                             f"{len(self.t_grid)} times")
        if list(self.t_grid) != sorted(self.t_grid) or self.t_grid[0] <= 0:
            raise ValueError("profile times must be positive and increasing")

    def at(self, t_s: float) -> np.ndarray:
        """Per-layer drop at ``t_s`` (log-linear interpolation, clamped to the grid; digital-only = 0)."""
        log_grid = np.log10(self.t_grid)
        x = np.clip(np.log10(max(t_s, 1e-12)), log_grid[0], log_grid[-1])
        hi = int(np.clip(np.searchsorted(log_grid, x), 1, len(log_grid) - 1))
        w = (x - log_grid[hi - 1]) / (log_grid[hi] - log_grid[hi - 1])
        values = (1 - w) * self.drops[:, hi - 1] + w * self.drops[:, hi]
        return np.nan_to_num(values, nan=0.0)

    def to_dict(self) -> dict:
        return {"t_grid": list(self.t_grid), "drops": np.where(np.isnan(self.drops), None, self.drops).tolist(),
                "macs": self.macs.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "SensitivityProfile":
        drops = np.array([[np.nan if v is None else v for v in row] for row in data["drops"]], dtype=float)
        return cls(tuple(data["t_grid"]), drops, np.asarray(data["macs"], dtype=float))


def features(profile: SensitivityProfile, mappings: np.ndarray, t_s: np.ndarray | float) -> np.ndarray:
    """(N, 6) features of N mappings (N, L) at times ``t_s`` (scalar or (N,))."""
    mappings = np.atleast_2d(np.asarray(mappings, dtype=float))
    times = np.broadcast_to(np.asarray(t_s, dtype=float), (len(mappings),))
    out = np.empty((len(mappings), 6))
    macs_share = profile.macs / profile.macs.sum()
    for t in np.unique(times):
        rows = times == t
        d = np.maximum(profile.at(float(t)), 0.0)
        m = mappings[rows]
        out[rows, 0] = m @ d
        out[rows, 1] = np.sqrt(m @ (d * d))
        out[rows, 2] = (m * d).max(axis=1)
        out[rows, 3] = m.mean(axis=1)
        out[rows, 4] = m @ macs_share
        out[rows, 5] = np.log10(max(float(t), 1e-12))
    return out


def _linear_design(X: np.ndarray) -> np.ndarray:
    """The linear model's regressors: the first five features, additive x n_share, an intercept."""
    return np.column_stack([X[:, :5], X[:, 0] * X[:, 3], np.ones(len(X))])


@dataclass
class DropSurrogate:
    """Predicts drop(mapping, t) for one network (see the module docstring)."""

    profile: SensitivityProfile
    model: str = "linear"
    _coef: np.ndarray | None = field(default=None, repr=False)
    _trees: object | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"surrogate model must be one of {MODELS}, got {self.model!r}")

    def fit(self, mappings: np.ndarray, t_s: np.ndarray, drops: np.ndarray) -> "DropSurrogate":
        if self.model == "additive":
            return self
        if len(drops) == 0:  # nothing analog-capable was sampled: every prediction is the additive one
            self.model = "additive"
            return self
        X = features(self.profile, mappings, t_s)
        y = np.asarray(drops, dtype=float)
        if self.model == "linear":
            from scipy.optimize import nnls

            design = _linear_design(X)
            # NNLS keeps every term's sign physical; the intercept may be either sign.
            positive, _ = nnls(np.column_stack([design, -np.ones(len(X))]), y)
            self._coef = positive[:-2].tolist() + [positive[-2] - positive[-1]]
            self._coef = np.asarray(self._coef)
        else:
            from sklearn.ensemble import HistGradientBoostingRegressor

            self._trees = HistGradientBoostingRegressor(
                max_depth=3, learning_rate=0.05, max_iter=300, min_samples_leaf=5,
                monotonic_cst=[1, 1, 1, 0, 0, 0], random_state=0).fit(X, y)
        return self

    def predict(self, mappings: np.ndarray, t_s: np.ndarray | float) -> np.ndarray:
        """Predicted drop (points) of each mapping; an all-digital mapping is exactly 0."""
        mappings = np.atleast_2d(np.asarray(mappings, dtype=float))
        X = features(self.profile, mappings, t_s)
        if self.model == "additive":
            pred = X[:, 0]
        elif self.model == "linear":
            if self._coef is None:
                raise RuntimeError("fit the surrogate before predicting")
            pred = _linear_design(X) @ self._coef
        else:
            if self._trees is None:
                raise RuntimeError("fit the surrogate before predicting")
            pred = self._trees.predict(X)
        return np.where(mappings.any(axis=1), pred, 0.0)
