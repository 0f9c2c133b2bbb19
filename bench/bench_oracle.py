"""Reference (aihwkit tiles) against fast path: time per evaluation and accuracy agreement.

    python -m bench.bench_oracle [--networks lenet5 resnet8 mobilenetv2 vgg11] [--mappings 30] [--images 1000] [--seeds 2]
                                 [--analog-share 0.5] [--name oracle] [--fresh]

For each network, ``--mappings`` random mappings (each analog-capable layer analog with
probability ``--analog-share``, 1/2 by default) at t = 1 hour, 1 day and 1 year are evaluated
by both paths on the same validation images and programming seeds, interleaved so machine load
hits both alike.
Both paths use identical programmed, drifted device states (programming and drift are
deterministic per seed); programming is timed separately, once per (layer, seed, t), and both
forward paths are then timed with the states in place (the steady state of a search). Reported:
mean and max |accuracy difference| (target mean <= 0.3 points), time per evaluation of each
path (target >= 10x), the ratio including programming ("cold", programming charged to both),
the same for the weights-only path (``method="weights"``: effective weights, no I/O
non-idealities), the cost of a cache hit, and the per-chip cost of the fast path with 8 chips
stacked in one pass (``stacked_chips``; what a population statement pays) against the reference's. JSON in bench/results/oracle.json, written after each network;
a later run for other networks with the same protocol adds to it (``--fresh`` starts over).

Layers a mapping keeps digital cost the same in both paths, so the ratio grows with the analog
share; ``--analog-share 1 --mappings 2 --name oracle_all_analog`` measures its upper end.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.common import RESULTS_DIR, write_result
from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from workloads.registry import NetworkSpec
from common.runtime import use_fast_malloc
from common.units import DAY_S, HOUR_S, YEAR_S

TIMES = {"1 hour": HOUR_S, "1 day": DAY_S, "1 year": YEAR_S}
TARGET_RATIO, TARGET_DIFF = 10.0, 0.3
STACKED_CHIPS = 8


def random_mappings(capable: np.ndarray, count: int, rng: np.random.Generator,
                    share: float = 0.5) -> list[np.ndarray]:
    mappings = []
    while len(mappings) < count:
        mapping = (rng.random(len(capable)) < share) & capable
        if mapping.any():
            mappings.append(mapping)
    return mappings


def bench_network(name: str, mappings_per_t: int, images: int, seeds: tuple[int, ...],
                  share: float = 0.5) -> dict:
    noise = NoiseConfig(name="lionheart")
    oracle = AccuracyOracle(NetworkSpec.zoo(name), noise, images=images, seeds=seeds)
    capable = np.array([layer.analog_capable for layer in oracle.table.layers])
    rng = np.random.default_rng(0)
    rows = []
    cold_fast_s = []
    for label, t_s in TIMES.items():
        mappings = random_mappings(capable, mappings_per_t, rng, share)
        bar = tqdm(mappings, desc=f"{name} @ {label}", leave=False)
        for mapping in bar:
            analog = [int(i) for i in np.flatnonzero(mapping)]
            start = time.perf_counter()
            for seed in seeds:  # program + drift each layer once per path; later evaluations reuse them
                for i in analog:
                    oracle.reference_layer(i, seed, t_s)
            reference_programming_s = time.perf_counter() - start
            start = time.perf_counter()
            for seed in seeds:
                for i in analog:
                    oracle.layer_state(i, seed, t_s)
            programming_s = time.perf_counter() - start
            start = time.perf_counter()
            reference = oracle.evaluate(mapping, t_s, method="reference")
            reference_s = time.perf_counter() - start
            start = time.perf_counter()
            fast = oracle.evaluate(mapping, t_s, method="fast")
            fast_s = time.perf_counter() - start
            start = time.perf_counter()
            weights = oracle.evaluate(mapping, t_s, method="weights")
            weights_s = time.perf_counter() - start
            cold_fast_s.append(programming_s + fast_s)
            rows.append({"t": label, "analog_layers": int(mapping.sum()), "reference": reference.mean,
                         "fast": fast.mean, "reference_drop": reference.drop, "fast_drop": fast.drop,
                         "weights": weights.mean, "weights_s": weights_s,
                         "reference_s": reference_s, "fast_s": fast_s, "programming_s": programming_s,
                         "reference_programming_s": reference_programming_s,
                         "fast_cold_s": programming_s + fast_s})
            bar.set_postfix(mean_abs_diff=f"{np.mean([abs(r['reference'] - r['fast']) for r in rows]):.3f}",
                            ratio=f"{sum(r['reference_s'] for r in rows) / sum(r['fast_s'] for r in rows):.1f}x")
    diffs = np.array([abs(r["reference"] - r["fast"]) for r in rows])
    per_t = {label: float(np.mean([abs(r["reference"] - r["fast"]) for r in rows if r["t"] == label]))
             for label in TIMES}
    reference_s = float(np.mean([r["reference_s"] for r in rows]))
    fast_s = float(np.mean([r["fast_s"] for r in rows]))
    # Cache hit cost: store every fast result, then answer them from a fresh connection.
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.sqlite"
        writer = AccuracyOracle(NetworkSpec.zoo(name), noise, images=images, seeds=seeds, cache=ResultCache(path),
                                data=oracle.data)
        probe = random_mappings(capable, 20, np.random.default_rng(1))
        for mapping in probe:
            writer.cache.put("accuracy", writer._key(mapping, HOUR_S, "fast"), {"per_seed": [50.0] * len(seeds)})
        reader = AccuracyOracle(NetworkSpec.zoo(name), noise, images=images, seeds=seeds, cache=ResultCache(path),
                                data=oracle.data)
        reader.baseline()
        start = time.perf_counter()
        for mapping in probe:
            reader.evaluate(mapping, HOUR_S)
        hit_s = (time.perf_counter() - start) / len(probe)
        assert reader.cache.hits >= len(probe)
    chips = bench_stacked_chips(oracle, capable, np.random.default_rng(2), share, reference_s / len(seeds))
    return {
        "network": name, "layers": len(capable), "images": images, "seeds": list(seeds), "analog_share": share,
        "stacked_chips": chips,
        "baseline": oracle.baseline(), "evaluations": len(rows),
        "mean_abs_diff_points": float(diffs.mean()), "max_abs_diff_points": float(diffs.max()),
        "mean_abs_diff_by_t": per_t,
        "mean_reference_drop": float(np.mean([r["reference_drop"] for r in rows])),
        "reference_s_per_eval": reference_s, "fast_s_per_eval_warm": fast_s,
        "fast_s_per_eval_cold": float(np.mean(cold_fast_s)),
        "programming_s_per_eval": float(np.mean([r["programming_s"] for r in rows])),
        "speedup_warm": reference_s / fast_s,
        "weights_only": {"mean_abs_diff_points": float(np.mean([abs(r["reference"] - r["weights"]) for r in rows])),
                         "max_abs_diff_points": float(np.max([abs(r["reference"] - r["weights"]) for r in rows])),
                         "s_per_eval": float(np.mean([r["weights_s"] for r in rows])),
                         "speedup_warm": reference_s / float(np.mean([r["weights_s"] for r in rows]))},
        "speedup_cold": float(np.mean([r["reference_s"] + r["reference_programming_s"] for r in rows])
                              / np.mean(cold_fast_s)),
        "cache_hit_s": hit_s, "rows": rows,
    }


def bench_stacked_chips(oracle: AccuracyOracle, capable: np.ndarray, rng: np.random.Generator, share: float,
                        reference_s_per_chip: float, chips: int = STACKED_CHIPS, count: int = 4) -> dict:
    """Per-chip cost of the fast path with ``chips`` chips stacked in one pass (what a population
    statement pays), against one pass per chip and the reference's per-chip cost measured above."""
    seeds = tuple(range(100, 100 + chips))
    stacked, alone = [], []
    for mapping in tqdm(random_mappings(capable, count, rng, share), desc=f"{oracle.spec.name}: {chips} chips",
                        leave=False):
        for seed in seeds:
            for i in np.flatnonzero(mapping):
                oracle.layer_state(int(i), seed, DAY_S)
        start = time.perf_counter()
        together = oracle.compute_per_seed(mapping, DAY_S, "fast", seeds)
        stacked.append((time.perf_counter() - start) / chips)
        start = time.perf_counter()
        separately = tuple(oracle.compute_per_seed(mapping, DAY_S, "fast", (seed,))[0] for seed in seeds)
        alone.append((time.perf_counter() - start) / chips)
        assert together == separately, "stacked chips must equal chips one pass each"
    stacked_s, alone_s = float(np.mean(stacked)), float(np.mean(alone))
    return {"chips": chips, "mappings": count, "stacked_s_per_chip": stacked_s, "one_pass_each_s_per_chip": alone_s,
            "stacking_speedup": alone_s / stacked_s, "reference_s_per_chip": reference_s_per_chip,
            "speedup_per_chip_vs_reference": reference_s_per_chip / stacked_s}


def summarise(results: list[dict]) -> dict:
    all_diffs = [abs(r["reference"] - r["fast"]) for result in results for r in result["rows"]]
    summary = {
        "mean_abs_diff_points": float(np.mean(all_diffs)), "target_diff_points": TARGET_DIFF,
        "diff_target_met": float(np.mean(all_diffs)) <= TARGET_DIFF,
        "speedup_warm": float(np.mean([r["speedup_warm"] for r in results])),
        "speedup_cold": float(np.mean([r["speedup_cold"] for r in results])),
        "target_speedup": TARGET_RATIO, "networks": [r["network"] for r in results],
    }
    summary["speedup_target_met"] = summary["speedup_warm"] >= TARGET_RATIO
    if all("stacked_chips" in r for r in results):
        per_chip = {r["network"]: r["stacked_chips"]["speedup_per_chip_vs_reference"] for r in results}
        summary["stacked_chips"] = {"speedup_per_chip_vs_reference": per_chip,
                                    "target_met": min(per_chip.values()) >= TARGET_RATIO,
                                    "stacking_speedup": {r["network"]: r["stacked_chips"]["stacking_speedup"]
                                                         for r in results}}
    if all("weights_only" in r for r in results):
        weights_diffs = [abs(r["reference"] - r["weights"]) for result in results for r in result["rows"]]
        summary["weights_only"] = {"mean_abs_diff_points": float(np.mean(weights_diffs)),
                                   "speedup_warm": float(np.mean([r["weights_only"]["speedup_warm"] for r in results]))}
    return summary


def merged(previous_path: Path, fresh: list[dict]) -> list[dict]:
    """Earlier results for other networks measured with the same protocol, then the fresh ones:
    each network is written as soon as it is done, and a later run adds to them."""
    if not previous_path.is_file():
        return fresh
    try:
        previous = json.loads(previous_path.read_text())["networks"]
    except (ValueError, KeyError):
        return fresh
    def protocol(r: dict) -> tuple:
        return r["images"], tuple(r["seeds"]), r["evaluations"], r.get("analog_share", 0.5)

    protocols = {protocol(r) for r in fresh}
    names = {r["network"] for r in fresh}
    kept = [r for r in previous if r["network"] not in names and protocol(r) in protocols]
    return kept + fresh


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=["lenet5", "resnet8", "mobilenetv2", "vgg11"])
    parser.add_argument("--mappings", type=int, default=30, help="random mappings per drift time")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--analog-share", type=float, default=0.5,
                        help="probability that a capable layer is analog in a random mapping (1 = all analog)")
    parser.add_argument("--name", default="oracle", help="result name: bench/results/<name>.json")
    parser.add_argument("--fresh", action="store_true",
                        help="forget earlier results in bench/results/oracle.json instead of adding to them")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    fresh: list[dict] = []
    for name in args.networks:
        fresh.append(bench_network(name, args.mappings, args.images, tuple(range(args.seeds)), args.analog_share))
        results = fresh if args.fresh else merged(RESULTS_DIR / f"{args.name}.json", fresh)
        path = write_result(args.name, {"summary": summarise(results), "networks": results})
    summary = summarise(results)
    print(f"{'network':10s} {'evals':>5s} {'mean|diff|':>10s} {'max|diff|':>9s} {'ref s':>7s} {'fast s':>7s} "
          f"{'cold s':>7s} {'warm x':>7s} {'cold x':>7s} {'hit ms':>7s}")
    for r in results:
        print(f"{r['network']:10s} {r['evaluations']:5d} {r['mean_abs_diff_points']:10.3f} {r['max_abs_diff_points']:9.2f} "
              f"{r['reference_s_per_eval']:7.2f} {r['fast_s_per_eval_warm']:7.3f} {r['fast_s_per_eval_cold']:7.2f} "
              f"{r['speedup_warm']:7.1f} {r['speedup_cold']:7.1f} {r['cache_hit_s'] * 1e3:7.2f}")
    print(f"overall: mean |diff| {summary['mean_abs_diff_points']:.3f} points (target <= {TARGET_DIFF}: "
          f"{'met' if summary['diff_target_met'] else 'NOT met'}); fast path {summary['speedup_warm']:.1f}x warm "
          f"(target >= {TARGET_RATIO:.0f}x: {'met' if summary['speedup_target_met'] else 'NOT met'}), "
          f"{summary['speedup_cold']:.1f}x cold")
    if "stacked_chips" in summary:
        c = summary["stacked_chips"]
        print(f"{STACKED_CHIPS} chips stacked in one pass, per chip: " + ", ".join(
            f"{n} {x:.1f}x the reference (stacking {c['stacking_speedup'][n]:.2f}x one pass each)"
            for n, x in c["speedup_per_chip_vs_reference"].items())
            + f" (target >= {TARGET_RATIO:.0f}x: {'met' if c['target_met'] else 'NOT met'})")
    if "weights_only" in summary:
        w = summary["weights_only"]
        print(f"weights only (method='weights', no I/O non-idealities): mean |diff| {w['mean_abs_diff_points']:.3f} "
              f"points, {w['speedup_warm']:.1f}x faster than the reference")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    use_fast_malloc()
    raise SystemExit(main())
