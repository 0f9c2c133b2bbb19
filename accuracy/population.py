"""A population statement: does a mapping hold its threshold on programmed chips nobody has measured?

Every programmed chip is a draw from a population: programming noise, drift and read noise differ
from chip to chip, so a mapping's drop measured on two chips says little about the next one
(on ResNet-8 the chip-to-chip standard deviation of one mapping's accuracy is about 2 points).
This module turns per-chip drops into a decision with a stated confidence, by sequential testing:

1. measure the drop on ``first_chips`` chips (programming seeds; which ones: ``draw``, below);
2. compute one-sided confidence bounds for the criterion from the chips so far;
3. **holds** if the upper bound is within the threshold, **fails** if the lower bound is above it,
   otherwise add ``batch_chips`` more chips and look again, up to ``max_chips``; a mapping still
   open at the cap is **undecided at cap**, which counts as not verified.

Criteria (``criterion``):

* ``mean``: the mean drop over the chip population is within the threshold. Bounds:
  ``m -+ t(1 - a, n - 1) * s / sqrt(n)`` (Student t, n chips, sample mean m and standard deviation s).
* ``quantile``: a fraction ``quantile`` of chips (e.g. 90%) is within the threshold, i.e. the
  ``quantile``-quantile of the chip drops is. Bounds: the one-sided normal tolerance bounds
  ``m + s * T(1 - a) / sqrt(n)`` (upper) and ``m + s * T(a) / sqrt(n)`` (lower), T the noncentral
  t quantile with n - 1 degrees of freedom and noncentrality ``z(quantile) * sqrt(n)``.

Population (``population``): whom the statement is about.

* ``chips_and_images`` (default): programmed chips *and* input samples nobody has measured. The
  chips are measured on one fixed sample of images (``certify.images``), and that sample's own
  luck is shared by every chip: on ResNet-20 one mapping's mean drop over the same 8 fresh chips
  is 0.54 points on validation images [1000, 2000) and 1.11 on [0, 1000). So the bound adds the
  image-sampling error to the chip-sampling error, from per-sample drops d[c, i] (chip c, sample i):
  ``se^2 = s_chips^2 / C + s_samples^2 / N``, ``s_chips`` the standard deviation of the chips'
  mean drops over the C chips and ``s_samples`` that of the samples' drops averaged over chips,
  over the N samples (the usual estimate for a crossed chips x samples design; each term carries
  the interaction once, so it errs on the wide side), with Welch-Satterthwaite degrees of freedom.
  For ``quantile`` the chips' tolerance bound and the samples' bound each take half the error.
  More chips shrink only the first term; the second shrinks with more images.
* ``chips``: programmed chips on the measured images only (the sample is taken as given).

Chips (``draw``): which programmed chips a statement measures.

* ``shared``: every statement uses chips ``seed_start, seed_start + 1, ...``. One draw of chips is
  then shared by every mapping of a network: if those chips happen to be lucky, they are lucky for
  every candidate, every method and every repair step at once (ResNet-20: chips 1000-1003 are
  about 2 standard errors better than other chips for each of its mappings).
* ``per_statement``: a statement's chips are drawn from its key (the network, the mapping and the
  drift time; not the threshold): chips ``seed_start + max_chips * (1 + h mod 2^20) + 0, 1, ...``,
  ``h`` a SHA-256 hash of the key. Each statement keeps its own stated error, and the errors of
  different mappings are independent instead of shared; reruns draw the same chips (cached).
  Every seed of ``[seed_start, seed_start + max_chips * (2^20 + 1))`` may be used, so search and
  report chips must lie below ``seed_start``.

Confidence: the plan looks at most ``looks`` times (first batch, then every added batch up to the
cap); each look uses ``a = (1 - confidence) / looks`` (Bonferroni), so over the whole sequence the
chance of declaring *holds* for a mapping whose true criterion is above the threshold is at most
``1 - confidence`` (and likewise for *fails*). Both bounds assume the chip drops are roughly
normal; whether the statements hold is measured, not assumed: the final report scores every
emitted mapping again on fresh chips and the test split (``holds_on_test``), and
``bench/bench_certificate_coverage.py`` measures the chip bound's error rate on a real chip
population (right-skewed chips push it above the stated 1 - confidence: 7.1% on one ResNet-20
mapping with 4 first chips, 5.4% with 8).

What is and is not covered: with ``chips_and_images`` the statement is about unseen chips and
unseen samples *from the distribution of the certification images* (the validation split); a
shift between that distribution and the deployment's (the test split) is not covered, which the
final report measures separately on chips and images no search or verification used.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats

CRITERIA = ("mean", "quantile")
POPULATIONS = ("chips_and_images", "chips")
DRAWS = ("shared", "per_statement")
STATEMENT_DRAWS = 2 ** 20  # per_statement: distinct chip sets a statement's key can select
HOLDS, FAILS, UNDECIDED = "holds", "fails", "undecided at cap"


@dataclass(frozen=True)
class PopulationPlan:
    """How chips are added and how the decision is made (see the module docstring)."""

    confidence: float = 0.95
    criterion: str = "mean"
    quantile: float = 0.9
    first_chips: int = 4
    batch_chips: int = 4
    max_chips: int = 16
    seed_start: int = 1000
    population: str = "chips_and_images"
    draw: str = "shared"

    def __post_init__(self) -> None:
        if self.draw not in DRAWS:
            raise ValueError(f"draw must be one of {DRAWS}, got {self.draw!r}")
        if self.population not in POPULATIONS:
            raise ValueError(f"population must be one of {POPULATIONS}, got {self.population!r}")
        if not 0.5 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0.5, 1), got {self.confidence}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        if not 0 < self.quantile < 1:
            raise ValueError(f"quantile must be in (0, 1), got {self.quantile}")
        if self.first_chips < 2 or self.batch_chips < 1 or self.max_chips < self.first_chips:
            raise ValueError("population plan needs first_chips >= 2, batch_chips >= 1 and "
                             f"max_chips >= first_chips, got {self.first_chips}, {self.batch_chips}, {self.max_chips}")
        if self.seed_start < 0:
            raise ValueError(f"seed_start must be >= 0, got {self.seed_start}")

    @classmethod
    def of(cls, config: dict | None) -> "PopulationPlan":
        """From a configuration mapping (unknown keys are an error, so a typo does not pass silently)."""
        config = dict(config or {})
        unknown = sorted(set(config) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown population-plan key(s) {', '.join(unknown)}; known: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        return cls(**config)

    @property
    def chip_counts(self) -> tuple[int, ...]:
        """Chips measured at each look: first_chips, then + batch_chips ... up to max_chips."""
        counts = [self.first_chips]
        while counts[-1] < self.max_chips:
            counts.append(min(self.max_chips, counts[-1] + self.batch_chips))
        return tuple(counts)

    @property
    def looks(self) -> int:
        return len(self.chip_counts)

    @property
    def alpha_per_look(self) -> float:
        return (1.0 - self.confidence) / self.looks

    def seeds(self, count: int, key: str = "") -> tuple[int, ...]:
        """The first ``count`` chips of the statement ``key`` (ignored by the shared draw)."""
        start = self.seed_start
        if self.draw == "per_statement":
            if not key:
                raise ValueError("draw per_statement needs the statement's key (its network, mapping and time)")
            digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
            start += self.max_chips * (1 + digest % STATEMENT_DRAWS)
        return tuple(range(start, start + count))

    def all_seeds(self) -> tuple[int, ...]:
        """The shared draw's chips (every statement's, with ``draw: shared``)."""
        return tuple(range(self.seed_start, self.seed_start + self.max_chips))

    def seed_range(self) -> range:
        """Every chip any statement of this plan can use: other uses of chips must stay outside it."""
        draws = 1 + (STATEMENT_DRAWS if self.draw == "per_statement" else 0)
        return range(self.seed_start, self.seed_start + self.max_chips * draws)


@dataclass(frozen=True)
class PopulationStatement:
    """The decision for one mapping at one drift time and threshold."""

    decision: str
    criterion: str
    confidence: float
    threshold: float
    chips: int
    seeds: tuple[int, ...]
    drops: tuple[float, ...]  # per chip, points
    mean_drop: float
    sd_drop: float  # sample standard deviation over chips
    upper_bound: float  # of the criterion's drop, at the last look
    lower_bound: float
    population: str = "chips"
    samples: int = 0  # images (or windows) per chip the sample term was estimated on; 0: chips only
    sample_se: float = 0.0  # the image-sampling standard error of the mean drop, points
    draw: str = "shared"  # the chips: the plan's shared set, or a set drawn per statement

    @property
    def holds(self) -> bool:
        return self.decision == HOLDS

    def to_dict(self) -> dict:
        return asdict(self)


def bounds(drops: Sequence[float] | np.ndarray, plan: PopulationPlan) -> tuple[float, float]:
    """(lower, upper) one-sided confidence bounds of the criterion at one look (level ``alpha_per_look``).

    ``drops``: per-chip drops (C,), or per-sample drops (C chips, N samples) whose row means are the
    chips' drops; with ``population=chips_and_images`` the per-sample form is required."""
    lower, upper, _ = _bounds(drops, plan)
    return lower, upper


def _chip_means(drops: Sequence[float] | np.ndarray) -> np.ndarray:
    values = np.asarray(drops, float)
    return values.mean(axis=1) if values.ndim == 2 else values


def _bounds(drops: Sequence[float] | np.ndarray, plan: PopulationPlan) -> tuple[float, float, float]:
    values = np.asarray(drops, float)
    if plan.population == "chips_and_images" and values.ndim != 2:
        raise ValueError("population chips_and_images needs per-sample drops, an array (chips, samples)")
    chips = _chip_means(values)
    n = len(chips)
    if n < 2:
        raise ValueError("confidence bounds need at least 2 chips")
    mean, sd = float(chips.mean()), float(chips.std(ddof=1))
    alpha = plan.alpha_per_look
    sample_se, sample_df = 0.0, math.inf
    if plan.population == "chips_and_images":
        per_sample = values.mean(axis=0)
        samples = len(per_sample)
        if samples < 2:
            raise ValueError("the image-sampling term needs at least 2 samples")
        sample_se, sample_df = float(per_sample.std(ddof=1)) / math.sqrt(samples), samples - 1
    if plan.criterion == "mean":
        chip_var, sample_var = sd ** 2 / n, sample_se ** 2
        total = chip_var + sample_var
        denominator = chip_var ** 2 / (n - 1) + (sample_var ** 2 / sample_df if sample_se else 0.0)
        df = total ** 2 / denominator if denominator > 0 else n - 1  # Welch-Satterthwaite
        half = float(stats.t.ppf(1 - alpha, df)) * math.sqrt(total)
        return mean - half, mean + half, sample_se
    # quantile: the chips' tolerance bound and (with samples) the samples' bound share the error
    alpha_chips = alpha / 2 if sample_se else alpha
    noncentrality = float(stats.norm.ppf(plan.quantile)) * math.sqrt(n)
    upper_factor = float(stats.nct.ppf(1 - alpha_chips, n - 1, noncentrality)) / math.sqrt(n)
    lower_factor = float(stats.nct.ppf(alpha_chips, n - 1, noncentrality)) / math.sqrt(n)
    image_half = float(stats.t.ppf(1 - alpha / 2, sample_df)) * sample_se if sample_se else 0.0
    return mean + lower_factor * sd - image_half, mean + upper_factor * sd + image_half, sample_se


def decide(drops: Sequence[float] | np.ndarray, threshold: float, plan: PopulationPlan,
           last_look: bool) -> tuple[str | None, float, float]:
    """The decision after one look (None: measure more chips) and the bounds it was made on."""
    lower, upper = bounds(drops, plan)
    if upper <= threshold:
        return HOLDS, lower, upper
    if lower > threshold:
        return FAILS, lower, upper
    return (UNDECIDED if last_look else None), lower, upper


def population_statement(chip_drops: Callable[[tuple[int, ...]], Sequence[float] | np.ndarray], threshold: float,
                         plan: PopulationPlan, key: str = "") -> PopulationStatement:
    """Sequentially test ``threshold``; ``chip_drops(seeds)`` returns the drop (points) on each
    programmed chip of ``seeds``: per chip (C,), or per chip and sample (C, N) on the same N samples
    for every chip, which ``population=chips_and_images`` needs (one pass over the images per chip;
    chips may share a pass). ``key`` names the statement (``draw: per_statement`` draws its chips
    from it)."""
    blocks: list[np.ndarray] = []
    counts = plan.chip_counts
    for look, count in enumerate(counts):
        new_seeds = plan.seeds(count, key)[sum(len(b) for b in blocks):]
        blocks.append(np.asarray(chip_drops(new_seeds), float))
        measured = np.concatenate(blocks)
        decision, lower, upper = decide(measured, threshold, plan, last_look=look == len(counts) - 1)
        if decision is not None:
            break
    chips = _chip_means(measured)
    sample_se = _bounds(measured, plan)[2]
    return PopulationStatement(decision=decision, criterion=plan.criterion, confidence=plan.confidence,
                               threshold=float(threshold), chips=len(chips), seeds=plan.seeds(len(chips), key),
                               drops=tuple(float(d) for d in chips), mean_drop=float(chips.mean()),
                               sd_drop=float(chips.std(ddof=1)), upper_bound=upper, lower_bound=lower,
                               population=plan.population,
                               samples=int(measured.shape[1]) if plan.population == "chips_and_images" else 0,
                               sample_se=sample_se, draw=plan.draw)
