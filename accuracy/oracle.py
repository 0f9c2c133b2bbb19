"""Drift-aged accuracy of a network under a mapping: the exact oracle.

Protocol: ``accuracy(mapping, t)`` is measured on the first ``images`` images of the
validation split, once per programming seed in ``seeds``; it returns the mean, the standard
deviation and the per-seed values in percent. ``baseline`` is the all-digital accuracy on the
same images, and ``drop = baseline - mean`` in percentage points.

Each analog layer is programmed and drifted with a seed derived from (programming seed, layer
index), so a layer's device state under a seed is the same whichever other layers are analog,
and the same in both paths:

* ``method="reference"``: aihwkit analog modules for exactly the analog layers, forward through
  aihwkit's tiles (its output noise drawn from the seeded global RNG, inside ``fork_rng``).
* ``method="fast"`` (default): the same programmed, drifted tiles read out of aihwkit, and a
  plain-torch forward (:mod:`accuracy.fast_analog`). 2.9-4.6x faster than the reference; the
  agreement is measured by ``bench/bench_oracle.py``.

Results are cached in SQLite (:mod:`accuracy.cache`) under a key of everything that changes
them: checkpoint hash, mapping, t, seeds, image count, batch size, device-configuration hash,
tile size, method and ``ORACLE_VERSION``. Many independent evaluations run in parallel through
:mod:`accuracy.backend`, which uses this class's ``key`` (the cache rows) and ``compute_per_seed``
(the computation, without the cache) and so gives the same results and rows as ``evaluate``.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from accuracy import aihwkit_adapter as adapter
from accuracy.cache import ResultCache
from accuracy.fast_analog import EffectiveWeightLayer, FastAnalogLayer
from accuracy.noise import NoiseConfig
from workloads.datasets import ImageSet
from workloads.layers import LayerTable, build_layer_table
from workloads.registry import NetworkSpec

ORACLE_VERSION = 1
METHODS = ("fast", "reference", "weights")


class MappingError(ValueError):
    """A mapping that does not fit the network; the message says what is wrong."""


@dataclass(frozen=True)
class AccuracyResult:
    mean: float
    std: float
    per_seed: tuple[float, ...]
    baseline: float
    drop: float  # baseline - mean, percentage points
    t_s: float
    images: int
    method: str

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, per_seed: Sequence[float], baseline: float, t_s: float, images: int,
           method: str) -> "AccuracyResult":
        """The result of per-seed accuracies: one formula for mean, std and drop, so a result
        assembled by an execution backend (``accuracy.backend``) equals ``evaluate``'s bit for bit."""
        per_seed = tuple(float(value) for value in per_seed)
        mean = float(np.mean(per_seed))
        return cls(mean=mean, std=float(np.std(per_seed)), per_seed=per_seed, baseline=baseline,
                   drop=baseline - mean, t_s=float(t_s), images=images, method=method)


def layer_seed(seed: int, layer_index: int) -> int:
    """Programming seed of one layer under one repetition (independent streams per layer)."""
    return (int(seed) * 1_000_003 + int(layer_index) * 10_007 + 1) % (2**31 - 1)


@contextlib.contextmanager
def swapped(model: nn.Module, replacements: dict[str, nn.Module]) -> Iterator[nn.Module]:
    """Temporarily replace submodules by dotted name; the original model is restored on exit."""
    originals = {}
    try:
        for name, module in replacements.items():
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            originals[name] = (parent, child, getattr(parent, child))
            setattr(parent, child, module)
        yield model
    finally:
        for parent, child, module in originals.values():
            setattr(parent, child, module)


class AccuracyOracle:
    """Accuracy of one trained network under mappings and drift times (see the module docstring)."""

    def __init__(self, spec: NetworkSpec, noise: NoiseConfig, *, images: int = 1000,
                 seeds: Sequence[int] = (0, 1, 2), batch_size: int = 500, split: str = "validation",
                 cache: ResultCache | None = None, method: str = "fast", data: ImageSet | None = None) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if images <= 0 or batch_size <= 0 or not seeds:
            raise ValueError("images and batch_size must be > 0 and seeds non-empty")
        self.spec, self.noise, self.method = spec, noise, method
        self.seeds = tuple(int(s) for s in seeds)
        self.batch_size, self.cache = batch_size, cache
        self.model = spec.load()
        self.table: LayerTable = build_layer_table(self.model, spec.input_shape, spec.name,
                                                   noise.tile_rows, noise.tile_cols)
        self.modules = {layer.name: self.model.get_submodule(layer.name) for layer in self.table.layers}
        if data is None:
            splits = spec.data()
            data = getattr(splits, split)
        self.data = data.subset(images)
        self.images = len(self.data)
        self.split = split
        self._checkpoint = spec.checkpoint_sha256()
        self._states: dict[tuple[int, int, float], adapter.LayerState] = {}
        self._programmed: dict[tuple[int, int], nn.Module] = {}
        self._reference_layers: dict[tuple[int, int, float], nn.Module] = {}
        self._baseline: float | None = None

    # --- protocol ---------------------------------------------------------------------------

    def validate(self, mapping: Iterable) -> np.ndarray:
        """The mapping as a bool array, or a MappingError saying what is wrong with it."""
        m = np.asarray(list(mapping))
        if m.ndim != 1 or len(m) != len(self.table):
            raise MappingError(f"{self.spec.name} has {len(self.table)} mappable layers; the mapping has "
                               f"{m.size if m.ndim == 1 else m.shape} entries")
        if not np.isin(m, (0, 1, True, False)).all():
            raise MappingError(f"a mapping holds 0 (digital) or 1 (analog) per layer, got {sorted(set(m.tolist()))}")
        m = m.astype(bool)
        bad = [layer.name for layer, analog in zip(self.table.layers, m) if analog and not layer.analog_capable]
        if bad:
            raise MappingError(f"{self.spec.name}: layer(s) {', '.join(bad)} are digital-only "
                               "(grouped/depthwise convolutions) and cannot be analog")
        return m

    def baseline(self) -> float:
        """All-digital accuracy (percent) on the oracle's images."""
        if self._baseline is None:
            key = self.baseline_key()
            compute = lambda: {"accuracy": self._accuracy(self.model)}  # noqa: E731
            value = self.cache.get_or_compute("baseline", key, compute) if self.cache is not None else compute()
            self._baseline = float(value["accuracy"])
        return self._baseline

    def baseline_key(self) -> dict:
        """The cache key (kind "baseline") of the all-digital accuracy."""
        return self._key(np.zeros(len(self.table), bool), 0.0, method="digital")

    def key(self, mapping: Iterable, t_s: float, method: str | None = None) -> dict:
        """The cache key (kind "accuracy") of ``mapping`` at ``t_s``: the one place its format is
        defined, so an execution backend's driver reads and writes exactly the rows ``evaluate`` does."""
        method, m = self._checked(mapping, t_s, method)
        return self._key(m, t_s, method)

    def compute_per_seed(self, mapping: Iterable, t_s: float, method: str | None = None) -> tuple[float, ...]:
        """Per-seed accuracies (percent) of ``mapping`` at ``t_s``, computed, never read from or
        written to the cache: what an execution backend's workers run (only the driver writes)."""
        method, m = self._checked(mapping, t_s, method)
        if not m.any():
            return tuple(self.baseline() for _ in self.seeds)
        return tuple(self._accuracy_with(m, t_s, seed, method) for seed in self.seeds)

    def evaluate(self, mapping: Iterable, t_s: float, method: str | None = None) -> AccuracyResult:
        """Drift-aged accuracy of ``mapping`` at ``t_s`` seconds after programming."""
        method, m = self._checked(mapping, t_s, method)
        baseline = self.baseline()
        if not m.any():
            per_seed = tuple(baseline for _ in self.seeds)
        else:
            key = self._key(m, t_s, method)
            cached = self.cache.get("accuracy", key) if self.cache is not None else None
            if cached is not None:
                per_seed = tuple(cached["per_seed"])
            else:
                per_seed = self.compute_per_seed(m, t_s, method)
                if self.cache is not None:
                    self.cache.put("accuracy", key, {"per_seed": list(per_seed)})
        return AccuracyResult.of(per_seed, baseline, t_s, self.images, method)

    def sensitivity_profile(self, t_grid: Sequence[float], method: str | None = None,
                            progress=None) -> np.ndarray:
        """(L, T) drop in points when only layer i is analog, at each t (NaN for digital-only layers)."""
        profile = np.full((len(self.table), len(t_grid)), np.nan)
        for i, layer in enumerate(self.table.layers):
            if not layer.analog_capable:
                continue
            mapping = np.zeros(len(self.table), bool)
            mapping[i] = True
            for j, t_s in enumerate(t_grid):
                profile[i, j] = self.evaluate(mapping, t_s, method).drop
                if progress is not None:
                    progress()
        return profile

    # --- internals ----------------------------------------------------------------------------

    def _checked(self, mapping: Iterable, t_s: float, method: str | None) -> tuple[str, np.ndarray]:
        """The method to use and the mapping as a bool array, or a ValueError/MappingError."""
        method = method or self.method
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not (t_s >= 0 and np.isfinite(t_s)):
            raise ValueError(f"drift time must be a finite number of seconds >= 0, got {t_s}")
        return method, self.validate(mapping)

    def _key(self, mapping: np.ndarray, t_s: float, method: str) -> dict:
        return {"oracle": ORACLE_VERSION, "checkpoint": self._checkpoint, "network": self.spec.name,
                "mapping": "".join("1" if a else "0" for a in mapping), "t_s": float(t_s),
                "seeds": list(self.seeds), "images": self.images, "split": self.split,
                "batch": self.batch_size, "device": self.noise.digest(), "method": method,
                "aihwkit": adapter.AIHWKIT_VERSION}

    @torch.no_grad()
    def _accuracy(self, model: nn.Module) -> float:
        model.eval()
        correct = 0
        for start in range(0, self.images, self.batch_size):
            logits = model(self.data.images[start:start + self.batch_size])
            correct += int((logits.argmax(1) == self.data.labels[start:start + self.batch_size]).sum())
        return 100.0 * correct / self.images

    def layer_state(self, index: int, seed: int, t_s: float) -> adapter.LayerState:
        """Programmed + drifted tiles of layer ``index`` under repetition ``seed`` (memoised)."""
        key = (index, seed, float(t_s))
        if key not in self._states:
            # Drift re-derives conductances from the programmed weights: program once per
            # (layer, seed), drift to each t (identical to programming afresh; see the tests).
            programmed = self._programmed.get((index, seed))
            if programmed is None:
                layer = self.table.layers[index]
                programmed = adapter.to_analog(self.modules[layer.name], self.noise, layer.name)
                adapter.program_and_drift(programmed, t_s, layer_seed(seed, index))
                self._programmed[(index, seed)] = programmed
            else:
                adapter.drift_only(programmed, t_s, layer_seed(seed, index))
            self._states[key] = adapter.read_tiles(programmed)
        return self._states[key]

    def reference_layer(self, index: int, seed: int, t_s: float) -> nn.Module:
        """aihwkit's programmed, drifted module for one layer (memoised: programming and drift are
        deterministic per seed and a forward pass leaves the module's device state unchanged)."""
        key = (index, seed, float(t_s))
        if key not in self._reference_layers:
            name = self.table.layers[index].name
            analog = adapter.to_analog(self.modules[name], self.noise, name)
            adapter.program_and_drift(analog, t_s, layer_seed(seed, index))
            self._reference_layers[key] = analog
        return self._reference_layers[key]

    def _accuracy_with(self, mapping: np.ndarray, t_s: float, seed: int, method: str) -> float:
        analog_layers = [i for i, analog in enumerate(mapping) if analog]
        replacements: dict[str, nn.Module] = {}
        if method == "fast":
            generator = torch.Generator().manual_seed(layer_seed(seed, 10_000))
            for i in analog_layers:
                name = self.table.layers[i].name
                replacements[name] = FastAnalogLayer(self.modules[name], self.layer_state(i, seed, t_s),
                                                     self.noise, generator)
            with swapped(self.model, replacements) as hybrid:
                return self._accuracy(hybrid)
        if method == "weights":
            for i in analog_layers:
                name = self.table.layers[i].name
                replacements[name] = EffectiveWeightLayer(self.modules[name], self.layer_state(i, seed, t_s))
            with swapped(self.model, replacements) as hybrid:
                return self._accuracy(hybrid)
        for i in analog_layers:
            replacements[self.table.layers[i].name] = self.reference_layer(i, seed, t_s)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(layer_seed(seed, 10_000))
            with swapped(self.model, replacements) as hybrid:
                return self._accuracy(hybrid)
