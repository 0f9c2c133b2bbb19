"""A trained policy against the LionHeart greedy baseline, at equal verified feasibility.

    python -m bench.bench_vs_greedy --policy outputs/train/<run>/best_model.zip [--networks ...]

For each network x t x threshold: the policy's mapping (one masked rollout, then exact
verification and repair), the greedy mapping (exact evaluations by construction). Both are
feasible on the validation split by construction; reported: speedup, energy gain, drop and exact
evaluations of each, and the policy's speedup relative to greedy. JSON in
bench/results/vs_greedy.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sb3_contrib import MaskablePPO

from agents.baselines import LionHeartGreedy
from agents.ppo import PolicyMapper
from agents.verify import exact_verifier, verify_and_repair
from bench.common import write_result
from envs.tasks import build_task

TIMES = {"1 day": 86_400.0, "1 year": 365 * 86_400.0}
THRESHOLDS = (1.0, 2.0, 5.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", required=True, help="a saved MaskablePPO .zip")
    parser.add_argument("--networks", nargs="+", default=["lenet5", "mlp", "vgg11", "resnet20", "vit"])
    parser.add_argument("--hw", default="alpine_like")
    args = parser.parse_args(argv)
    mapper = PolicyMapper(MaskablePPO.load(args.policy, device="cpu"))
    rows = []
    for name in args.networks:
        task = build_task(name, hw=args.hw)
        verifier = exact_verifier(name, hw=args.hw)
        greedy = LionHeartGreedy(verifier)
        for label, t_s in TIMES.items():
            for threshold in THRESHOLDS:
                start = time.perf_counter()
                proposal = mapper.propose(task, t_s, threshold)
                policy = verify_and_repair(task, proposal.mapping, t_s, threshold, verifier)
                policy_s = time.perf_counter() - start
                start = time.perf_counter()
                lionheart = greedy.propose(task, t_s, threshold)
                greedy_drop = verifier(lionheart.mapping, t_s)
                greedy_s = time.perf_counter() - start
                p_cost, g_cost = task.cost.evaluate(policy.mapping), task.cost.evaluate(lionheart.mapping)
                rows.append({"network": name, "t": label, "threshold": threshold,
                             "policy_speedup": p_cost.speedup, "policy_energy_gain": p_cost.energy_gain,
                             "policy_drop": policy.drop, "policy_repaired_layers": policy.repaired_layers,
                             "policy_exact_evaluations": policy.exact_evaluations, "policy_s": policy_s,
                             "greedy_speedup": g_cost.speedup, "greedy_energy_gain": g_cost.energy_gain,
                             "greedy_drop": greedy_drop, "greedy_exact_evaluations": lionheart.exact_evaluations,
                             "greedy_s": greedy_s, "ratio": p_cost.speedup / g_cost.speedup})
                print(f"{name:10s} {label:6s} thr {threshold:3.1f}: policy {p_cost.speedup:5.2f}x "
                      f"(drop {policy.drop:5.2f}, {policy.exact_evaluations} evals, {policy.repaired_layers} repaired) "
                      f"| greedy {g_cost.speedup:5.2f}x (drop {greedy_drop:5.2f}, {lionheart.exact_evaluations} evals)",
                      flush=True)
    ratios = np.array([r["ratio"] for r in rows])
    summary = {"points": len(rows), "mean_ratio": float(ratios.mean()), "min_ratio": float(ratios.min()),
               "policy_at_least_greedy": float(np.mean(ratios >= 1 - 1e-9)),
               "policy_exact_evaluations": int(sum(r["policy_exact_evaluations"] for r in rows)),
               "greedy_exact_evaluations": int(sum(r["greedy_exact_evaluations"] for r in rows))}
    path = write_result("vs_greedy", {"policy": args.policy, "hw": args.hw, "summary": summary, "rows": rows})
    print(f"policy / greedy speedup: mean {summary['mean_ratio']:.3f}, min {summary['min_ratio']:.3f}; policy >= greedy "
          f"on {100 * summary['policy_at_least_greedy']:.0f}% of points; exact evaluations: policy "
          f"{summary['policy_exact_evaluations']}, greedy {summary['greedy_exact_evaluations']}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from workloads.runtime import use_fast_malloc

    use_fast_malloc()
    raise SystemExit(main())
