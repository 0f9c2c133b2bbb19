"""Whose luck is a certificate's: one mapping's drop on chips and image windows side by side.

    python -m bench.bench_image_gap [--network resnet20] [--t "1 day"] [--threshold 1] [--method ppo]

Takes one certified row of bench/results/compare.json (network, drift time, threshold, method)
and measures its mapping's mean drop, with its standard deviation over chips and the image
sample's standard error (per-image drops averaged over chips), on:

* the certification images (validation [1000, 2000)) with the certification chips 1000-1007 (the shared
  draw's, on which the comparison's rows were certified),
* the same images with 8 other chips (seeds 100-107),
* those 8 chips on the other validation images ([0, 1000) and [2000, end)),
* those 8 chips on the test split ([0, 2000), the final report's images, and [2000, 5000)).

The first two rows differ only by the chips, the second and third only by the images (same
distribution), the third and fourth by the split (distribution shift): which part of a gap between
a certificate and the test split is chip luck, image luck or shift. Fast path, the shared SQLite
cache. JSON in bench/results/image_gap.json (one entry per measured row, kept across runs).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from accuracy.profiles import DEFAULT_CACHE
from bench.common import TIMES, add_row_arguments, certified_row, write_rows
from common.runtime import use_fast_malloc
from workloads.registry import NetworkSpec
CERT_CHIPS, FRESH_CHIPS = tuple(range(1000, 1008)), tuple(range(100, 108))


def windows(validation: int, test: int) -> list[tuple[str, str, int, int, tuple[int, ...]]]:
    """(label, split, offset, images, chips) of every measurement."""
    return [("certification images, certification chips", "validation", 1000, 1000, CERT_CHIPS),
            ("certification images, other chips", "validation", 1000, 1000, FRESH_CHIPS),
            ("search images [0, 1000), other chips", "validation", 0, 1000, FRESH_CHIPS),
            (f"validation [2000, {validation}), other chips", "validation", 2000, validation - 2000, FRESH_CHIPS),
            ("test [0, 2000) (the report's), other chips", "test", 0, 2000, FRESH_CHIPS),
            (f"test [2000, {min(test, 5000)}), other chips", "test", 2000, min(test, 5000) - 2000, FRESH_CHIPS)]


def measure(row: dict, cache: ResultCache) -> dict:
    spec = NetworkSpec.zoo(row["network"])
    splits = spec.data()
    mapping = np.array([c == "1" for c in row["mapping"]])
    t_s = TIMES[row["t"]]
    found = []
    plan = windows(len(splits.validation), len(splits.test))
    for label, split, offset, images, chips in tqdm(plan, desc=row["network"], unit="window"):
        start = time.perf_counter()
        oracle = AccuracyOracle(spec, NoiseConfig(name="lionheart"), images=images, image_offset=offset,
                                seeds=chips, split=split, cache=cache)
        drops = oracle.sample_drops(mapping, t_s)
        per_chip, per_image = drops.mean(axis=1), drops.mean(axis=0)
        found.append({"window": label, "split": split, "image_offset": offset, "images": images,
                      "chips": list(chips), "digital": oracle.baseline(), "mean_drop": float(per_chip.mean()),
                      "chip_sd": float(per_chip.std(ddof=1)),
                      "image_se": float(per_image.std(ddof=1) / np.sqrt(len(per_image))),
                      "seconds": round(time.perf_counter() - start, 1)})
        tqdm.write(f"  {label:46s} digital {found[-1]['digital']:6.2f}  drop {found[-1]['mean_drop']:5.2f}  "
                   f"chip sd {found[-1]['chip_sd']:4.2f}  image se {found[-1]['image_se']:4.2f}")
    return {key: row[key] for key in ("network", "t", "threshold", "method", "mapping", "certified_mean_drop",
                                      "test_drop")} | {"windows": found}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_row_arguments(parser)
    args = parser.parse_args(argv)
    row = certified_row(parser, args)
    use_fast_malloc()
    entry = measure(row, ResultCache(DEFAULT_CACHE))
    print(f"wrote {write_rows('image_gap', entry, ('network', 't', 'threshold', 'method'))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
