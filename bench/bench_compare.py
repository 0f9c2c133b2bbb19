"""Mapping methods side by side on the zoo, every mapping verified exactly.

    python -m bench.bench_compare --policy outputs/train/<run>/best_model.zip [--networks ...]

For each network x t in {1 day, 1 year} x threshold in {1, 2, 5} points: the policy (its
verified search over its own proposals with --policy-evaluations exact evaluations, repair if
needed; agents/verify.py) and every default mapping method of the registry (agents/methods.py:
LionHeart greedy, the sensitivity knapsack, the exhaustive optimum up to 14 layers, a random
feasible mapping, all-analog). Training and held-out networks are those of conf/train.yaml. Every mapping
is verified on the validation split with the exact oracle (1,000 images, 2 programming seeds).
Reported per method: verified speedup, energy gain, drop, feasibility, the exact evaluations it
used and its wall time. The summary compares the policy with greedy and with the best verified-
feasible speedup any method found, separately for training and held-out networks. JSON and
Markdown in bench/results/compare.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import numpy as np

from agents.methods import METHODS, make_methods
from agents.verify import ExactVerifier, exact_verifier, policy_search
from bench.common import RESULTS_DIR, objective, write_result
from common.io import atomic_write
from common.presets import entry_config
from common.units import DAY_S, YEAR_S
from envs.tasks import build_task

TIMES = {"1 day": DAY_S, "1 year": YEAR_S}
THRESHOLDS = (1.0, 2.0, 5.0)
TRAINING = tuple(entry_config("train")["train"]["networks"])
ALL = TRAINING + tuple(entry_config("train")["train"]["holdout"])


def compare_network(name: str, mapper, hw: str, policy_evaluations: int = 2,
                    verifier: ExactVerifier | None = None) -> list[dict]:
    """Rows of one network: the policy (``mapper``) and every default registered method."""
    task = build_task(name, hw=hw)
    verifier = verifier or exact_verifier(name, hw=hw)
    rows = []
    for label, t_s in TIMES.items():
        for threshold in THRESHOLDS:
            methods = make_methods(task, verifier)  # fresh per point, as in evaluate.py (seeded methods agree)
            start, before = time.perf_counter(), verifier.evaluations
            fixed = policy_search(mapper, task, t_s, threshold, verifier, evaluations=policy_evaluations)
            found = [("ppo", fixed.mapping, verifier.evaluations - before, time.perf_counter() - start)]
            for method in methods:
                start = time.perf_counter()
                p = method.propose(task, t_s, threshold)
                found.append((method.name, p.mapping, p.exact_evaluations, time.perf_counter() - start))
            for method, mapping, evaluations, wall in found:
                drop = verifier(mapping, t_s) if mapping.any() else 0.0
                cost = task.cost.evaluate(mapping)
                rows.append(with_objective({
                    "network": name, "training": name in TRAINING, "t": label, "threshold": threshold,
                    "method": method, "speedup": cost.speedup, "energy_gain": cost.energy_gain,
                    "drop": drop, "feasible": bool(drop <= threshold and cost.feasible),
                    "exact_evaluations": int(evaluations), "wall_s": round(wall, 3),
                    "analog_layers": int(mapping.sum())}))
            print(f"{name:11s} {label:6s} thr {threshold:3.1f}: " + "  ".join(
                f"{r['method']} {r['speedup']:.2f}x{'' if r['feasible'] else '(X)'}" for r in rows[-len(found):]),
                flush=True)
    return rows


def with_objective(row: dict) -> dict:
    """The row with its value in the environment's objective (so summaries need only the JSON)."""
    return {**row, "objective": objective(row)}


def method_labels(rows: list[dict]) -> dict[str, str]:
    """Display labels of the methods in ``rows``, in the registry's order (the policy first)."""
    present = {r["method"] for r in rows}
    labels = {"ppo": "PPO"} if "ppo" in present else {}
    labels.update({name: entry.label for name, entry in METHODS.items() if name in present})
    labels.update({name: name for name in sorted(present) if name not in labels})
    return labels


def summarise(rows: list[dict]) -> dict:
    by_point = defaultdict(dict)
    for r in rows:
        by_point[(r["network"], r["t"], r["threshold"])][r["method"]] = r
    summary = {}
    for group, training in (("training", True), ("held_out", False)):
        points = [p for p in by_point.values() if p["ppo"]["training"] == training]
        if not points:
            continue
        vs_greedy = [p["ppo"]["speedup"] / p["lionheart_greedy"]["speedup"] for p in points]
        best = [max(r["speedup"] for r in p.values() if r["feasible"]) for p in points]
        vs_best = [p["ppo"]["speedup"] / b for p, b in zip(points, best)]
        objective_vs_greedy = [p["ppo"]["objective"] - p["lionheart_greedy"]["objective"] for p in points]
        best_objective = [max(r["objective"] for r in p.values() if r["feasible"]) for p in points]
        summary[group] = {
            "points": len(points),
            "ppo_feasible_rate": float(np.mean([p["ppo"]["feasible"] for p in points])),
            "ppo_over_greedy_mean": float(np.mean(vs_greedy)), "ppo_over_greedy_min": float(np.min(vs_greedy)),
            "ppo_at_least_greedy_rate": float(np.mean(np.array(vs_greedy) >= 1 - 1e-9)),
            "ppo_over_best_mean": float(np.mean(vs_best)), "ppo_over_best_min": float(np.min(vs_best)),
            "objective_ppo_minus_greedy_mean": float(np.mean(objective_vs_greedy)),
            "objective_ppo_at_least_greedy_rate": float(np.mean(np.array(objective_vs_greedy) >= -1e-9)),
            "objective_ppo_minus_best_mean": float(np.mean([p["ppo"]["objective"] - b
                                                            for p, b in zip(points, best_objective)])),
            "exact_evaluations_mean": {m: float(np.mean([p[m]["exact_evaluations"] for p in points if m in p]))
                                       for m in points[0]},
            "wall_s_mean": {m: float(np.mean([p[m]["wall_s"] for p in points if m in p])) for m in points[0]},
        }
    return summary


def markdown(rows: list[dict]) -> str:
    lines = ["| network | t | threshold | method | speedup | energy gain | verified drop | feasible | exact evals | wall s |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['network']}{'' if r['training'] else ' (held out)'} | {r['t']} | {r['threshold']:g} | "
                     f"{r['method']} | {r['speedup']:.2f}x | {r['energy_gain']:.2f}x | {r['drop']:.2f} | "
                     f"{'yes' if r['feasible'] else 'no'} | {r['exact_evaluations']} | {r['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", help="a saved MaskablePPO .zip (required unless --resummarise)")
    parser.add_argument("--networks", nargs="+", default=list(ALL))
    parser.add_argument("--hw", default="alpine_like")
    parser.add_argument("--policy-evaluations", type=int, default=2,
                        help="exact evaluations the policy's verified search may use (agents/verify.py)")
    parser.add_argument("--resummarise", action="store_true",
                        help="recompute the summary and Markdown of the existing results/compare.json, no mapping")
    args = parser.parse_args(argv)
    if not args.resummarise and not args.policy:
        parser.error("--policy is required (a model .zip saved by train.py)")
    if args.resummarise:
        previous = json.loads((RESULTS_DIR / "compare.json").read_text())
        machine, rows = previous["machine"], previous["rows"]  # the machine that measured the rows
        meta = {k: v for k, v in previous.items() if k not in ("benchmark", "machine", "summary", "rows", "methods")}
    else:
        from sb3_contrib import MaskablePPO

        from agents.ppo import PolicyMapper

        mapper = PolicyMapper(MaskablePPO.load(args.policy, device="cpu"))
        rows = [row for name in args.networks
                for row in compare_network(name, mapper, args.hw, args.policy_evaluations)]
        meta, machine = {"policy": args.policy, "hw": args.hw, "policy_evaluations": args.policy_evaluations}, None
    rows = [with_objective(row) for row in rows]
    meta["methods"] = method_labels(rows)
    summary = summarise(rows)
    path = write_result("compare", {**meta, "summary": summary, "rows": rows}, machine=machine)
    atomic_write(RESULTS_DIR / "compare.md", markdown(rows))
    for group, s in summary.items():
        print(f"{group}: ppo feasible {100 * s['ppo_feasible_rate']:.0f}%, ppo/greedy speedup mean "
              f"{s['ppo_over_greedy_mean']:.3f} (min {s['ppo_over_greedy_min']:.3f}, >= greedy on "
              f"{100 * s['ppo_at_least_greedy_rate']:.0f}%), ppo/best mean {s['ppo_over_best_mean']:.3f} "
              f"(min {s['ppo_over_best_min']:.3f}); objective >= greedy on "
              f"{100 * s['objective_ppo_at_least_greedy_rate']:.0f}%; exact evals per mapping "
              f"{s['exact_evaluations_mean']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from common.runtime import use_fast_malloc

    use_fast_malloc()
    raise SystemExit(main())
