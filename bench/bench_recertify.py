"""Certify the comparison's mappings again under another population statement (no repair).

    python -m bench.bench_recertify [--network resnet20] [--failing] [--population chips_and_images]
                                    [--draw shared|per_statement]

Every distinct mapping that bench/results/compare.json records as certified ("holds") for
``--network`` (``--failing``: only those whose out-of-sample check on the test split failed) is
certified again on the certification images of conf/evaluate.yaml's ``certify`` with
``--population`` and ``--draw`` (the same chips for every mapping, or chips drawn per statement;
accuracy/population.py), and the new decision is set beside the recorded one and
the test-split result: which failures the statement would have refused, and which holding
mappings it would now refuse. Fast path, shared SQLite cache. JSON in
bench/results/recertify.json (one entry per network, kept across runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
from tqdm import tqdm

from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from accuracy.population import DRAWS, POPULATIONS, PopulationPlan
from agents.verify import Certifier
from accuracy.profiles import DEFAULT_CACHE
from bench.common import RESULTS_DIR, TIMES, certify_config, write_rows
from common.runtime import use_fast_malloc
from workloads.registry import NetworkSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="resnet20")
    parser.add_argument("--failing", action="store_true", help="only mappings that failed on the test split")
    parser.add_argument("--population", choices=POPULATIONS, default="chips_and_images")
    parser.add_argument("--draw", choices=DRAWS, default=certify_config()["plan"].get("draw", "shared"),
                        help="the certification chips (default: conf/evaluate.yaml's)")
    args = parser.parse_args(argv)
    compare = RESULTS_DIR / "compare.json"
    rows = json.loads(compare.read_text())["rows"] if compare.is_file() else []
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["network"] == args.network and row.get("certificate") == "holds" and row.get("feasible"):
            groups.setdefault((row["t"], row["threshold"], row["mapping"]), []).append(row)
    if args.failing:
        groups = {k: v for k, v in groups.items() if not all(r["holds_on_test"] for r in v)}
    if not groups:
        parser.error(f"{compare} has no certified {'failing ' if args.failing else ''}mapping of {args.network}; "
                     f"run python -m bench.bench_compare --networks {args.network} first")
    use_fast_malloc()
    certify = certify_config()
    plan = PopulationPlan.of({**certify["plan"], "population": args.population, "draw": args.draw})
    oracle = AccuracyOracle(NetworkSpec.zoo(args.network), NoiseConfig(name="lionheart"), images=certify["images"],
                            image_offset=certify["image_offset"], seeds=plan.all_seeds(),
                            cache=ResultCache(DEFAULT_CACHE))
    found = []
    for (t, threshold, mapping), recorded in tqdm(sorted(groups.items()), desc=args.network, unit="mapping"):
        start = time.perf_counter()
        statement = Certifier(oracle, plan)(np.array([c == "1" for c in mapping]), TIMES[t], threshold)
        first = recorded[0]
        found.append({"t": t, "threshold": threshold, "mapping": mapping, "methods": [r["method"] for r in recorded],
                      "recorded_certified_mean_drop": first["certified_mean_drop"],
                      "recorded_certified_chips": first["certified_chips"], "test_drop": first["test_drop"],
                      "holds_on_test": first["holds_on_test"], "statement": statement.to_dict(),
                      "seconds": round(time.perf_counter() - start, 1)})
        tqdm.write(f"  {t} / {threshold}: {', '.join(found[-1]['methods'])}: test drop {first['test_drop']:.2f} "
                   f"({'holds' if first['holds_on_test'] else 'fails'} on test) | {args.population}: "
                   f"{statement.decision}, {statement.chips} chips, mean {statement.mean_drop:.2f}, "
                   f"image se {statement.sample_se:.2f}, upper {statement.upper_bound:.2f}")
    failing = [f for f in found if not f["holds_on_test"]]
    holding = [f for f in found if f["holds_on_test"]]
    entry = {"network": args.network, "population": args.population, "draw": args.draw,
             "plan": dataclasses.asdict(plan), "failing_only": args.failing, "mappings": found,
             "test_failures_refused": sum(f["statement"]["decision"] != "holds" for f in failing),
             "test_failures": len(failing),
             "test_holding_refused": sum(f["statement"]["decision"] != "holds" for f in holding),
             "test_holding": len(holding)}
    print(f"{args.network}: of {len(failing)} mappings failing on the test split, {entry['test_failures_refused']} "
          f"refused; of {len(holding)} holding, {entry['test_holding_refused']} refused")
    path = write_rows("recertify", entry, ("network", "population", "draw", "failing_only"), defaults={"draw": "shared"})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
