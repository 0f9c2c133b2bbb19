"""What the assumed hardware constants do to the conclusions.

    python -m bench.bench_assumptions                       # every "(assumption)" of alpine_like
    python -m bench.bench_assumptions --networks resnet8 vgg11 --factors 0.5 2

Every value of ``conf/hw/<preset>.yaml`` whose comment says "(assumption)" (no source fixes it)
is scaled by each factor (0.5x and 2x by default), one at a time, and every network of
``conf/train.yaml`` (training and held-out) is mapped at t = 1 day and 1 year and thresholds 1,
2 and 5 points by the methods that need no exact evaluation (knapsack, random, all-analog) and by
the committed policy's proposal at the nominal threshold (``policies/default.zip``; one masked
rollout). Feasibility is the surrogate's predicted drop (no exact evaluation: only the cost model
changes between variants, and the same accuracy model judges every variant); an infeasible
mapping counts as all-digital (objective 0, speedup 1). Per variant: each method's mean
objective (ln speedup + 0.5 ln energy gain, the environment's), the ranking of methods by it,
and the policy's lead (mean objective minus the best other method's, and the geometric mean of
its speedup over the best other's per point). A conclusion changes when the ranking or the sign
of the lead differs from the preset as written. The same policy zero-shot on ``hermes_like``
(another system it was never trained on) is one more row. JSON in
``bench/results/assumptions.json``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import re
from typing import Any

import numpy as np

from bench.common import objective, write_result
from common.paths import CONF_DIR
from common.presets import entry_config, load_preset
from common.units import DAY_S, YEAR_S

TIMES = {"1 day": DAY_S, "1 year": YEAR_S}
THRESHOLDS = (1.0, 2.0, 5.0)
METHODS = ("knapsack", "random", "all_analog")


def assumed_constants(preset: str) -> list[tuple[str, str]]:
    """(section, key) of every non-zero value whose line in ``conf/hw/<preset>.yaml`` says "(assumption)"."""
    import yaml

    path = CONF_DIR / "hw" / f"{preset}.yaml"
    values = yaml.safe_load(path.read_text())
    found, section = [], None
    for line in path.read_text().splitlines():
        top = re.match(r"^([a-z_]+):\s*(#.*)?$", line)
        if top:
            section = top.group(1)
            continue
        entry = re.match(r"^\s+([a-z_]+):\s*([^#\s]+)\s*#.*\(assumption\)", line)
        if entry and section and float(values[section][entry.group(1)]) != 0.0:
            found.append((section, entry.group(1)))
    return found


def scaled(description: dict[str, Any], section: str, key: str, factor: float) -> dict[str, Any]:
    out = copy.deepcopy(description)
    value = out[section][key] * factor
    out[section][key] = max(1, int(round(value))) if isinstance(description[section][key], int) else value
    out["name"] = f"{description['name']} {section}.{key} x{factor:g}"
    return out


def map_points(tasks: dict[str, Any], mapper) -> list[dict[str, Any]]:
    """Rows (network, t, threshold, method, speedup, energy_gain, feasible, objective) of every method."""
    from agents.methods import make_methods

    rows = []
    for name, task in tasks.items():
        for label, t_s in TIMES.items():
            for threshold in THRESHOLDS:
                proposals = [mapper.propose(task, t_s, threshold)]
                proposals += [m.propose(task, t_s, threshold) for m in make_methods(task, None, list(METHODS))]
                for proposal in proposals:
                    mapping = np.asarray(proposal.mapping, bool)
                    cost = task.cost.evaluate(mapping)
                    feasible = bool(cost.feasible and (not mapping.any() or task.drop(mapping, t_s) <= threshold))
                    speedup, gain = (cost.speedup, cost.energy_gain) if feasible else (1.0, 1.0)
                    rows.append({"network": name, "t": label, "threshold": threshold, "method": proposal.method,
                                 "speedup": speedup, "energy_gain": gain, "feasible": feasible,
                                 "objective": objective({"speedup": speedup, "energy_gain": gain})})
    return rows


def conclusions(rows: list[dict[str, Any]]) -> dict[str, Any]:
    methods = list(dict.fromkeys(r["method"] for r in rows))
    mean = {m: float(np.mean([r["objective"] for r in rows if r["method"] == m])) for m in methods}
    points: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        points.setdefault((r["network"], r["t"], r["threshold"]), {})[r["method"]] = r
    lead = [p["ppo"]["objective"] - max(r["objective"] for m, r in p.items() if m != "ppo") for p in points.values()]
    ratio = [p["ppo"]["speedup"] / max(r["speedup"] for m, r in p.items() if m != "ppo") for p in points.values()]
    return {"mean_objective": mean, "ranking": sorted(methods, key=lambda m: -mean[m]),
            "ppo_lead_mean": float(np.mean(lead)), "ppo_over_best_other_geomean": float(np.exp(np.mean(np.log(ratio)))),
            "ppo_at_least_best_other_rate": float(np.mean(np.array(lead) >= -1e-9)),
            "feasible_rate": {m: float(np.mean([r["feasible"] for r in rows if r["method"] == m])) for m in methods}}


def main(argv: list[str] | None = None) -> int:
    from agents.policy_file import load_policy
    from agents.ppo import PolicyMapper
    from envs.tasks import build_task
    from hw_model.cost import NetworkCost
    from hw_model.system import load_system

    train = entry_config("train")["train"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(train["networks"]) + list(train["holdout"]))
    parser.add_argument("--hw", default="alpine_like", help="the preset whose assumptions are scaled")
    parser.add_argument("--other-hw", default="hermes_like", help="a second system, for the policy zero-shot")
    parser.add_argument("--factors", nargs="+", type=float, default=[0.5, 2.0])
    parser.add_argument("--policy", default="policies/default.zip")
    parser.add_argument("--profile", choices=("cheap", "exact"), default=load_preset("env", "default")["profile"],
                        help="the sensitivity the policy and the knapsack observe (default: env.profile); the "
                             "drops that judge every mapping are the exact artifact's surrogate either way")
    args = parser.parse_args(argv)

    mapper = PolicyMapper(load_policy(args.policy))
    base = {name: build_task(name, hw=args.hw, progress=False, allow_build=False, profile=args.profile)
            for name in args.networks}
    description = load_preset("hw", args.hw)

    def on(system_description) -> dict[str, Any]:
        system = load_system(system_description)
        return {name: dataclasses.replace(task, cost=NetworkCost(task.cost.table, system))
                for name, task in base.items()}

    nominal = conclusions(map_points(base, mapper))
    print(f"{args.hw} as written: ranking {' > '.join(nominal['ranking'])}, ppo lead {nominal['ppo_lead_mean']:+.3f}, "
          f"ppo / best other speedup geomean {nominal['ppo_over_best_other_geomean']:.3f}")
    variants = []
    for section, key in assumed_constants(args.hw):
        for factor in args.factors:
            found = conclusions(map_points(on(scaled(description, section, key, factor)), mapper))
            changed = {"ranking": found["ranking"] != nominal["ranking"],
                       "lead_sign": (found["ppo_lead_mean"] >= -1e-9) != (nominal["ppo_lead_mean"] >= -1e-9)}
            variants.append({"constant": f"{section}.{key}", "value": description[section][key], "factor": factor,
                             **found, "changed": changed})
            print(f"{section}.{key} x{factor:g}: ranking {' > '.join(found['ranking'])}"
                  f"{' (CHANGED)' if changed['ranking'] else ''}, ppo lead {found['ppo_lead_mean']:+.3f}"
                  f"{' (SIGN CHANGED)' if changed['lead_sign'] else ''}, ppo / best other "
                  f"{found['ppo_over_best_other_geomean']:.3f}", flush=True)
    other_tasks = {name: dataclasses.replace(task, cost=NetworkCost(task.cost.table, load_system(args.other_hw)))
                   for name, task in base.items()}
    other = conclusions(map_points(other_tasks, mapper))
    print(f"{args.other_hw} (policy zero-shot): ranking {' > '.join(other['ranking'])}, ppo lead "
          f"{other['ppo_lead_mean']:+.3f}, ppo / best other {other['ppo_over_best_other_geomean']:.3f}")
    summary = {"constants": len({v["constant"] for v in variants}), "variants": len(variants),
               "ranking_changed": [f"{v['constant']} x{v['factor']:g}" for v in variants if v["changed"]["ranking"]],
               "lead_sign_changed": [f"{v['constant']} x{v['factor']:g}" for v in variants
                                     if v["changed"]["lead_sign"]]}
    path = write_result("assumptions", {
        "hw": args.hw, "networks": args.networks, "factors": args.factors, "policy": args.policy,
        "feasibility": "surrogate predicted drop <= threshold (no exact evaluation); infeasible = all-digital",
        "nominal": nominal, "variants": variants, "other_hw": {"name": args.other_hw, **other}, "summary": summary})
    print(f"ranking changed under: {summary['ranking_changed'] or 'none'}; policy lead changed sign under: "
          f"{summary['lead_sign_changed'] or 'none'}; wrote {path}")
    return 0


if __name__ == "__main__":
    from common.runtime import use_fast_malloc

    use_fast_malloc()
    raise SystemExit(main())
