"""Markdown summaries of the benchmark results in bench/results/ (for the README).

    python -m bench.summarize             # one row per benchmark, against its target
    python -m bench.summarize --compare   # the mapping comparison, one row per network
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np

from bench.common import RESULTS_DIR

# Reads JSON only: it imports neither torch, gymnasium nor aihwkit (tests/test_layout.py checks).


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def compare_table(compare: dict) -> str:
    """Per network: mean speedup of each method over the (t, threshold) points ("n X": n mappings
    not certified feasible, "n !": n emitted as feasible that fail on the fresh test chips), the
    best certified speedup any method found, PPO against greedy, cost-aware greedy and the best
    known (geometric mean of the per-point ratio of deployable speedups, worst point), how often
    PPO is at least every same-budget proposer, hold rates out of sample, and the total cost of
    mapping the network at every point in standard exact-evaluation equivalents (one-time
    sensitivity work, the searches' evaluations and certification; ``bench_compare.total_cost``)
    and the points after which PPO has cost less than greedy in all ("-": never)."""
    points = defaultdict(lambda: defaultdict(dict))
    for r in compare["rows"]:
        points[r["network"]][(r["t"], r["threshold"])][r["method"]] = r
    labels = compare["methods"]  # method -> column label, in the registry's order (bench_compare)
    per_network = compare["summary"].get("networks", {})
    lines = ["| network | " + " | ".join(labels.values()) + " | best known | "
             "PPO / greedy | PPO / cost-aware | PPO / best: geomean (min) | PPO >= same budget | "
             "holds out of sample: PPO / greedy | cost, eval. equivalents: PPO / greedy | break-even points |",
             "| --- |" + " ---: |" * (len(labels) + 8)]

    def number(value, digits: int = 3) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    for network, by_point in points.items():
        first = next(iter(by_point.values()))
        cells = []
        for method in labels:
            rows = [p[method] for p in by_point.values() if method in p]
            if not rows:
                cells.append("-")
                continue
            infeasible = sum(not r["feasible"] for r in rows)
            failing = sum(r["feasible"] and not r["holds_on_test"] for r in rows)
            marks = ", ".join(part for part in (f"{infeasible} X" if infeasible else "",
                                                f"{failing} !" if failing else "") if part)
            cells.append(f"{np.mean([r['speedup'] for r in rows]):.2f}x" + (f" ({marks})" if marks else ""))
        best = [max(r["speedup"] for r in p.values() if r["feasible"]) for p in by_point.values()]
        s = per_network.get(network, {})
        rate = s.get("ppo_ge_same_budget_rate")
        cost = s.get("total_cost", {})

        def holds(method: str) -> str:
            emitted = [p[method] for p in by_point.values() if method in p and p[method]["feasible"]]
            return f"{sum(r['holds_on_test'] for r in emitted)}/{len(emitted)}"

        def equivalents(method: str) -> str:
            return f"{cost[method]['eval_equivalents']:.0f}" if method in cost else "-"

        label = f"`{network}`" + ("" if first["ppo"]["training"] else " (held out)")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {np.mean(best):.2f}x | "
                     f"{number(s.get('ppo_over_greedy_geomean'))} | {number(s.get('ppo_over_costaware_geomean'))} | "
                     f"{number(s.get('ppo_over_best_geomean'))} ({number(s.get('ppo_over_best_min'))}) | "
                     f"{'-' if rate is None else f'{100 * rate:.0f}%'} | {holds('ppo')} / {holds('lionheart_greedy')} | "
                     f"{equivalents('ppo')} / {equivalents('lionheart_greedy')} | "
                     f"{number(s.get('break_even_points_vs_greedy'), 1)} |")
    return "\n".join(lines)


def sensitivity_table(doc: dict) -> str:
    """Per network: Spearman rank correlation of each estimator's calibrated cheap profile with the
    exact profile at 1 day / 1 year, the exact profile against itself on 2 other chips (how much of
    it is the chips), the default estimator against the 4-chip test-split report of
    ``cli.sensitivity`` where one is committed, and the default estimator's cost (seconds,
    exact-evaluation equivalents) beside the exact profile's evaluations."""
    from accuracy.cheap_sensitivity import ESTIMATORS

    default = doc["default_estimator"]

    def pair(cells: dict) -> str:
        return " / ".join("-" if c["spearman"] is None else f"{c['spearman']:.2f}" for c in cells.values())

    lines = ["| network | capable layers | " + " | ".join(f"`{e}`" + (" (default)" if e == default else "")
                                                  for e in ESTIMATORS)
             + " | exact on 2 other chips | default vs the 4-chip test-split report | cost: seconds | "
               "exact-evaluation equivalents | exact profile evaluations |",
             "| --- |" + " ---: |" * (len(ESTIMATORS) + 6)]
    for n in sorted(doc["networks"], key=lambda n: (n["role"] != "training", n["network"])):
        ceiling = n.get("ceiling", {}).get("exact_other_chips_vs_exact")
        cost = n.get("cost", {})
        lines.append(f"| `{n['network']}`{'' if n['role'] == 'training' else ' (held out)'} | {n['capable_layers']} | "
                     + " | ".join(pair(n["agreement"][e]) for e in ESTIMATORS)
                     + f" | {pair(ceiling) if ceiling else '-'} | "
                     + (f"{pair(n['test_profile'][default])} | " if n.get("test_profile") else "- | ")
                     + (f"{cost['cheap_seconds']:.1f} | {cost['exact_evaluation_equivalents']:.1f} | "
                        f"{cost['exact_profile_evaluations']} |" if cost else "- | - | - |"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", action="store_true", help="the per-network mapping comparison table")
    parser.add_argument("--sensitivity", action="store_true", help="the cheap sensitivity estimate's agreement and cost")
    args = parser.parse_args(argv)
    if args.sensitivity:
        doc = load("sensitivity")
        print(sensitivity_table(doc) if doc else "(run `python -m bench.bench_sensitivity` first)")
        return 0
    if args.compare:
        compare = load("compare")
        print(compare_table(compare) if compare else "(run `python -m bench.bench_compare --policy ...` first)")
        return 0
    lines = ["| benchmark | measured | target |", "| --- | --- | --- |"]
    cost = load("cost")
    if cost:
        lines.append(f"| cost model, ResNet-20 (`bench.bench_cost`) | {cost['precomputed_per_s']:,} mappings/s single, "
                     f"{cost['batch_per_s']:,}/s batched ({cost['precomputed_over_naive']}x naive recomputation) | >= 10,000/s |")
    for name, invocation in (("oracle", "`bench.bench_oracle`"),
                             ("oracle_stacked", "`bench.bench_oracle --mappings 2 --name oracle_stacked`")):
        oracle = load(name)
        if not oracle:
            continue
        s = oracle["summary"]
        nets = ", ".join(f"{n['network']} {n['mean_abs_diff_points']:.2f} / {n['speedup_warm']:.1f}x"
                         for n in oracle["networks"])
        count = sum(n["evaluations"] for n in oracle["networks"])
        lines.append(f"| oracle fast vs reference ({invocation}), {count} paired evaluations | mean abs accuracy "
                     f"difference {s['mean_abs_diff_points']:.3f} points; {s['speedup_warm']:.1f}x faster with device "
                     f"states programmed ({s['speedup_cold']:.1f}x including programming); per network (diff / speed-up): "
                     f"{nets}; cache hit {1e3 * oracle['networks'][0]['cache_hit_s']:.2f} ms"
                     + (f"; weights only (no I/O non-idealities): {s['weights_only']['mean_abs_diff_points']:.3f} "
                        f"points, {s['weights_only']['speedup_warm']:.1f}x" if "weights_only" in s else "")
                     + " | <= 0.3 points, >= 10x |")
        if "stacked_chips" in s:
            c = s["stacked_chips"]
            per_chip = ", ".join(f"{n} {x:.1f}x" for n, x in c["speedup_per_chip_vs_reference"].items())
            stacking = ", ".join(f"{n} {x:.2f}x" for n, x in c["stacking_speedup"].items())
            lines.append(f"| oracle, 8 chips stacked in one pass ({invocation}, `stacked_chips`) | per-chip cost "
                         f"of the fast path below the reference's: {per_chip}; stacking vs one pass per chip: "
                         f"{stacking} | >= 10x per chip |")
    upper = load("oracle_all_analog")
    if upper:
        s = upper["summary"]
        nets = ", ".join(f"{n['network']} {n['mean_abs_diff_points']:.2f} / {n['speedup_warm']:.1f}x"
                         for n in upper["networks"])
        lines.append(f"| oracle fast vs reference, all layers analog (`bench.bench_oracle --analog-share 1`), "
                     f"{sum(n['evaluations'] for n in upper['networks'])} paired evaluations | mean abs accuracy "
                     f"difference {s['mean_abs_diff_points']:.3f} points; {s['speedup_warm']:.1f}x faster; per network "
                     f"(diff / speed-up): {nets} | (the upper end of the ratio; layers left digital cost both paths "
                     "the same) |")
    surrogate = load("surrogate")
    if surrogate:
        for model, s in surrogate["summary"].items():
            lines.append(f"| surrogate `{model}` (`bench.bench_surrogate`), {len(surrogate['networks'])} networks | "
                         f"mean MAE {s['mean_mae']:.3f}, worst {s['worst_mae']:.3f} points; worst feasibility "
                         f"agreement {100 * s['worst_agreement']:.0f}% | MAE <= 0.5, agreement >= 95% |")
    sensitivity = load("sensitivity")
    if sensitivity and all("cost" in n for n in sensitivity["networks"]):
        default = sensitivity["default_estimator"]
        cells = []
        for n in sorted(sensitivity["networks"], key=lambda n: (n["role"] != "training", n["network"])):
            rho = [c["spearman"] for c in n["agreement"][default].values()]
            ceiling = [c["spearman"] for c in n.get("ceiling", {}).get("exact_other_chips_vs_exact", {}).values()]
            cells.append(f"{n['network']}{'' if n['role'] == 'training' else '*'} "
                         + "/".join("-" if r is None else f"{r:.2f}" for r in rho)
                         + (f" [{'/'.join('-' if r is None else f'{r:.2f}' for r in ceiling)}]" if ceiling else "")
                         + f", {n['cost']['exact_evaluation_equivalents']:.1f} eq.")
        lines.append(f"| cheap sensitivity estimate `{default}` vs the exact profile (`bench.bench_sensitivity`), "
                     f"Spearman at 1 day / 1 year [the exact profile on 2 other chips vs itself], cost in exact-"
                     f"evaluation equivalents; * held out of the calibration | {'; '.join(cells)} | Spearman >= 0.9 "
                     "each |")
    assumptions = load("assumptions")
    if assumptions:
        a, n = assumptions["summary"], assumptions["nominal"]
        other = assumptions["other_hw"]
        lines.append(f"| assumed hardware constants x{' / x'.join(f'{f:g}' for f in assumptions['factors'])}, one at a "
                     f"time (`bench.bench_assumptions`), {a['constants']} constants, {len(assumptions['networks'])} "
                     f"networks, surrogate-judged | as written: {' > '.join(n['ranking'])} (PPO lead "
                     f"{n['ppo_lead_mean']:+.3f} in objective); ranking changes under "
                     f"{', '.join(a['ranking_changed']) or 'none'}; PPO's lead changes sign under "
                     f"{', '.join(a['lead_sign_changed']) or 'none'}; {other['name']} zero-shot: "
                     f"{' > '.join(other['ranking'])} (lead {other['ppo_lead_mean']:+.3f}) | conclusions stated per constant |")
    compare = load("compare")
    if compare:
        for group, c in compare["summary"].items():
            if group == "networks" or "ppo_over_greedy_min" not in c or c["ppo_over_greedy_min"] is None:
                continue
            evals = c["exact_evaluations_mean"]
            holds = c.get("out_of_sample_hold_rate", {})
            hold_text = ", ".join(f"{compare['methods'].get(m, m)} {100 * v:.0f}%" for m, v in holds.items()
                                  if v is not None)
            chips = c.get("certification_chip_passes_mean", {})
            lines.append(f"| mapping comparison, {group.replace('_', '-')} networks (`bench.bench_compare`), "
                         f"{c['points']} (network, t, threshold) points | PPO certified feasible "
                         f"{100 * c['ppo_feasible_rate']:.0f}%; PPO/greedy speedup geomean "
                         f"{c.get('ppo_over_greedy_geomean', c['ppo_over_greedy_mean']):.3f}, "
                         f"min {c['ppo_over_greedy_min']:.3f} (>= greedy on {100 * c['ppo_at_least_greedy_rate']:.0f}%); "
                         f"PPO/best-known geomean {c.get('ppo_over_best_geomean', c['ppo_over_best_mean']):.3f}, "
                         f"min {c['ppo_over_best_min']:.3f}; exact evaluations per mapping PPO {evals['ppo']:.1f}, "
                         f"greedy {evals['lionheart_greedy']:.1f}"
                         + (f"; certification chip passes per mapping PPO {chips['ppo']:.1f}, greedy "
                            f"{chips['lionheart_greedy']:.1f}" if chips else "")
                         + (f"; emitted mappings holding on 8 fresh test chips: {hold_text}" if hold_text else "")
                         + f" | PPO >= greedy everywhere, >= {0.97 if group == 'training' else 0.95} of best, 100% "
                         f"feasible, >= 95% of every method's mappings hold out of sample |")
    backend = load("backend")
    if backend:
        v = backend["variants"]
        plan = backend["plan"]
        lines.append(f"| execution backend, artifact builds of {' + '.join(plan['networks'])} "
                     f"({sum(plan['exact_evaluations'].values())} exact evaluations, `bench.bench_backend`), "
                     f"{backend['cpus']} cores | serial {v['serial_default_threads']['best_total_s']:.1f} s, process pool "
                     f"{v['local']['best_total_s']:.1f} s ({v['local']['speedup_vs_serial']:.2f}x), Ray "
                     f"{v['ray']['best_total_s']:.1f} s ({v['ray']['speedup_vs_serial']:.2f}x, "
                     f"+{v['ray']['ray_startup_s']:.1f} s start-up); serial with one torch thread "
                     f"{v['serial_one_thread']['speedup_vs_serial']:.2f}x; artifacts identical: "
                     f"{'yes' if backend['artifacts_identical'] else 'NO'} | identical results; speed-up grows with cores "
                     "(well under 2x on 2) |")
    for name, when in (("training_threads", "quiet machine"), ("training_threads_busy", "busy machine")):
        threads = load(name)
        if threads:
            best = threads["best_steps_per_s"]
            busy = threads.get("cpu_bound_processes_beside", 0)
            lines.append(f"| training steps/s, one torch thread vs torch's default ({threads['default_threads']}), {when}"
                         + (f" ({busy} CPU-bound processes beside it)" if busy else "")
                         + f" (`bench.bench_training`) | {best['one_thread']:,} vs {best['default_threads']:,} steps/s "
                         f"({threads['one_over_default']:.2f}x) | sets `train.torch_threads` |")
    env = load("env")
    if env:
        lines.append(f"| environment, {env['network']} (`bench.bench_env`) | {env['steps_per_s']['plain']:,} steps/s "
                     f"({env['steps_per_s']['shaping']:,} with shaping) | >= 5,000/s |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
