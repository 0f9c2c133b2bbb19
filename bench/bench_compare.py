"""Mapping methods side by side on the zoo, every emitted mapping certified and scored out of sample.

    python -m bench.bench_compare --policy policies/default.zip [--networks ...] [--fresh]

For each network x t in {1 day, 1 year} x threshold in {1, 2, 5} points: the policy (its
verified search over its own proposals with --policy-evaluations exact evaluations, repair if
needed; agents/verify.py) and every default mapping method of the registry (agents/methods.py:
LionHeart greedy, the sensitivity knapsack, the exhaustive optimum up to 14 layers, a random
feasible mapping, all-analog). Training and held-out networks are those of conf/train.yaml.

Every method goes through exactly the pipeline of evaluate.py (``reporting.evaluation``, its
configuration ``conf/evaluate.yaml``): the searches select on the validation split's first 1,000
images and 2 chips; every mapping a method emits as feasible is certified by a population
statement on other chips and images and repaired until it holds (``accuracy.population``); then
it is scored out of sample on the test split with 8 chips no search or certification used.
Reported per method: speedup, energy gain, the search's drop, the certificate (decision, chips),
feasibility, the out-of-sample drop, its spread over chips and whether it holds, the exact
evaluations and certification chip passes it used and its wall time. The summary compares the
policy with greedy and with the best certified speedup any method found (arithmetic and
geometric means), and gives each method's out-of-sample hold rate, separately for training and
held-out networks. Every point is written as it finishes; a later run skips points already
measured with the same protocol and policy (``--fresh`` starts over). JSON and Markdown in
bench/results/compare.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from typing import Any

import numpy as np

from agents.methods import METHODS
from bench.common import RESULTS_DIR, objective, write_result
from common.io import atomic_write
from common.paths import CONF_DIR
from common.presets import entry_config
from common.units import DAY_S, YEAR_S

TIMES = {"1 day": DAY_S, "1 year": YEAR_S}
THRESHOLDS = (1.0, 2.0, 5.0)
TRAINING = tuple(entry_config("train")["train"]["networks"])
ALL = TRAINING + tuple(entry_config("train")["train"]["holdout"])
PROTOCOL = 2  # 1: verified on the search's chips only; 2: certified, scored out of sample


def evaluate_config(overrides: list[str]) -> dict[str, Any]:
    """conf/evaluate.yaml composed with ``overrides``, as plain data (what evaluate.py runs on)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=overrides)
    return OmegaConf.to_container(cfg, resolve=True)


def compare_network(name: str, mapper, cfg: dict[str, Any], done: list[dict] | None = None,
                    on_point=None) -> list[dict]:
    """Rows of one network: the policy (``mapper``) and every selected registered method.
    ``done``: rows of points measured earlier (kept, not redone); ``on_point(rows)`` is called
    with the network's rows so far after every point, so an interrupted run keeps them."""
    from reporting.evaluation import NetworkEvaluator
    from workloads.registry import NetworkSpec

    evaluator = NetworkEvaluator(NetworkSpec.zoo(name), cfg)
    rows = list(done or [])
    for label, t_s in TIMES.items():
        for threshold in THRESHOLDS:
            if any(r["t"] == label and r["threshold"] == threshold for r in rows):
                continue
            records = [evaluator.policy_result(mapper, t_s, threshold)] + evaluator.baselines(t_s, threshold)
            rows += [row_of(name, label, record) for record in records]
            if on_point is not None:
                on_point(rows)
            print(f"{name:11s} {label:6s} thr {threshold:3.1f}: " + "  ".join(
                f"{r['method']} {r['speedup']:.2f}x{'' if r['feasible'] else '(X)'}"
                f"{'' if r['holds_on_test'] or not r['feasible'] else '(!)'}" for r in rows[-len(records):]),
                flush=True)
    return rows


def row_of(network: str, t_label: str, record: dict[str, Any]) -> dict[str, Any]:
    """A comparison row from an evaluate result record (``NetworkEvaluator.result``)."""
    certificate = record["certified"]
    return with_objective({
        "network": network, "training": network in TRAINING, "t": t_label, "threshold": record["threshold"],
        "method": record["method"], "speedup": record["speedup"], "energy_gain": record["energy_gain"],
        "drop": record["verified"]["drop"], "feasible": record["feasible"],
        "certificate": certificate["decision"] if certificate else "none",
        "certified_chips": certificate["chips"] if certificate else 0,
        "certified_mean_drop": certificate["mean_drop"] if certificate else None,
        "test_drop": record["test"]["drop"], "test_sd": record["test"]["std"],
        "test_chips": len(record["test"]["seeds"]), "test_images": record["test"]["images"],
        "holds_on_test": record["holds_on_test"], "exact_evaluations": int(record["exact_evaluations"]),
        "certification_chip_passes": int(record["certification_chip_passes"]),
        "repaired_layers": int(record["repaired_layers"]), "wall_s": record["wall_s"],
        "analog_layers": int(sum(record["mapping"])), "proposal_analog_layers": int(sum(record["proposed_mapping"])),
    })


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
        feasible_rows = {m: [p[m] for p in points if m in p and p[m]["feasible"]] for m in points[0]}
        summary[group] = {
            "points": len(points),
            "ppo_over_greedy_geomean": geomean(vs_greedy), "ppo_over_best_geomean": geomean(vs_best),
            "ppo_over_greedy_median": float(np.median(vs_greedy)),
            # per method: the fraction of its mappings emitted as feasible whose mean drop over the
            # fresh test chips is within the threshold (None: the method emitted none as feasible)
            "out_of_sample_hold_rate": {m: (float(np.mean([r["holds_on_test"] for r in rs])) if rs else None)
                                        for m, rs in feasible_rows.items()},
            "emitted_feasible": {m: len(rs) for m, rs in feasible_rows.items()},
            "certification_chip_passes_mean": {
                m: float(np.mean([p[m].get("certification_chip_passes", 0) for p in points if m in p]))
                for m in points[0]},
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


def geomean(values) -> float:
    return float(np.exp(np.mean(np.log(np.asarray(values, float)))))


def markdown(rows: list[dict]) -> str:
    lines = ["| network | t | threshold | method | speedup | energy gain | search drop | certificate (chips) | feasible | "
             "test drop (sd, chips) | holds on test | exact evals | chip passes | wall s |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        certificate = f"{r['certificate']} ({r['certified_chips']})" if r.get("certificate", "none") != "none" else "-"
        holds = "yes" if r["holds_on_test"] else ("**NO**" if r["feasible"] else "no")
        lines.append(f"| {r['network']}{'' if r['training'] else ' (held out)'} | {r['t']} | {r['threshold']:g} | "
                     f"{r['method']} | {r['speedup']:.2f}x | {r['energy_gain']:.2f}x | {r['drop']:.2f} | {certificate} | "
                     f"{'yes' if r['feasible'] else 'no'} | {r['test_drop']:.2f} ({r['test_sd']:.2f}, {r['test_chips']}) | "
                     f"{holds} | {r['exact_evaluations']} | {r['certification_chip_passes']} | {r['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def policy_record(path: str) -> dict[str, Any]:
    """Which policy was compared: path, sha256 and, from its provenance file beside it
    (``<name>.json``, written when it was committed), the training command, commit and seed."""
    from pathlib import Path

    from workloads.registry import file_sha256

    policy = Path(path)
    record = {"path": str(path), "sha256": file_sha256(policy)}
    provenance = policy.with_suffix(".json")
    if provenance.is_file():
        record.update({k: v for k, v in json.loads(provenance.read_text()).items() if k != "sha256"})
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="policies/default.zip", help="a saved MaskablePPO .zip")
    parser.add_argument("--networks", nargs="+", default=list(ALL))
    parser.add_argument("--hw", default="alpine_like")
    parser.add_argument("--policy-evaluations", type=int, default=2,
                        help="exact evaluations the policy's verified search may use (agents/verify.py)")
    parser.add_argument("--fresh", action="store_true", help="forget networks measured earlier and start over")
    parser.add_argument("--resummarise", action="store_true",
                        help="recompute the summary and Markdown of the existing results/compare.json, no mapping")
    args = parser.parse_args(argv)
    path = RESULTS_DIR / "compare.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if previous.get("protocol") != PROTOCOL:
        previous = {}  # rows measured under another protocol are not mixed with these
    if args.resummarise:
        if not previous:
            parser.error(f"{path} holds no rows of protocol {PROTOCOL}; run the comparison first")
        write(previous["rows"], {k: v for k, v in previous.items()
                                 if k not in ("benchmark", "machine", "summary", "rows", "methods")},
              machine=previous["machine"])
        return 0

    from agents.policy_file import load_policy
    from agents.ppo import PolicyMapper

    mapper = PolicyMapper(load_policy(args.policy))
    cfg = evaluate_config([f"hw={args.hw}", f"policy_evaluations={args.policy_evaluations}", "progress=false"])
    meta = {"protocol": PROTOCOL, "policy": policy_record(args.policy), "hw": args.hw,
            "policy_evaluations": args.policy_evaluations,
            "verify": cfg["verify"], "certify": cfg["certify"], "report": cfg["report"]}
    same = (not args.fresh and previous.get("policy", {}).get("sha256") == meta["policy"]["sha256"]
            and previous.get("hw") == args.hw and previous.get("certify") == cfg["certify"]
            and previous.get("report") == cfg["report"])
    earlier = previous.get("rows", []) if same else []
    rows = [r for r in earlier if r["network"] not in args.networks]
    points = len(TIMES) * len(THRESHOLDS)
    for name in args.networks:
        done = [r for r in earlier if r["network"] == name]
        if len({(r["t"], r["threshold"]) for r in done}) == points:
            rows += done
            print(f"{name}: measured earlier with the same protocol and policy (--fresh to redo)")
            continue
        before = list(rows)
        # every point as soon as it is done: an interrupted run keeps it and a later run goes on from there
        rows = before + compare_network(name, mapper, cfg, done, on_point=lambda mine: write(before + mine, meta))
    summary = write(rows, meta)
    for group, s in summary.items():
        print(f"{group}: ppo feasible {100 * s['ppo_feasible_rate']:.0f}%, ppo/greedy speedup geomean "
              f"{s['ppo_over_greedy_geomean']:.3f} (min {s['ppo_over_greedy_min']:.3f}, >= greedy on "
              f"{100 * s['ppo_at_least_greedy_rate']:.0f}%), ppo/best geomean {s['ppo_over_best_geomean']:.3f} "
              f"(min {s['ppo_over_best_min']:.3f}); out-of-sample hold rate "
              + ", ".join(f"{m} {v:.2f}" for m, v in s["out_of_sample_hold_rate"].items() if v is not None))
    print(f"wrote {path}")
    return 0


def write(rows: list[dict], meta: dict, machine: dict | None = None) -> dict:
    rows = [with_objective(row) for row in rows]
    meta = {**meta, "methods": method_labels(rows)}
    summary = summarise(rows)
    write_result("compare", {**meta, "summary": summary, "rows": rows}, machine=machine)
    atomic_write(RESULTS_DIR / "compare.md", markdown(rows))
    return summary


if __name__ == "__main__":
    from common.runtime import use_fast_malloc

    use_fast_malloc()
    raise SystemExit(main())
