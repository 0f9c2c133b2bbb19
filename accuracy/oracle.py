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

import base64
import collections
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
# Programmed chips whose layer states are kept in memory (least recently used dropped first): a
# chip's states are reused by every mapping and drift time evaluated on it; a plan that draws chips
# per statement would otherwise keep every chip it ever programmed.
MEMO_CHIPS = 32  # VGG-11: about 57 MB of layer states per chip; programming one ~0.6 s, its pass 5.6 s
# Samples in one forward pass when chips are stacked (chips x batch): bounds the activations' memory.
CHIP_BATCH_SAMPLES = 4000


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
        # The sample standard deviation over chips (n - 1): the chips are a sample of the population
        # of programmed chips, and the population form understates it (by sqrt 2 for 2 chips).
        std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
        return cls(mean=mean, std=std, per_seed=per_seed, baseline=baseline,
                   drop=baseline - mean, t_s=float(t_s), images=images, method=method)


def mapping_bits(mapping: Iterable) -> str:
    """A mapping as text, one character per mappable layer ("1" analog, "0" digital): how cache
    keys, artifacts, results files and certificate keys write it."""
    return "".join("1" if bool(a) else "0" for a in mapping)


def layer_seed(seed: int, layer_index: int) -> int:
    """Programming seed of one layer under one repetition (independent streams per layer)."""
    return (int(seed) * 1_000_003 + int(layer_index) * 10_007 + 1) % (2**31 - 1)


class ChipStack(nn.Module):
    """One layer on K programmed chips: the input is the chips' activations stacked chip-major
    along the batch (K x B samples); chip k's layer computes chip k's block. The layers before and
    after it run on the whole stack, so K chips cost one pass of K x B samples, not K passes."""

    def __init__(self, chips: Sequence[nn.Module]) -> None:
        super().__init__()
        self.chips = nn.ModuleList(chips)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blocks = x.chunk(len(self.chips))
        return torch.cat([chip(block) for chip, block in zip(self.chips, blocks)])


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
                 cache: ResultCache | None = None, method: str = "fast", data: ImageSet | None = None,
                 image_offset: int = 0) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if images <= 0 or batch_size <= 0 or not seeds or image_offset < 0:
            raise ValueError("images and batch_size must be > 0, image_offset >= 0 and seeds non-empty")
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
        if image_offset and image_offset + images > len(data):
            raise ValueError(f"{spec.name}: images [{image_offset}, {image_offset + images}) do not fit the "
                             f"{len(data)} images of the {split} split; lower the offset or the image count")
        # Images [offset, offset + images) of the split: a search and a verification can use disjoint images.
        self.data = ImageSet(data.images[image_offset:image_offset + images],
                             data.labels[image_offset:image_offset + images])
        self.images, self.image_offset = len(self.data), int(image_offset)
        self.split = split
        self._checkpoint = spec.checkpoint_sha256()
        self._states: dict[tuple[int, int, float], adapter.LayerState] = {}
        self._programmed: dict[tuple[int, int], nn.Module] = {}
        self._reference_layers: dict[tuple[int, int, float], nn.Module] = {}
        self._memo_chips: collections.OrderedDict[int, None] = collections.OrderedDict()
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

    def key(self, mapping: Iterable, t_s: float, method: str | None = None,
            seeds: Sequence[int] | None = None) -> dict:
        """The cache key (kind "accuracy") of ``mapping`` at ``t_s`` on ``seeds`` (default: the
        oracle's): the one place its format is defined, so an execution backend's driver reads and
        writes exactly the rows ``evaluate`` does."""
        method, m = self._checked(mapping, t_s, method)
        return self._key(m, t_s, method, self._seeds(seeds))

    def compute_per_seed(self, mapping: Iterable, t_s: float, method: str | None = None,
                         seeds: Sequence[int] | None = None) -> tuple[float, ...]:
        """Per-seed accuracies (percent) of ``mapping`` at ``t_s``, computed, never read from or
        written to the cache: what an execution backend's workers run (only the driver writes)."""
        method, m = self._checked(mapping, t_s, method)
        seeds = self._seeds(seeds)
        if not m.any():
            return tuple(self.baseline() for _ in seeds)
        if method == "reference":
            return tuple(self._accuracy_reference(m, t_s, seed) for seed in seeds)
        per_seed: list[float] = []
        group = max(1, CHIP_BATCH_SAMPLES // min(self.batch_size, self.images))
        for start in range(0, len(seeds), group):
            per_seed += self._accuracy_chips(m, t_s, seeds[start:start + group], method)
        return tuple(per_seed)

    def evaluate(self, mapping: Iterable, t_s: float, method: str | None = None,
                 seeds: Sequence[int] | None = None) -> AccuracyResult:
        """Drift-aged accuracy of ``mapping`` at ``t_s`` seconds after programming, over the
        programmed chips ``seeds`` (default: the oracle's)."""
        method, m = self._checked(mapping, t_s, method)
        seeds = self._seeds(seeds)
        baseline = self.baseline()
        if not m.any():
            per_seed = tuple(baseline for _ in seeds)
        else:
            key = self._key(m, t_s, method, seeds)
            cached = self.cache.get("accuracy", key) if self.cache is not None else None
            if cached is not None:
                per_seed = tuple(cached["per_seed"])
            else:
                per_seed = self.compute_per_seed(m, t_s, method, seeds)
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

    def _seeds(self, seeds: Sequence[int] | None) -> tuple[int, ...]:
        if seeds is None:
            return self.seeds
        seeds = tuple(int(s) for s in seeds)
        if not seeds:
            raise ValueError("seeds must be non-empty")
        return seeds

    def _key(self, mapping: np.ndarray, t_s: float, method: str, seeds: Sequence[int] | None = None) -> dict:
        key = {"oracle": ORACLE_VERSION, "checkpoint": self._checkpoint, "network": self.spec.name,
               "mapping": mapping_bits(mapping), "t_s": float(t_s),
               "seeds": list(self.seeds if seeds is None else seeds), "images": self.images, "split": self.split,
               "batch": self.batch_size, "device": self.noise.digest(), "method": method,
               "aihwkit": adapter.AIHWKIT_VERSION}
        if self.image_offset:  # absent for offset 0, so rows written before offsets existed still match
            key["image_offset"] = self.image_offset
        return key

    def _accuracy(self, model: nn.Module) -> float:
        return self._accuracies(model, chips=1)[0]

    def _accuracies(self, model: nn.Module, chips: int) -> list[float]:
        """Accuracy (percent) per chip of a model whose analog layers are :class:`ChipStack` s of
        ``chips`` chips: each batch is repeated once per chip (chip-major) and the logits split back."""
        return self._percent(self._correct(model, chips))

    def _percent(self, counts: np.ndarray) -> list[float]:
        """Accuracy (percent) per chip of (chips, samples) correct counts."""
        total = self.data.labels.numel()
        return [100.0 * int(c) / total for c in counts.sum(axis=1)]

    @torch.no_grad()
    def _correct(self, model: nn.Module, chips: int) -> np.ndarray:
        """(chips, samples) correct predictions per sample: 0 or 1 for a classifier, the correctly
        predicted positions of a window for a sequence model (class scores along dim 1: (N, classes)
        or (N, vocabulary, positions))."""
        model.eval()
        counts = np.zeros((chips, self.images), np.int64)
        for start in range(0, self.images, self.batch_size):
            images = self.data.images[start:start + self.batch_size]
            labels = self.data.labels[start:start + self.batch_size]
            if chips > 1:
                images = images.repeat(chips, *([1] * (images.dim() - 1)))
            logits = model(images)
            for chip, chip_logits in enumerate(logits.chunk(chips)):
                hits = (chip_logits.argmax(1) == labels).reshape(len(labels), -1).sum(1)
                counts[chip, start:start + len(labels)] = hits.numpy()
        return counts

    def _positions(self) -> int:
        """Labelled positions per sample (1 for a classifier, the window for a sequence model)."""
        return int(self.data.labels[:1].numel())

    def sample_drops(self, mapping: Iterable, t_s: float, seeds: Sequence[int] | None = None,
                     method: str | None = None) -> np.ndarray:
        """(chips, samples) drop in points per sample: 100 x (all-digital correct - analog correct)
        / positions, per chip of ``seeds`` (default: the oracle's). Row means are exactly
        ``baseline - accuracy`` per chip (``evaluate``'s drops); the spread over samples is what a
        statement about unseen images needs (``accuracy.population``). Cached (kind "samples",
        ``evaluate``'s key) as packed counts; the per-chip accuracies are cached too."""
        method, m = self._checked(mapping, t_s, method)
        seeds = self._seeds(seeds)
        digital = self._sample_counts(self.baseline_key(), lambda: self._correct(self.model, 1))[0]
        if not m.any():
            analog = np.repeat(digital[None], len(seeds), axis=0)
        elif method == "reference":
            raise ValueError("per-sample drops need the fast or weights path (method='fast' or 'weights')")
        else:
            key = self._key(m, t_s, method, seeds)

            def compute() -> np.ndarray:
                counts = self._correct_chips(m, t_s, seeds, method)
                if self.cache is not None:  # the per-chip row evaluate reads, from the same pass
                    self.cache.put("accuracy", key, {"per_seed": self._percent(counts)})
                return counts

            analog = self._sample_counts(key, compute)
        return 100.0 * (digital[None, :] - analog) / self._positions()

    def _sample_counts(self, key: dict, compute) -> np.ndarray:
        cached = self.cache.get("samples", key) if self.cache is not None else None
        if cached is not None:
            flat = np.frombuffer(base64.b64decode(cached["counts"]), dtype="<u2")
            return flat.reshape(cached["chips"], cached["samples"]).astype(np.int64)
        counts = compute()
        if self.cache is not None:
            self.cache.put("samples", key, {"chips": int(counts.shape[0]), "samples": int(counts.shape[1]),
                                            "counts": base64.b64encode(counts.astype("<u2").tobytes()).decode()})
        return counts

    def layer_state(self, index: int, seed: int, t_s: float) -> adapter.LayerState:
        """Programmed + drifted tiles of layer ``index`` under repetition ``seed`` (memoised)."""
        key = (index, seed, float(t_s))
        self._remember(seed)
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

    def _remember(self, seed: int) -> None:
        """Mark ``seed``'s chip as just used; forget the layers of the least recently used chip
        beyond ``MEMO_CHIPS`` (recomputed on demand, identically)."""
        self._memo_chips[seed] = None
        self._memo_chips.move_to_end(seed)
        while len(self._memo_chips) > MEMO_CHIPS:
            old, _ = self._memo_chips.popitem(last=False)
            for memo in (self._states, self._programmed, self._reference_layers):
                for key in [k for k in memo if k[1] == old]:
                    del memo[key]

    def reference_layer(self, index: int, seed: int, t_s: float) -> nn.Module:
        """aihwkit's programmed, drifted module for one layer (memoised: programming and drift are
        deterministic per seed and a forward pass leaves the module's device state unchanged)."""
        key = (index, seed, float(t_s))
        self._remember(seed)
        if key not in self._reference_layers:
            name = self.table.layers[index].name
            analog = adapter.to_analog(self.modules[name], self.noise, name)
            adapter.program_and_drift(analog, t_s, layer_seed(seed, index))
            self._reference_layers[key] = analog
        return self._reference_layers[key]

    def _accuracy_chips(self, mapping: np.ndarray, t_s: float, seeds: Sequence[int], method: str) -> list[float]:
        """Per-chip accuracies of the fast or weights path, every chip of ``seeds`` in one forward
        pass per batch. Each chip keeps its own noise generator, drawn in the same order as a pass
        of that chip alone, so the result does not depend on which chips share the pass."""
        with self._hybrid(mapping, t_s, seeds, method) as hybrid:
            return self._accuracies(hybrid, chips=len(seeds))

    @contextlib.contextmanager
    def programmed_network(self, mapping: Iterable, t_s: float, seed: int) -> Iterator[nn.Module]:
        """The network with ``mapping``'s analog layers on chip ``seed`` at ``t_s`` (fast path), for
        an experiment of one's own; the oracle's model is restored on exit."""
        method, m = self._checked(mapping, t_s, "fast")
        with self._hybrid(m, t_s, (int(seed),), method) as hybrid:
            yield hybrid

    @contextlib.contextmanager
    def _hybrid(self, mapping: np.ndarray, t_s: float, seeds: Sequence[int], method: str) -> Iterator[nn.Module]:
        """The network with the analog layers of ``mapping`` on the chips ``seeds`` (stacked)."""
        generators = [torch.Generator().manual_seed(layer_seed(seed, 10_000)) for seed in seeds]
        replacements: dict[str, nn.Module] = {}
        for i in np.flatnonzero(mapping):
            name = self.table.layers[i].name
            if method == "fast":
                chips = [FastAnalogLayer(self.modules[name], self.layer_state(i, seed, t_s), self.noise, generator)
                         for seed, generator in zip(seeds, generators)]
            else:
                chips = [EffectiveWeightLayer(self.modules[name], self.layer_state(i, seed, t_s)) for seed in seeds]
            replacements[name] = chips[0] if len(chips) == 1 else ChipStack(chips)
        with swapped(self.model, replacements) as hybrid:
            yield hybrid

    def _correct_chips(self, mapping: np.ndarray, t_s: float, seeds: Sequence[int], method: str) -> np.ndarray:
        """(chips, samples) correct counts of the fast or weights path, in stacks of chips as
        ``compute_per_seed`` runs them (per chip the same as a pass of its own)."""
        group = max(1, CHIP_BATCH_SAMPLES // min(self.batch_size, self.images))
        blocks = []
        for start in range(0, len(seeds), group):
            chips = seeds[start:start + group]
            with self._hybrid(mapping, t_s, chips, method) as hybrid:
                blocks.append(self._correct(hybrid, chips=len(chips)))
        return np.concatenate(blocks)

    def _accuracy_reference(self, mapping: np.ndarray, t_s: float, seed: int) -> float:
        analog_layers = [i for i, analog in enumerate(mapping) if analog]
        replacements: dict[str, nn.Module] = {}
        for i in analog_layers:
            replacements[self.table.layers[i].name] = self.reference_layer(i, seed, t_s)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(layer_seed(seed, 10_000))
            with swapped(self.model, replacements) as hybrid:
                return self._accuracy(hybrid)
