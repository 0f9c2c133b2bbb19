"""Does the certificate keep its stated confidence when chips differ the way they really do?

    python -m bench.bench_certificate_coverage [--network resnet20] [--t "1 day"] [--threshold 1]
                                               [--method ppo] [--chips 32] [--trials 4000]

The population statement (``accuracy.population``) bounds the mean drop over chips with a
Student-t bound, which assumes the chips' drops are roughly normal. This benchmark checks that
assumption where it matters:

1. One certified mapping of bench/results/compare.json (network, t, threshold, method) is measured
   on ``--chips`` programmed chips (seeds 2000, 2001, ...: none the searches, the report or the shared
   certification draw use) on the certification images (conf/evaluate.yaml's ``certify``: validation [1000, 2000)), fast path, shared cache: an
   empirical chip population. Reported: its mean, standard deviation and skewness.
2. Sequential statements (the default plan, chips part only: the images are held fixed) are
   simulated ``--trials`` times on chips drawn from (a) a normal population with the same
   standard deviation and (b) the empirical population (resampled), each recentred so that its true
   mean is 0.05 points above the threshold: every "holds" is wrong, and the stated confidence
   promises at most 5%. Also with ``first_chips=8``.

JSON in bench/results/certificate_coverage.json (one entry per measured mapping, kept across runs).
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from scipy import stats

from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from accuracy.population import PopulationPlan, population_statement
from accuracy.profiles import DEFAULT_CACHE
from bench.common import TIMES, add_row_arguments, certified_row, certify_config, write_rows
from common.runtime import use_fast_malloc
from workloads.registry import NetworkSpec
SEED_START = 2000


def wrong_holds(draw, threshold: float, plan: PopulationPlan, trials: int) -> float:
    """Fraction of sequential statements declaring "holds" for chips drawn by ``draw(n)``."""
    return float(np.mean([population_statement(lambda seeds: draw(len(seeds)), threshold, plan).holds
                          for _ in range(trials)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_row_arguments(parser)
    parser.add_argument("--chips", type=int, default=32)
    parser.add_argument("--trials", type=int, default=4000)
    args = parser.parse_args(argv)
    if args.chips < 8 or args.trials < 100:
        parser.error("--chips must be >= 8 and --trials >= 100")
    row = certified_row(parser, args)
    use_fast_malloc()
    seeds = tuple(range(SEED_START, SEED_START + args.chips))
    certify = certify_config()
    oracle = AccuracyOracle(NetworkSpec.zoo(args.network), NoiseConfig(name="lionheart"), images=certify["images"],
                            image_offset=certify["image_offset"], seeds=seeds, cache=ResultCache(DEFAULT_CACHE))
    result = oracle.evaluate(np.array([c == "1" for c in row["mapping"]]), TIMES[args.t])
    drops = np.array([result.baseline - a for a in result.per_seed])
    centred = drops - drops.mean()
    sd = float(drops.std(ddof=1))
    target = args.threshold + 0.05
    rng = np.random.default_rng(0)
    rates = {}
    for first in (4, 8):
        plan = dataclasses.replace(PopulationPlan(population="chips"), first_chips=first)
        rates[f"first_chips_{first}"] = {
            "normal": wrong_holds(lambda n: target + rng.normal(0.0, sd, n), args.threshold, plan, args.trials),
            "empirical": wrong_holds(lambda n: target + rng.choice(centred, n), args.threshold, plan, args.trials)}
    entry = {"network": args.network, "t": args.t, "threshold": args.threshold, "method": args.method,
             "mapping": row["mapping"], "chips": list(seeds), "drops": drops.tolist(), "mean": float(drops.mean()),
             "sd": sd, "skewness": float(stats.skew(drops, bias=False)), "trials": args.trials,
             "true_mean_above_threshold": 0.05, "wrong_holds": rates, "promised": 0.05}
    print(f"{args.network} {args.t} / {args.threshold} ({args.method}): {args.chips} chips, mean {entry['mean']:.2f}, "
          f"sd {sd:.2f}, skewness {entry['skewness']:.2f}")
    for first, rate in rates.items():
        print(f"  {first}: wrong holds normal {rate['normal']:.3f}, empirical {rate['empirical']:.3f} (promised <= 0.05)")
    print(f"wrote {write_rows('certificate_coverage', entry, ('network', 't', 'threshold', 'method'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
