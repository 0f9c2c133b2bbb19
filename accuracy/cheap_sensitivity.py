"""A cheap estimate of a network's sensitivity profile from one digital pass and a few backward
passes, instead of one exact evaluation per (layer, drift time).

The exact profile (:meth:`accuracy.oracle.AccuracyOracle.sensitivity_profile`) runs the whole
network once per analog-capable layer and drift time (10 times), on every programmed chip.
With only layer ``i`` analog, the input of layer ``i`` is the digital model's own, so the error
the analog layer injects is known from the digital pass alone:

1. One digital forward pass over the oracle's images, in its batches, with hooks capturing every
   analog-capable layer's input ``x_i`` and output ``y_i``.
2. For every analog-capable layer, chip (programming seed) and a few drift times (``CHEAP_TIMES_S``):
   the programmed, drifted twin exactly as the oracle builds it (``oracle.layer_state`` and
   :class:`accuracy.fast_analog.FastAnalogLayer` with the chip's noise generator, fed the batches
   in the oracle's order), applied to ``x_i``: ``e_i = twin(x_i) - y_i`` is, up to float rounding,
   the error the exact evaluation of "layer i alone analog" injects on that chip.
3. Backward passes of the digital model (on slices of the batch) give ``g_i = d scalar / d y_i``
   per sample, and a raw score per (layer, chip, time) is averaged over chips (``ESTIMATORS``):

   * ``rel_mse``: ``sum e^2 / sum y^2`` over the images (the error alone, blind to the network;
     no backward pass);
   * ``fisher``: ``mean_n sum_j (g_nj e_nj)^2`` with ``g`` the gradient of the summed
     cross-entropy (the diagonal-Fisher / HAWQ-V2 weighting of the error; one backward pass);
   * ``loss_first_order``: ``mean_n (sum_j g_nj e_nj)^2``, the squared first-order change of each
     sample's loss (the same backward pass);
   * ``margin_flips``: the linearised accuracy drop, in points. For each sample the margins of
     its label over its ``competitors`` strongest rival classes, ``m_r = z_label - z_{c_r}``
     (``m_1 > 0`` exactly when the sample is right), are moved by their first-order change
     ``sum_j g_r,nj e_nj`` (one backward pass of ``sum_n m_r`` per rival rank ``r``); a sample is
     right with the analog layer when every moved margin stays positive. The score is
     ``100 * (right before - right after) / samples``: the exact evaluation's count of flipped
     samples, linearised after layer i. A sequence model's positions share each layer's output
     (attention), so the summed margin's gradient does not separate them: the flips are counted
     at ``sequence_positions`` positions, one backward pass per (position, rival), a sample of
     the positions the exact accuracy counts.

4. A calibration maps a raw score to a drop in points, ``drop = scale * sign(s) |s|^power``,
   fitted on training networks against their exact profiles at the cheap times
   (``bench/bench_sensitivity.py`` writes ``accuracy/cheap_calibration.json``). Its form (identity
   for an estimator already in points, linear, or power law) is chosen by leave-one-network-out
   cross-validation over those networks (:func:`select_calibration`): the training networks'
   drops are mostly below 1 point, and a form fitted to them must also hold on a network with
   larger ones. The predicted drops at the cheap times are interpolated linearly in log10 t onto
   the profile's grid (and extrapolated with the end segments' slopes). Digital-only layers are
   NaN, as in the exact profile.

How well each estimator agrees with the exact profile, and what it costs in exact evaluations,
is measured by ``bench/bench_sensitivity.py``. The calibration file is JSON, read with ``json``
only: an untrusted file never runs code.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from accuracy.fast_analog import FastAnalogLayer
from accuracy.oracle import AccuracyOracle, layer_seed
from accuracy.surrogate import T_GRID_S, SensitivityProfile
from common.io import atomic_write
from common.paths import PROJECT_ROOT

ESTIMATORS = ("rel_mse", "fisher", "loss_first_order", "margin_flips")
# One point per three decades, on the profile's grid: 100 s, ~1 day, ~3 years.
CHEAP_TIMES_S = (1e2, 1e5, 1e8)
# Rival classes whose margin is linearised per sample (one backward pass each).
COMPETITORS = 2
# Positions of a sequence model whose flips are counted (times COMPETITORS backward passes).
SEQUENCE_POSITIONS = 8
# Samples per backward pass (bounds the autograd graph's memory; no effect on the result).
GRADIENT_BATCH = 100
CALIBRATION_PATH = Path(__file__).resolve().parent / "cheap_calibration.json"
CALIBRATION_FORMAT = "aimc-cheap-sensitivity-calibration"
CALIBRATION_VERSION = 1
# Committed cheap estimates of the zoo networks (python -m cli.build_profiles --cheap): a fresh
# clone reads them instead of measuring; each records the key it was measured under and its cost.
CHEAP_DIR = PROJECT_ROOT / "workloads" / "profiles" / "cheap"
CHEAP_FILE_FORMAT = "aimc-cheap-sensitivity-profile"
CHEAP_FILE_VERSION = 1


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class Calibration:
    """``drop = scale * sign(raw) * |raw| ** power`` (points) for one estimator."""

    estimator: str
    scale: float
    power: float

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise CalibrationError(f"unknown estimator {self.estimator!r}; expected one of {ESTIMATORS}")
        if not (math.isfinite(self.scale) and math.isfinite(self.power) and self.power > 0):
            raise CalibrationError(f"calibration of {self.estimator}: scale must be finite and power > 0, "
                                   f"got scale={self.scale}, power={self.power}")

    def drops(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, float)
        return self.scale * np.sign(raw) * np.abs(raw) ** self.power


@dataclass(frozen=True)
class CalibrationFile:
    """The committed calibration: one :class:`Calibration` per estimator, the default estimator,
    and the measurement settings the calibrations were fitted with."""

    default: str
    calibrations: dict[str, Calibration]
    times_s: tuple[float, ...] = CHEAP_TIMES_S
    competitors: int = COMPETITORS
    sequence_positions: int = SEQUENCE_POSITIONS
    meta: dict[str, Any] = field(default_factory=dict)  # provenance: networks, fit quality

    def get(self, estimator: str | None = None) -> Calibration:
        name = estimator or self.default
        if name not in self.calibrations:
            raise CalibrationError(f"the calibration has no estimator {name!r}; it has {sorted(self.calibrations)}")
        return self.calibrations[name]

    def to_dict(self) -> dict[str, Any]:
        return {"format": CALIBRATION_FORMAT, "version": CALIBRATION_VERSION, "default": self.default,
                "times_s": list(self.times_s), "competitors": self.competitors,
                "sequence_positions": self.sequence_positions,
                "calibrations": {name: {"scale": c.scale, "power": c.power} for name, c in self.calibrations.items()},
                **self.meta}


def load_calibration(path: Path | str = CALIBRATION_PATH) -> CalibrationFile:
    """Read and validate a calibration file (JSON only)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise CalibrationError(f"{path}: no calibration file; fit one with `python -m bench.bench_sensitivity`") from error
    except ValueError as error:
        raise CalibrationError(f"{path}: not JSON ({error})") from error
    return parse_calibration(data, str(path))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_calibration(data: Any, where: str = "calibration") -> CalibrationFile:
    """A :class:`CalibrationFile` from parsed JSON, or a CalibrationError naming the bad field."""
    if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
        raise CalibrationError(f"{where}: not a cheap-sensitivity calibration (format {CALIBRATION_FORMAT!r})")
    if data.get("version") != CALIBRATION_VERSION:
        raise CalibrationError(f"{where}: version {data.get('version')!r}, expected {CALIBRATION_VERSION}")
    entries = data.get("calibrations")
    if not isinstance(entries, dict) or not entries:
        raise CalibrationError(f"{where}: 'calibrations' must be a non-empty object")
    calibrations = {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not all(_number(entry.get(key)) for key in ("scale", "power")):
            raise CalibrationError(f"{where}: calibrations.{name} needs finite numbers 'scale' and 'power'")
        try:
            calibrations[name] = Calibration(name, float(entry["scale"]), float(entry["power"]))
        except CalibrationError as error:
            raise CalibrationError(f"{where}: {error}") from error
    times = data.get("times_s")
    if not isinstance(times, list) or not times or not all(_number(t) and t > 0 for t in times) \
            or list(times) != sorted(set(times)):
        raise CalibrationError(f"{where}: 'times_s' must be a non-empty increasing list of positive numbers")
    settings = {}
    for key in ("competitors", "sequence_positions"):
        value = data.get(key)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            raise CalibrationError(f"{where}: {key!r} must be an integer >= 1, got {value!r}")
        settings[key] = value
    default = data.get("default")
    if default not in calibrations:
        raise CalibrationError(f"{where}: default estimator {default!r} has no calibration")
    known = ("format", "version", "default", "times_s", "calibrations", "competitors", "sequence_positions")
    meta = {k: v for k, v in data.items() if k not in known}
    return CalibrationFile(default, calibrations, tuple(float(t) for t in times), meta=meta, **settings)


@dataclass(frozen=True)
class RawScores:
    """Raw scores per estimator, (layers, times), mean over the oracle's chips (NaN: digital-only
    layers, or an estimator unavailable for the network), and what measuring them cost."""

    network: str
    times_s: tuple[float, ...]
    values: dict[str, np.ndarray]
    cost: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "times_s": list(self.times_s),
                "values": {k: np.where(np.isnan(v), None, v).tolist() for k, v in self.values.items()},
                "cost": self.cost}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RawScores":
        """The inverse of :meth:`to_dict` (None reads back as NaN)."""
        return cls(data["network"], tuple(float(t) for t in data["times_s"]),
                   {k: np.array([[np.nan if x is None else x for x in row] for row in v], dtype=float)
                    for k, v in data["values"].items()}, dict(data["cost"]))


def _batches(oracle: AccuracyOracle) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The oracle's images in the oracle's batches (the analog twins' bound management and noise
    draws depend on the batch, as in the exact evaluation)."""
    for start in range(0, oracle.images, oracle.batch_size):
        yield oracle.data.images[start:start + oracle.batch_size], oracle.data.labels[start:start + oracle.batch_size]


def competitor_margins(logits: torch.Tensor, labels: torch.Tensor, competitors: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Margins of the label over its ``competitors`` strongest rivals, ``z_label - z_c`` for the
    r-th highest other class c, and those classes' indices, both (N, competitors, positions): a
    classifier's (N, classes) logits have one position, a sequence model's (N, vocabulary, T) have
    T. Class scores are along dim 1, as the oracle's accuracy reads them. ``margins[:, 0] > 0``
    exactly when the sample (position) is right."""
    scores = logits.reshape(len(logits), logits.shape[1], -1)
    index = labels.reshape(len(labels), 1, -1)
    true = scores.gather(1, index)
    rivals = scores.scatter(1, index, float("-inf")).topk(competitors, dim=1)
    return true - rivals.values, rivals.indices


def probe_positions(length: int, count: int) -> list[int]:
    """``count`` positions spread evenly over a sequence of ``length`` (the last one included)."""
    count = max(1, min(int(count), length))
    return sorted({int(round(length * (q + 1) / count)) - 1 for q in range(count)})


@contextlib.contextmanager
def _captured(modules: Mapping[str, nn.Module]) -> Iterator[tuple[dict, dict]]:
    """Inputs and outputs of ``modules`` in the forward passes run inside the block."""
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def capture(module, args, output):
            inputs[name] = args[0].detach()
            outputs[name] = output
        return capture

    handles = [module.register_forward_hook(hook(name)) for name, module in modules.items()]
    try:
        yield inputs, outputs
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _gradients_enabled(model: nn.Module) -> Iterator[None]:
    """Autograd on, every parameter requiring grad (so every layer output is in the graph); the
    parameters' flags are restored on exit."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        with torch.enable_grad():
            yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


@dataclass
class _Totals:
    """Running sums over the batches, per (layer, chip, time) unless said otherwise."""

    err2: np.ndarray  # sum of e^2
    fisher: np.ndarray  # sum over samples and outputs of (g_loss e)^2
    first2: np.ndarray  # sum over samples of (g_loss . e)^2
    right_after: np.ndarray  # probed (sample, position)s right with the linearised analog layer
    energy: np.ndarray  # (layers,): sum of the digital outputs' y^2
    right_before: int = 0  # probed (sample, position)s right in the digital model
    probed: int = 0

    @classmethod
    def zeros(cls, layers: int, chips: int, times: int) -> "_Totals":
        shape = (layers, chips, times)
        return cls(np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(shape), np.zeros(layers))

    def scores(self, estimator: str, rows: np.ndarray, images: int) -> np.ndarray:
        """(len(rows), times) raw scores of ``estimator``, the mean over chips."""
        if estimator == "rel_mse":
            per_chip = self.err2[rows] / np.maximum(self.energy[rows], 1e-300)[:, None, None]
        elif estimator == "fisher":
            per_chip = self.fisher[rows] / images
        elif estimator == "loss_first_order":
            per_chip = self.first2[rows] / images
        else:
            per_chip = 100.0 * (self.right_before - self.right_after[rows]) / self.probed
        return per_chip.mean(axis=1)


def _program_twins(oracle: AccuracyOracle, capable: list[int], times: tuple[float, ...]
                   ) -> dict[tuple[int, int, int], FastAnalogLayer]:
    """Every (layer, chip, time)'s programmed, drifted twin: the device states the exact oracle
    uses (memoised by it), and each chip's noise generator seeded as the exact evaluation of one
    analog layer seeds it, so the twins draw the same output noise batch after batch."""
    twins = {}
    for i in capable:
        name = oracle.table.layers[i].name
        for s, seed in enumerate(oracle.seeds):
            for k, t in enumerate(times):
                generator = torch.Generator().manual_seed(layer_seed(seed, 10_000))
                twins[i, s, k] = FastAnalogLayer(oracle.modules[name], oracle.layer_state(i, seed, t),
                                                 oracle.noise, generator)
    return twins


@torch.no_grad()
def _twin_errors(twins: Mapping[tuple[int, int, int], FastAnalogLayer], names: Mapping[int, str],
                 inputs: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor], totals: _Totals,
                 keep: bool) -> dict[tuple[int, int, int], torch.Tensor]:
    """Each twin's error on one batch, ``e = twin(x) - y``, added to the totals; the errors are
    returned when ``keep`` (for the backward passes)."""
    errors = {}
    for (i, s, k), twin in twins.items():
        y = outputs[names[i]]
        e = twin(inputs[names[i]]) - y
        totals.err2[i, s, k] += float(e.double().pow(2).sum())
        if s == 0 and k == 0:
            totals.energy[i] += float(y.double().pow(2).sum())
        if keep:
            errors[i, s, k] = e
    return errors


@dataclass(frozen=True)
class _Probes:
    """What the backward passes differentiate: the summed loss (``loss``) and the margins of the
    label over its ``competitors`` strongest rivals at ``positions`` (flattened output positions)."""

    loss: bool
    margin: bool
    competitors: int
    positions: list[int]

    @property
    def passes(self) -> int:
        return int(self.loss) + self.margin * len(self.positions) * self.competitors


def _gradient_scores(model: nn.Module, modules: Mapping[str, nn.Module], names: Mapping[int, str],
                     images: torch.Tensor, labels: torch.Tensor, rivals: torch.Tensor,
                     probed_margin: torch.Tensor, errors: Mapping[tuple[int, int, int], torch.Tensor],
                     probes: _Probes, totals: _Totals, gradient_batch: int) -> None:
    """The backward passes of one batch, on slices of it (samples are independent in eval mode),
    against the errors the twins made on the whole batch; their scores are added to the totals."""
    capable = list(names)
    for start in range(0, len(images), gradient_batch):
        rows = slice(start, start + gradient_batch)
        with _gradients_enabled(model), _captured(modules) as (_, graph_outputs):
            logits = model(images[rows])
            scalars: list[tuple[tuple[int, int] | None, torch.Tensor]] = []
            if probes.loss:
                scalars.append((None, F.cross_entropy(logits, labels[rows], reduction="sum")))
            if probes.margin:
                scores = logits.reshape(len(logits), logits.shape[1], -1)
                true = scores.gather(1, labels[rows].reshape(len(logits), 1, -1))[:, 0]
                rival = scores.gather(1, rivals[rows])  # (n, competitors, positions)
                scalars += [((q, r), (true[:, p] - rival[:, r, p]).sum())
                            for q, p in enumerate(probes.positions) for r in range(probes.competitors)]
            targets = [graph_outputs[names[i]] for i in capable]
            deltas = {key: torch.empty(len(logits), len(probes.positions), probes.competitors)
                      for key in errors} if probes.margin else {}
            for n, (probe, scalar) in enumerate(scalars):
                grads = dict(zip(capable, torch.autograd.grad(scalar, targets, retain_graph=n < len(scalars) - 1)))
                with torch.no_grad():
                    for (i, s, k), e in errors.items():
                        ge = (grads[i] * e[rows]).flatten(1)
                        if probe is None:
                            ge = ge.double()
                            totals.fisher[i, s, k] += float(ge.pow(2).sum())
                            totals.first2[i, s, k] += float(ge.sum(1).pow(2).sum())
                        else:
                            deltas[i, s, k][:, probe[0], probe[1]] = ge.sum(1)
        for key, delta in deltas.items():  # right when every moved margin stays positive
            totals.right_after[key] += int((probed_margin[rows] + delta > 0).all(-1).sum())


def measure(oracle: AccuracyOracle, times_s: Sequence[float] = CHEAP_TIMES_S,
            estimators: Sequence[str] = ESTIMATORS, competitors: int = COMPETITORS,
            sequence_positions: int = SEQUENCE_POSITIONS, gradient_batch: int = GRADIENT_BATCH) -> RawScores:
    """Raw scores of ``estimators`` for every analog-capable layer at ``times_s``, on the oracle's
    images and chips (see the module docstring).

    ``competitors``: rival classes per sample whose margin is linearised (one backward pass each);
    ``sequence_positions``: positions of a sequence model whose flips are counted (times
    ``competitors`` backward passes); ``gradient_batch``: samples per backward pass (memory only)."""
    if not estimators or set(estimators) - set(ESTIMATORS):
        raise ValueError(f"estimators must be among {ESTIMATORS}, got {list(estimators)}")
    if not times_s or any(not (t > 0 and math.isfinite(t)) for t in times_s) or list(times_s) != sorted(set(times_s)):
        raise ValueError(f"cheap drift times must be finite, > 0 and increasing, got {list(times_s)}")
    if competitors < 1 or sequence_positions < 1 or gradient_batch < 1:
        raise ValueError("competitors, sequence_positions and gradient_batch must be >= 1")
    started = time.perf_counter()
    layers = oracle.table.layers
    names = {i: layer.name for i, layer in enumerate(layers) if layer.analog_capable}
    times = tuple(float(t) for t in times_s)
    twins = _program_twins(oracle, list(names), times)
    programming_s = time.perf_counter() - started
    modules = {name: oracle.modules[name] for name in names.values()}
    with torch.no_grad():
        shape = oracle.model(oracle.data.images[:1]).shape
    positions = math.prod(shape[2:])  # 1 for a classifier, the tokens of a sequence model
    probes = _Probes(loss=bool({"fisher", "loss_first_order"} & set(estimators)), margin="margin_flips" in estimators,
                     competitors=min(competitors, shape[1] - 1),
                     positions=probe_positions(positions, sequence_positions) if positions > 1 else [0])
    totals = _Totals.zeros(len(layers), len(oracle.seeds), len(times))
    seconds = {"digital_pass_seconds": 0.0, "twin_seconds": 0.0, "gradient_seconds": 0.0}
    for images, labels in _batches(oracle):
        tick = time.perf_counter()
        with torch.no_grad(), _captured(modules) as (inputs, outputs):
            logits = oracle.model(images)
        rival_margin, rivals = competitor_margins(logits, labels, probes.competitors)
        probed_margin = rival_margin[:, :, probes.positions].transpose(1, 2)  # (N, positions, competitors)
        totals.right_before += int((probed_margin[..., 0] > 0).sum())
        totals.probed += probed_margin[..., 0].numel()
        tock = time.perf_counter()
        errors = _twin_errors(twins, names, inputs, outputs, totals, keep=probes.passes > 0)
        inputs.clear()
        outputs.clear()
        tack = time.perf_counter()
        if probes.passes and names:  # no analog-capable layer: nothing to differentiate
            _gradient_scores(oracle.model, modules, names, images, labels, rivals, probed_margin, errors, probes,
                             totals, gradient_batch)
        seconds["digital_pass_seconds"] += tock - tick
        seconds["twin_seconds"] += tack - tock
        seconds["gradient_seconds"] += time.perf_counter() - tack
    rows = np.array(list(names), int)
    values = {}
    for estimator in estimators:
        values[estimator] = np.full((len(layers), len(times)), np.nan)
        values[estimator][rows] = totals.scores(estimator, rows, oracle.images)
    cost = {"seconds": time.perf_counter() - started, "programming_seconds": programming_s, **seconds,
            "layers": len(names), "chips": len(oracle.seeds), "times": len(times), "images": oracle.images,
            "twin_passes": len(twins), "backward_passes_per_image": probes.passes,
            "competitors": probes.competitors, "probed_positions": len(probes.positions)}
    return RawScores(oracle.spec.name, times, values, cost)


def interpolate_log_t(values: np.ndarray, times_s: Sequence[float], t_grid: Sequence[float]) -> np.ndarray:
    """(L, K) values at ``times_s`` onto ``t_grid``, linear in log10 t; outside, the end segments'
    lines (one time: constant)."""
    values = np.asarray(values, float)
    x = np.log10(np.asarray(times_s, float))
    grid = np.log10(np.asarray(t_grid, float))
    if len(x) == 1:
        return np.repeat(values, len(grid), axis=1)
    out = np.empty((len(values), len(grid)))
    for j, g in enumerate(grid):
        hi = int(np.clip(np.searchsorted(x, g), 1, len(x) - 1))
        w = (g - x[hi - 1]) / (x[hi] - x[hi - 1])
        out[:, j] = (1 - w) * values[:, hi - 1] + w * values[:, hi]
    return out


def profile_from_raw(raw: RawScores, calibration: Calibration, macs: np.ndarray,
                     t_grid: Sequence[float] = T_GRID_S) -> SensitivityProfile:
    """The predicted profile: calibrated drops at the cheap times, interpolated in log t."""
    drops = calibration.drops(raw.values[calibration.estimator])
    return SensitivityProfile(tuple(float(t) for t in t_grid), interpolate_log_t(drops, raw.times_s, t_grid),
                              np.asarray(macs, float))


def cheap_profile(oracle: AccuracyOracle, t_grid: Sequence[float] = T_GRID_S,
                  calibration: CalibrationFile | Path | str | None = None,
                  estimator: str | None = None) -> tuple[SensitivityProfile, dict[str, Any]]:
    """A cheap estimate of ``oracle.sensitivity_profile(t_grid)`` on the oracle's images and chips,
    and what it cost.

    ``calibration``: a loaded file, a path, or None for the committed ``accuracy/cheap_calibration.json``;
    its drift times, rival count and sequence positions are the ones measured. ``estimator`` picks
    one of its calibrations (default: the file's default). The cost dict has the wall time in
    seconds, its parts (programming and drift, the digital pass, the analog twins, the backward
    passes) and the counts of twin and backward passes.
    """
    if not isinstance(calibration, CalibrationFile):
        calibration = load_calibration(calibration or CALIBRATION_PATH)
    chosen = calibration.get(estimator)
    raw = measure(oracle, calibration.times_s, (chosen.estimator,), competitors=calibration.competitors,
                  sequence_positions=calibration.sequence_positions)
    macs = np.array([layer.macs for layer in oracle.table.layers], float)
    return profile_from_raw(raw, chosen, macs, t_grid), {**raw.cost, "estimator": chosen.estimator,
                                                        "times_s": list(raw.times_s)}


FIT_POWERS = tuple(round(0.05 * k, 2) for k in range(1, 61))  # 0.05 ... 3.0
# Calibration forms by number of fitted parameters; "identity" only for estimators already in points.
CALIBRATION_FORMS = ("identity", "linear", "power")
IN_POINTS = ("margin_flips",)


def fit_calibration(estimator: str, raw: np.ndarray, exact: np.ndarray, form: str = "power",
                    powers: Sequence[float] = FIT_POWERS) -> tuple[Calibration, float]:
    """The calibration ``scale * sign(raw) |raw|^power`` of ``form`` with the least squared error in
    points against ``exact`` drops (1-D arrays of matched points, NaN-free): "identity" fits
    nothing (scale = power = 1), "linear" the scale (power 1), "power" the power from a grid and
    the scale by least squares for each. Returns it and its mean absolute error in points.
    Fitted in points rather than in log space: exact single-layer drops are often <= 0."""
    raw, exact = np.asarray(raw, float), np.asarray(exact, float)
    if raw.shape != exact.shape or raw.ndim != 1 or not len(raw) or not np.isfinite(raw).all() \
            or not np.isfinite(exact).all():
        raise ValueError("fit_calibration needs two equally long 1-D arrays of finite numbers")
    if form not in CALIBRATION_FORMS:
        raise ValueError(f"calibration form must be one of {CALIBRATION_FORMS}, got {form!r}")
    if form == "identity":
        calibration = Calibration(estimator, 1.0, 1.0)
        return calibration, float(np.abs(calibration.drops(raw) - exact).mean())
    best: tuple[float, float, float] | None = None
    for power in ((1.0,) if form == "linear" else powers):
        basis = np.sign(raw) * np.abs(raw) ** power
        norm = float(basis @ basis)
        scale = float(basis @ exact) / norm if norm > 0 else 0.0
        error = float(np.sum((scale * basis - exact) ** 2))
        if best is None or error < best[0]:
            best = (error, scale, float(power))
    calibration = Calibration(estimator, best[1], best[2])
    return calibration, float(np.abs(calibration.drops(raw) - exact).mean())


def select_calibration(estimator: str, points: Mapping[str, tuple[np.ndarray, np.ndarray]]
                       ) -> tuple[Calibration, dict[str, Any]]:
    """The calibration form that predicts an unseen network best, fitted on all of ``points``
    (network -> matched raw scores and exact drops). Each candidate form is scored by
    leave-one-network-out cross-validation (fitted on the other networks, mean absolute error on
    the one left out, averaged over networks); the lowest error wins, ties going to the form with
    fewer parameters. Returns the calibration and the cross-validation table."""
    if len(points) < 2:
        raise ValueError("selecting a calibration form needs points from at least 2 networks")
    forms = [f for f in CALIBRATION_FORMS if f != "identity" or estimator in IN_POINTS]

    def pooled(names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        return (np.concatenate([points[n][0] for n in names]), np.concatenate([points[n][1] for n in names]))

    table: dict[str, Any] = {}
    for form in forms:
        held_out = {}
        for name in points:
            fitted, _ = fit_calibration(estimator, *pooled([n for n in points if n != name]), form=form)
            held_out[name] = float(np.abs(fitted.drops(points[name][0]) - points[name][1]).mean())
        calibration, fit_mae = fit_calibration(estimator, *pooled(list(points)), form=form)
        table[form] = {"cv_mae_points": float(np.mean(list(held_out.values()))), "cv_mae_per_network": held_out,
                       "scale": calibration.scale, "power": calibration.power, "fit_mae_points": fit_mae}
    chosen = min(forms, key=lambda f: (round(table[f]["cv_mae_points"], 12), forms.index(f)))
    return Calibration(estimator, table[chosen]["scale"], table[chosen]["power"]), {"form": chosen, "forms": table}


CACHE_KIND = "cheap_profile"


@dataclass(frozen=True)
class CheapArtifact:
    """A network's cheap sensitivity estimate as a mapping task uses it: the predicted profile on
    the profile grid, the all-digital accuracy on the same images, and what measuring it cost
    (``cost["seconds"]``: wall time of the measurement, recorded when it was computed;
    ``cached``: answered from the SQLite cache this time)."""

    profile: SensitivityProfile
    baseline: float
    cost: dict[str, Any]
    cached: bool


def cheap_key(oracle: AccuracyOracle, calibration: CalibrationFile, estimator: str,
              t_grid: Sequence[float]) -> dict[str, Any]:
    """Everything the cheap estimate depends on (cache key of kind ``cheap_profile``)."""
    return {"oracle": oracle.baseline_key(), **calibration_key(calibration, estimator),
            "t_grid": [float(t) for t in t_grid]}


def calibration_key(calibration: CalibrationFile, estimator: str | None = None) -> dict[str, Any]:
    """What of ``calibration`` a cheap estimate depends on: the estimator's scale and power
    (the default's when ``estimator`` is None) and the measurement settings."""
    chosen = calibration.get(estimator)
    return {"estimator": chosen.estimator, "scale": chosen.scale, "power": chosen.power,
            "times_s": list(calibration.times_s), "competitors": calibration.competitors,
            "sequence_positions": calibration.sequence_positions}


def cheap_file(name: str, directory: Path | str = CHEAP_DIR) -> Path:
    """Where the committed cheap estimate of network ``name`` lives."""
    return Path(directory) / f"{name}.json"


def write_cheap_file(artifact: CheapArtifact, key: Mapping[str, Any], name: str,
                     directory: Path | str = CHEAP_DIR) -> Path:
    """Write one network's cheap estimate (profile, baseline, measured cost, and the key it was
    measured under) as JSON, atomically; the one writer of this format."""
    path = cheap_file(name, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": CHEAP_FILE_FORMAT, "version": CHEAP_FILE_VERSION, "network": name, "key": dict(key),
                "profile": artifact.profile.to_dict(), "baseline": float(artifact.baseline),
                "cost": {k: v for k, v in artifact.cost.items() if k != "cached"}}
    atomic_write(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def read_cheap_file(name: str, key: Mapping[str, Any], directory: Path | str = CHEAP_DIR) -> CheapArtifact | None:
    """The committed cheap estimate of ``name`` if its file exists and was measured under ``key``
    (the same checkpoint, device, images, chips, calibration and grid); None when it is missing or
    stale. A file that is not this format says so on stderr and is ignored (the estimate is then
    measured): JSON only, never code."""
    path = cheap_file(name, directory)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
        if document.get("format") != CHEAP_FILE_FORMAT or document.get("version") != CHEAP_FILE_VERSION:
            raise ValueError(f"not a {CHEAP_FILE_FORMAT} file of version {CHEAP_FILE_VERSION}")
        if json.dumps(document["key"], sort_keys=True) != json.dumps(dict(key), sort_keys=True):
            return None  # measured under another checkpoint, device, calibration or protocol
        profile = SensitivityProfile.from_dict(document["profile"])
        baseline, cost = document["baseline"], document["cost"]
        if not _number(baseline) or not isinstance(cost, dict) or not _number(cost.get("seconds")):
            raise ValueError("baseline and cost.seconds must be numbers")
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
        print(f"warning: ignoring {path}: {error}; the cheap estimate is measured instead "
              f"(python -m cli.build_profiles --cheap --networks {name} rewrites it)", file=sys.stderr)
        return None
    return CheapArtifact(profile, float(baseline), dict(cost), cached=True)


def cached_cheap_profile(oracle: AccuracyOracle, cache=None, t_grid: Sequence[float] = T_GRID_S,
                         calibration: CalibrationFile | Path | str | None = None,
                         estimator: str | None = None, progress: bool = False,
                         directory: Path | str | None = CHEAP_DIR) -> CheapArtifact:
    """:func:`cheap_profile` on ``oracle``'s images and chips, answered from the SQLite ``cache``
    (an :class:`accuracy.cache.ResultCache`), else from the committed file in ``directory``
    (``workloads/profiles/cheap/<network>.json``, when it was measured under the same key; it is
    then copied into the cache), else measured and stored in the cache. ``cache=None`` and
    ``directory=None``: always measure. ``progress``: say on stderr when it is measured."""
    if not isinstance(calibration, CalibrationFile):
        calibration = load_calibration(calibration or CALIBRATION_PATH)
    key = cheap_key(oracle, calibration, estimator, t_grid)
    stored = cache.get(CACHE_KIND, key) if cache is not None else None
    if stored is not None:
        try:
            return CheapArtifact(SensitivityProfile.from_dict(stored["profile"]), float(stored["baseline"]),
                                 dict(stored["cost"]), cached=True)
        except (KeyError, TypeError, ValueError):
            pass  # a row of another layout: measure again
    committed = read_cheap_file(oracle.spec.name, key, directory) if directory is not None else None
    if committed is not None:
        if cache is not None:
            cache.put(CACHE_KIND, key, {"profile": committed.profile.to_dict(), "baseline": committed.baseline,
                                        "cost": committed.cost})
        return committed
    if progress:
        print(f"{oracle.spec.name}: measuring the cheap sensitivity estimate ({oracle.images} images, "
              f"{len(oracle.seeds)} chips; stored in the cache)", file=sys.stderr, flush=True)
    started = time.perf_counter()
    baseline = oracle.baseline()
    profile, cost = cheap_profile(oracle, t_grid, calibration, estimator)
    cost = {**cost, "seconds": time.perf_counter() - started}
    if cache is not None:
        cache.put(CACHE_KIND, key, {"profile": profile.to_dict(), "baseline": baseline, "cost": cost})
    return CheapArtifact(profile, baseline, cost, cached=False)
