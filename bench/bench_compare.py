"""Mapping methods side by side on the zoo, every emitted mapping certified and scored out of sample.

    python -m bench.bench_compare [--policy policies/default.zip] [--networks ...] [--fresh]
        [--certify-population chips_and_images|chips] [--certify-draw shared|per_statement]
        # the committed rows: --certify-population chips --certify-draw shared
    AIMC_TRUSTED_PACKAGES=bench.networks python -m bench.bench_compare --networks \
        --network-files bench/networks/mixer.yaml          # a bring-your-own network, held out

For each network x t in {1 day, 1 year} x threshold in {1, 2, 5} points: the policy (its
verified search over its own proposals with --policy-evaluations exact evaluations, repair if
needed; agents/verify.py) and every default mapping method of the registry (agents/methods.py:
LionHeart greedy, the sensitivity knapsack, the exhaustive optimum up to 14 layers, a random
feasible mapping, all-analog). Training and held-out networks are those of conf/train.yaml.

Every method reads the sensitivity of ``--profile`` (default ``env.profile``: the cheap estimate,
measured once per network and counted in the cost of every method that reads it; ``exact``: the
accuracy artifact, its evaluations counted likewise). Every method goes through exactly the
pipeline of evaluate.py (``reporting.evaluation``, its
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
measured with the same protocol and policy (``--fresh`` starts over); under another policy it
keeps the rows of the methods that do not depend on the policy and measures the policy's and the
seeded local search's again. JSON and Markdown in
bench/results/compare.{json,md}.

On a machine with cores to spare, networks (or methods, ``--methods``) can be measured in
parallel in other checkouts sharing the result cache, and their files added with
``--merge other/bench/results/compare.json`` (same settings, same checkpoints; rows this file
already has are kept). A local search run after a merge is seeded with every merged mapping.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from accuracy.population import DRAWS, POPULATIONS
from agents.methods import METHODS, applicable_names
from bench.common import RESULTS_DIR, TIMES, certify_config, objective, write_result
from common.io import atomic_write
from common.paths import CONF_DIR
from common.presets import entry_config, load_preset
from common.units import DAY_S
from envs.tasks import PROFILE_SOURCES

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


# The compared methods besides the policy: LionHeart's greedy as published here and cost-aware, the
# same-budget proposers (the policy's verified ladder search around the knapsack and random), the
# cheap methods, the exhaustive optimum where it applies and the budgeted local search as the
# best-known reference. lionheart_protocol (the paper's evaluation protocol, 25 standard
# evaluations per candidate) is left to --methods: it costs ~25x greedy.
METHODS_COMPARED = ("lionheart_greedy", "lionheart_costaware", "knapsack", "knapsack_ladder", "random",
                    "random_ladder", "all_analog", "optimum", "search")
SAME_BUDGET = ("knapsack_ladder", "random_ladder")


def network_measurements(evaluator) -> dict[str, Any]:
    """What mapping cost is counted in on this network: the time of one uncached exact evaluation
    of the standard protocol (verify's images and chips; a mapping with every other analog-capable
    layer analog at 1 day, baseline excluded) and the one-time work of the sensitivity the methods
    read: with the cheap profile, its measurement timed here, uncached, right after that
    evaluation (the same images and chips); with the exact one, the accuracy artifact's evaluations."""
    from accuracy.oracle import AccuracyOracle
    from accuracy.profiles import artifact_cost

    v = evaluator.validation
    fresh = lambda: AccuracyOracle(evaluator.spec, evaluator.noise, images=v.images, seeds=v.seeds,  # noqa: E731
                                   cache=None)
    oracle = fresh()
    oracle.baseline()
    mapping = np.zeros(len(evaluator.task), bool)
    mapping[np.flatnonzero(evaluator.task.cost.analog_capable)[::2]] = True
    start = time.perf_counter()
    oracle.evaluate(mapping, DAY_S)
    seconds = time.perf_counter() - start
    profiling = None
    if evaluator.task.profile_source == "cheap":
        from accuracy.cheap_sensitivity import cached_cheap_profile

        cheap = cached_cheap_profile(fresh(), cache=None, directory=None)  # baseline pass included
        profiling = {"source": "cheap", "estimator": cheap.cost["estimator"], "evaluations": 0,
                     "images": v.images, "chips": len(v.seeds),
                     "eval_equivalents": round(cheap.cost["seconds"] / seconds, 2),
                     "seconds": round(cheap.cost["seconds"], 1)}
    else:
        artifact = artifact_cost(evaluator.spec)
        if artifact is not None:
            weight = artifact["images"] * artifact["chips"] / (v.images * len(v.seeds))
            profiling = {"source": "exact", **artifact, "eval_equivalents": round(artifact["evaluations"] * weight, 2),
                         "seconds": round(artifact["evaluations"] * weight * seconds, 1)}
    return {"checkpoint": evaluator.spec.checkpoint_sha256(), "exact_eval_s": round(seconds, 3),
            "profiling": profiling}


def compare_network(network, mapper, cfg: dict[str, Any], methods: tuple[str, ...] = METHODS_COMPARED,
                    done: list[dict] | None = None, on_point=None,
                    measurements: dict[str, dict] | None = None) -> list[dict]:
    """Rows of one network (a zoo name or a ``NetworkSpec``): the policy (``mapper``) and every
    method of ``methods`` that applies.
    ``done``: rows measured earlier (kept; only the methods a point lacks are run there);
    ``on_point(rows)`` is called with the network's rows so far after every point, so an
    interrupted run keeps them. The local search is seeded with every other mapping of its point."""
    from reporting.evaluation import NetworkEvaluator
    from workloads.registry import NetworkSpec

    spec = NetworkSpec.zoo(network) if isinstance(network, str) else network
    name = spec.name
    evaluator = NetworkEvaluator(spec, cfg)
    if measurements is not None and name not in measurements:
        measurements[name] = network_measurements(evaluator)
    applicable = set(applicable_names(evaluator.task, methods))
    rows = list(done or [])
    bar = tqdm(total=len(TIMES) * len(THRESHOLDS), desc=name, unit="point", dynamic_ncols=True)
    for label, t_s in TIMES.items():
        for threshold in THRESHOLDS:
            def running(method: str) -> None:
                bar.set_postfix_str(f"{label}, threshold {threshold:g}: {method}")

            here = [r for r in rows if r["t"] == label and r["threshold"] == threshold]
            have = {r["method"] for r in here}
            missing = [m for m in methods if m in applicable and m not in have]
            records = []
            if "ppo" not in have:
                running("ppo")
                records.append(evaluator.policy_result(mapper, t_s, threshold))
            if missing:
                starts = [bits(r["mapping"]) for r in here if "mapping" in r] + [np.array(r["mapping"], bool)
                                                                                for r in records]
                records += evaluator.baselines(t_s, threshold, selection=missing, starts=starts, on_method=running)
            bar.update()
            if not records:
                continue
            rows += [row_of(name, label, record) for record in records]
            if on_point is not None:
                on_point(rows)
            bar.write(f"{name:11s} {label:6s} thr {threshold:3.1f}: " + "  ".join(
                f"{r['method']} {r['speedup']:.2f}x{'' if r['feasible'] else '(X)'}"
                f"{'' if r['holds_on_test'] or not r['feasible'] else '(!)'}" for r in rows[-len(records):]))
    bar.close()
    return rows


def bits(mapping: str) -> np.ndarray:
    return np.array([c == "1" for c in mapping], bool)


def row_of(network: str, t_label: str, record: dict[str, Any]) -> dict[str, Any]:
    """A comparison row from an evaluate result record (``NetworkEvaluator.result``)."""
    from accuracy.oracle import mapping_bits

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
        "mapping": mapping_bits(record["mapping"]),
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


def effective_speedup(row: dict) -> float:
    """A row's speedup if its mapping was emitted as feasible, else 1 (the user falls back to
    all-digital): ratios between methods compare what a user could deploy."""
    return row["speedup"] if row["feasible"] else 1.0


def point_stats(points: list[dict[str, dict]]) -> dict[str, Any]:
    """Ratios and rates over ``points`` (each: method -> row at one network, t, threshold)."""
    methods = list(dict.fromkeys(m for p in points for m in p))
    ppo = [effective_speedup(p["ppo"]) for p in points]
    best = [max(effective_speedup(r) for r in p.values()) for p in points]
    out: dict[str, Any] = {"points": len(points)}

    def versus(method: str) -> list[float] | None:
        pairs = [(effective_speedup(p["ppo"]), effective_speedup(p[method])) for p in points if method in p]
        return [a / b for a, b in pairs] if len(pairs) == len(points) else None

    for key, method in (("greedy", "lionheart_greedy"), ("costaware", "lionheart_costaware"),
                        ("search", "search")):
        ratios = versus(method)
        out[f"ppo_over_{key}_geomean"] = geomean(ratios) if ratios else None
        out[f"ppo_over_{key}_median"] = float(np.median(ratios)) if ratios else None
        out[f"ppo_over_{key}_min"] = float(np.min(ratios)) if ratios else None
        out[f"ppo_ge_{key}_rate"] = float(np.mean(np.array(ratios) >= 1 - 1e-9)) if ratios else None
    vs_best = [a / b for a, b in zip(ppo, best)]
    out.update({"ppo_over_best_geomean": geomean(vs_best), "ppo_over_best_median": float(np.median(vs_best)),
                "ppo_over_best_min": float(np.min(vs_best))})
    same = [m for m in SAME_BUDGET if m in methods]
    out["same_budget"] = {m: {"ppo_ge_rate": float(np.mean(np.array(versus(m)) >= 1 - 1e-9)),
                              "ppo_over_geomean": geomean(versus(m))} for m in same if versus(m)}
    # the worst over the same-budget proposers (knapsack first in the README's reading)
    out["ppo_ge_same_budget_rate"] = min((v["ppo_ge_rate"] for v in out["same_budget"].values()), default=None)
    feasible_rows = {m: [p[m] for p in points if m in p and p[m]["feasible"]] for m in methods}
    out.update({
        # per method: the fraction of its mappings emitted as feasible whose mean drop over the
        # fresh test chips is within the threshold (None: the method emitted none as feasible)
        "out_of_sample_hold_rate": {m: (float(np.mean([r["holds_on_test"] for r in rs])) if rs else None)
                                    for m, rs in feasible_rows.items()},
        "emitted_feasible": {m: len(rs) for m, rs in feasible_rows.items()},
        "certification_chip_passes_mean": {
            m: float(np.mean([p[m].get("certification_chip_passes", 0) for p in points if m in p])) for m in methods},
        "ppo_feasible_rate": float(np.mean([p["ppo"]["feasible"] for p in points])),
        "exact_evaluations_mean": {m: float(np.mean([p[m]["exact_evaluations"] for p in points if m in p]))
                                   for m in methods},
        "wall_s_mean": {m: float(np.mean([p[m]["wall_s"] for p in points if m in p])) for m in methods},
    })
    if all("lionheart_greedy" in p for p in points):  # the earlier summary fields, kept for continuity
        vs_greedy = versus("lionheart_greedy")
        objective_vs_greedy = [p["ppo"]["objective"] - p["lionheart_greedy"]["objective"] for p in points]
        best_objective = [max(r["objective"] for r in p.values() if r["feasible"]) for p in points]
        out.update({
            "ppo_over_greedy_mean": float(np.mean(vs_greedy)),
            "ppo_at_least_greedy_rate": out["ppo_ge_greedy_rate"],
            "ppo_over_best_mean": float(np.mean(vs_best)),
            "objective_ppo_minus_greedy_mean": float(np.mean(objective_vs_greedy)),
            "objective_ppo_at_least_greedy_rate": float(np.mean(np.array(objective_vs_greedy) >= -1e-9)),
            "objective_ppo_minus_best_mean": float(np.mean([p["ppo"]["objective"] - b
                                                            for p, b in zip(points, best_objective)])),
        })
    return out


def total_cost(rows: list[dict], network: dict[str, Any], cert_per_pass: float) -> dict[str, Any]:
    """Per method, what mapping this network at every compared point cost, one-time work included:
    ``evaluations`` (the searches' exact evaluations, in standard-protocol units),
    ``profiling_eval_equivalents`` (the one-time sensitivity work of the run's ``--profile``: the
    cheap estimate or the accuracy artifact, for the methods that read it), ``certification_chip_passes``,
    ``eval_equivalents`` (all three in standard evaluations: a certification chip pass is
    ``cert_per_pass`` of one), ``seconds`` (``eval_equivalents`` times the measured time of one
    uncached standard evaluation of this network: cache hits between methods do not make one
    method look cheaper) and ``wall_s`` (measured, cache hits included)."""
    profiling = network.get("profiling") or {"evaluations": 0, "eval_equivalents": 0.0}
    seconds_per_eval = float(network.get("exact_eval_s") or 0.0)
    out = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        reads_sensitivity = method == "ppo" or (method in METHODS and METHODS[method].sensitivity)
        evaluations = int(sum(r["exact_evaluations"] for r in mine))
        passes = int(sum(r.get("certification_chip_passes", 0) for r in mine))
        one_time = float(profiling["eval_equivalents"]) if reads_sensitivity else 0.0
        equivalents = evaluations + one_time + passes * cert_per_pass
        out[method] = {"points": len(mine), "evaluations": evaluations,
                       "profiling_eval_equivalents": one_time, "certification_chip_passes": passes,
                       "eval_equivalents": round(equivalents, 2), "seconds": round(equivalents * seconds_per_eval, 1),
                       "wall_s": round(sum(r["wall_s"] for r in mine), 1)}
    return out


def summarise(rows: list[dict], networks: dict[str, dict] | None = None,
              cert_per_pass: float = 0.5) -> dict:
    """Summary per group (training, held-out networks) and per network (``networks.<name>``, with
    ``total_cost`` and ``profiling`` from ``networks``: the per-network measurements of the run)."""
    networks = networks or {}
    by_point = defaultdict(dict)
    for r in rows:
        by_point[(r["network"], r["t"], r["threshold"])][r["method"]] = r
    summary: dict[str, Any] = {}
    for group, training in (("training", True), ("held_out", False)):
        points = [p for p in by_point.values() if "ppo" in p and p["ppo"]["training"] == training]
        if points:
            summary[group] = point_stats(points)
    per_network = {}
    for name in dict.fromkeys(r["network"] for r in rows):
        points = [p for (n, _, _), p in by_point.items() if n == name and "ppo" in p]
        if not points:
            continue
        info = networks.get(name, {})
        costs = total_cost([r for r in rows if r["network"] == name], info, cert_per_pass)
        per_network[name] = {**point_stats(points), "total_cost": costs,
                             "break_even_points_vs_greedy": break_even(costs.get("ppo"), costs.get("lionheart_greedy")),
                             "profiling": info.get("profiling"), "exact_eval_s": info.get("exact_eval_s")}
    summary["networks"] = per_network
    return summary


def break_even(mine: dict | None, other: dict | None) -> float | None:
    """Points after which ``mine`` (one-time work plus its per-point cost) has cost less than
    ``other`` in all (equivalents): one-time / (other's per-point - mine's per-point); 0 without
    one-time work, None when ``mine`` costs as much or more per point (it never breaks even)."""
    if not mine or not other or not mine["points"] or not other["points"]:
        return None
    one_time = mine["profiling_eval_equivalents"] - other["profiling_eval_equivalents"]
    per_point = ((mine["eval_equivalents"] - mine["profiling_eval_equivalents"]) / mine["points"]
                 - (other["eval_equivalents"] - other["profiling_eval_equivalents"]) / other["points"])
    if one_time <= 0 and per_point <= 0:
        return 0.0
    if per_point >= 0:
        return None
    return round(one_time / -per_point, 2)


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


# What a certification plan recorded before a key existed meant (accuracy/population.py): chips on
# the certification images only, every statement on the same chips.
PLAN_BEFORE_KEY = {"population": "chips", "draw": "shared"}


def recorded_certify(previous: dict) -> dict | None:
    """The certification protocol of recorded rows, with the keys a plan recorded before they
    existed did not name (``PLAN_BEFORE_KEY``)."""
    certify = previous.get("certify")
    if not certify or not certify.get("plan"):
        return certify
    return {**certify, "plan": {**PLAN_BEFORE_KEY, **certify["plan"]}}


def settings(recorded: dict) -> tuple:
    """What rows must share to sit in one table: the protocol, hardware, certificate (plans
    recorded before a key existed read with its value then), sensitivity source and report."""
    return (recorded.get("protocol"), recorded.get("hw"), recorded_certify(recorded),
            recorded.get("profile", "exact"), recorded.get("report"))


class MergeError(ValueError):
    """Two comparison results that cannot share a table (says what differs)."""


def merged_results(ours: dict, theirs: dict, source: str = "the other file") -> tuple[list[dict], dict, int]:
    """Rows and per-network measurements of ``ours`` (a compare.json) with those of ``theirs``
    (another run of the same settings, e.g. other networks or methods measured in a second process
    or checkout) added: their rows our policy may keep (``kept_rows``) at (network, t, threshold,
    method) keys we lack. A network measured in both must have been measured with the same
    checkpoint. Returns (rows, networks, rows added); raises :class:`MergeError` naming what differs."""
    if settings(ours) != settings(theirs):
        names = ("protocol", "hw", "certify", "profile", "report")
        differ = [n for n, a, b in zip(names, settings(ours), settings(theirs)) if a != b]
        raise MergeError(f"{source} was measured with other settings ({', '.join(differ)}); rows of different "
                         "settings are not merged")
    networks = dict(ours.get("networks", {}))
    for name, measured in theirs.get("networks", {}).items():
        mine = networks.get(name)
        if mine is None:
            networks[name] = measured
        elif mine.get("checkpoint") != measured.get("checkpoint"):
            raise MergeError(f"{source} measured {name} with another checkpoint ({measured.get('checkpoint')!r:.12} "
                             f"against {mine.get('checkpoint')!r:.12}); measure it again with this one")
    rows = list(ours.get("rows", []))
    have = {(r["network"], r["t"], r["threshold"], r["method"]) for r in rows}
    added = [r for r in kept_rows(theirs, ours.get("policy", {}).get("sha256"))
             if (r["network"], r["t"], r["threshold"], r["method"]) not in have]
    unmeasured = sorted({r["network"] for r in added} - set(networks))
    if unmeasured:
        raise MergeError(f"{source} has rows of {', '.join(unmeasured)} but no measurement of the network "
                         "(checkpoint, exact evaluation time); it is not a complete comparison file")
    return rows + added, networks, len(added)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", default="policies/default.zip", help="a saved MaskablePPO .zip")
    parser.add_argument("--networks", nargs="*", default=list(ALL), help="zoo networks (default: conf/train.yaml's)")
    parser.add_argument("--network-files", nargs="+", default=[], metavar="YAML",
                        help="networks described in files (conf/network/*.yaml format), compared as held out; "
                             "their builders' packages must be trusted (AIMC_TRUSTED_PACKAGES)")
    parser.add_argument("--hw", default="alpine_like")
    parser.add_argument("--profile", choices=PROFILE_SOURCES, default=load_preset("env", "default")["profile"],
                        help="the sensitivity every method reads: cheap (the estimate, measured per network and "
                             "counted in its cost; no accuracy artifact) or exact (the artifact); default: "
                             "conf/env/default.yaml")
    parser.add_argument("--policy-evaluations", type=int, default=2,
                        help="exact evaluations the policy's verified search may use (agents/verify.py)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS_COMPARED), choices=list(METHODS),
                        help="registered methods compared with the policy (default: %(default)s)")
    parser.add_argument("--search-budget", type=int, default=100,
                        help="exact evaluations of the local search (the best-known reference) per point")
    parser.add_argument("--certify-population", choices=POPULATIONS,
                        default=certify_config()["plan"].get("population", "chips_and_images"),
                        help="whom the certificate speaks for (accuracy/population.py): unseen chips and images, "
                             "or chips on the certification images only (the protocol of rows recorded before "
                             "the choice existed); default: conf/evaluate.yaml's")
    parser.add_argument("--certify-draw", choices=DRAWS, default=certify_config()["plan"].get("draw", "shared"),
                        help="the certification chips: the same for every statement, or drawn per statement "
                             "(accuracy/population.py); default: conf/evaluate.yaml's")
    parser.add_argument("--fresh", action="store_true", help="forget networks measured earlier and start over")
    parser.add_argument("--resummarise", action="store_true",
                        help="recompute the summary and Markdown of the existing results/compare.json, no mapping")
    parser.add_argument("--merge", nargs="+", default=[], metavar="JSON",
                        help="add the rows of other compare.json files of the same settings (e.g. networks or "
                             "methods measured in parallel in another checkout) to results/compare.json, no mapping")
    args = parser.parse_args(argv)
    specs: dict[str, Any] = {name: name for name in args.networks}  # checked before any work
    for file in args.network_files:
        spec = network_file(file, parser)
        specs[spec.name] = spec
    path = RESULTS_DIR / "compare.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    if previous.get("protocol") != PROTOCOL:
        previous = {}  # rows measured under another protocol are not mixed with these
    if args.merge:
        if not previous:
            parser.error(f"{path} holds no rows of protocol {PROTOCOL} to merge into")
        rows, networks = previous["rows"], previous.get("networks", {})
        for file in args.merge:
            try:
                theirs = json.loads(Path(file).read_text())
                rows, networks, added = merged_results({**previous, "rows": rows, "networks": networks}, theirs, file)
            except (OSError, ValueError, KeyError, TypeError) as error:
                parser.error(f"cannot merge {file}: {error}")
            print(f"{file}: {added} rows added", flush=True)
        write(rows, {k: v for k, v in previous.items()
                     if k not in ("benchmark", "machine", "summary", "rows", "methods", "networks")}
              | {"networks": networks}, machine=previous["machine"])
        print(f"wrote {path}")
        return 0
    if args.resummarise:
        if not previous:
            parser.error(f"{path} holds no rows of protocol {PROTOCOL}; run the comparison first")
        write(previous["rows"], {k: v for k, v in previous.items()
                                 if k not in ("benchmark", "machine", "summary", "rows", "methods")},
              machine=previous["machine"])
        return 0

    from agents.policy_file import load_policy
    from agents.ppo import PolicyMapper
    from workloads.registry import NetworkSpec

    mapper = PolicyMapper(load_policy(args.policy))
    cfg = evaluate_config([f"hw={args.hw}", f"policy_evaluations={args.policy_evaluations}", "progress=false",
                           f"env.profile={args.profile}"])
    # the same-budget proposers get the policy's exact budget; the reference search its own
    cfg["method_options"] = {**{m: {"evaluations": args.policy_evaluations} for m in SAME_BUDGET},
                             "search": {"budget": args.search_budget}}
    cfg["certify"]["plan"] = {**(cfg["certify"].get("plan") or {}), "population": args.certify_population,
                                "draw": args.certify_draw}
    policy = policy_record(args.policy)
    trained_on = policy.get("profile", "exact")
    if trained_on != args.profile:
        print(f"warning: {args.policy} was trained observing the {trained_on} sensitivity profile; this comparison "
              f"gives it the {args.profile} one (--profile {trained_on} matches its training)", flush=True)
    if policy.get("estimator") is not None:
        print(f"warning: {args.policy} was trained observing the {policy['estimator']} cheap estimate; this "
              f"comparison gives every method the calibration's default", flush=True)
    meta = {"protocol": PROTOCOL, "policy": policy, "hw": args.hw, "profile": args.profile,
            "policy_evaluations": args.policy_evaluations, "method_options": cfg["method_options"],
            "verify": cfg["verify"], "certify": cfg["certify"], "report": cfg["report"]}
    same_settings = not args.fresh and settings(previous) == settings(meta)
    earlier = kept_rows(previous, meta["policy"]["sha256"]) if same_settings else []
    if same_settings and len(earlier) < len(previous.get("rows", [])):
        print(f"the policy changed: keeping {len(earlier)} rows of methods that do not depend on it; "
              "the policy's and the seeded search's rows are measured again", flush=True)
    # per network: one uncached exact evaluation's time and the sensitivity's one-time cost (kept across resumes)
    meta["networks"] = dict(previous.get("networks", {})) if same_settings else {}
    rows = [r for r in earlier if r["network"] not in specs]
    methods = tuple(args.methods)
    for name, network in specs.items():
        done = [r for r in earlier if r["network"] == name]
        checkpoint = (network if not isinstance(network, str) else NetworkSpec.zoo(network)).checkpoint_sha256()
        if not measured_with(meta["networks"], name, checkpoint):
            done = []
            meta["networks"].pop(name, None)
        before = list(rows)
        # every point as soon as it is done: an interrupted run keeps it and a later run goes on from
        # there (only the methods a point lacks are run)
        rows = before + compare_network(network, mapper, cfg, methods, done,
                                        on_point=lambda mine: write(before + mine, meta),
                                        measurements=meta["networks"])
    summary = write(rows, meta)

    def ratio(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    for group, s in summary.items():
        if group == "networks":
            continue
        print(f"{group}: ppo feasible {100 * s['ppo_feasible_rate']:.0f}%, ppo/greedy geomean "
              f"{ratio(s['ppo_over_greedy_geomean'])}, ppo/cost-aware geomean {ratio(s['ppo_over_costaware_geomean'])}, "
              f"ppo/best geomean {ratio(s['ppo_over_best_geomean'])} (min {ratio(s['ppo_over_best_min'])}); "
              "out-of-sample hold rate "
              + ", ".join(f"{m} {v:.2f}" for m, v in s["out_of_sample_hold_rate"].items() if v is not None))
    print(f"wrote {path}")
    return 0


def depends_on_policy(method: str) -> bool:
    """Whether a method's rows change with the compared policy: the policy's own, and those of
    methods seeded with every other mapping of their point (the local search)."""
    entry = METHODS.get(method)
    return method == "ppo" or (entry is not None and getattr(entry.factory, "accepts_starts", False))


def kept_rows(previous: dict, policy_sha256: str) -> list[dict]:
    """The rows of ``previous`` (a compare.json of the same settings) that a run comparing the
    policy ``policy_sha256`` may keep: all of them under the same policy, else those of methods
    that do not depend on it (a retrained policy costs its own and the search's rows only)."""
    rows = previous.get("rows", [])
    if previous.get("policy", {}).get("sha256") == policy_sha256:
        return list(rows)
    return [r for r in rows if not depends_on_policy(r["method"])]


def measured_with(networks: dict[str, dict], name: str, checkpoint: str) -> bool:
    """Whether the network's recorded rows and measurements were taken with this checkpoint
    (sha256); rows of another checkpoint, or recorded before checkpoints were, are measured again."""
    return networks.get(name, {}).get("checkpoint") == checkpoint


def network_file(path: str, parser: argparse.ArgumentParser):
    """The NetworkSpec a description file holds (YAML, read as data), or a usage error naming it."""
    import yaml

    from workloads.registry import NetworkError, NetworkSpec

    try:
        spec = NetworkSpec.from_config(yaml.safe_load(open(path)))
        spec.build()  # the builder's package is trusted and the keys fit it: fail now, not mid-run
    except FileNotFoundError:
        parser.error(f"--network-files: {path} does not exist")
    except (yaml.YAMLError, NetworkError, TypeError, KeyError, ValueError) as error:
        parser.error(f"--network-files: {path}: {error}")
    if spec.name in ALL:
        parser.error(f"--network-files: {path} names {spec.name!r}, a zoo network; give it another name")
    return spec


def write(rows: list[dict], meta: dict, machine: dict | None = None) -> dict:
    rows = [with_objective(row) for row in rows]
    meta = {**meta, "methods": method_labels(rows)}
    certify = meta.get("certify") or {}
    verify = meta.get("verify") or {"images": 1000, "seeds": [0, 1]}
    # one certification chip pass over certify's images, in standard evaluations (verify's images x chips)
    per_pass = (certify.get("images", verify["images"]) / (verify["images"] * len(verify["seeds"])))
    summary = summarise(rows, meta.get("networks"), per_pass)
    write_result("compare", {**meta, "summary": summary, "rows": rows}, machine=machine)
    atomic_write(RESULTS_DIR / "compare.md", markdown(rows))
    return summary


if __name__ == "__main__":
    from common.runtime import use_fast_malloc

    use_fast_malloc()
    raise SystemExit(main())
