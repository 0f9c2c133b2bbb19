"""Cheap sensitivity profiles against the exact ones: agreement and cost, side by side.

    python -m bench.bench_sensitivity [--networks ...] [--no-ceiling]

For every zoo network with a current accuracy artifact (``workloads/profiles/<network>.json``),
on the artifact's own images and chips (its plan: the first 1,000 validation images and
programming seeds 0 and 1 by default):

1. the raw scores of every estimator of :mod:`accuracy.cheap_sensitivity` at its cheap drift
   times, in one measurement per network;
2. a calibration per estimator fitted on the TRAINING networks only (``TRAINING``: their raw
   scores against their exact profiles at the cheap times), its form (identity, linear, power
   law) chosen by leave-one-training-network-out cross-validation, and the default estimator
   chosen on them alone (highest mean Spearman at 1 day and 1 year, then lowest mean absolute
   error); written to ``accuracy/cheap_calibration.json``. Every candidate form's agreement is
   reported beside the chosen one's;
3. per network and estimator, the calibrated cheap profile against the exact one at 1 day and
   1 year (``SensitivityProfile.at``): Spearman rank correlation over the analog-capable layers,
   mean absolute error in points, and whether the 3 most sensitive layers agree (the predicted
   top 3 all among the exact top 3, ties at the third place counted as top 3; not scored with 3
   or fewer capable layers). Held-out networks are reported apart: their numbers are the ones
   that say whether the cheap profile can replace a new network's exact one;
4. cost, measured side by side: the default estimator's ``cheap_profile`` on a fresh oracle
   (programming and drift included), and ONE exact evaluation of the same network, images and
   chips on another fresh oracle (uncached, after its baseline) of a mapping with every other
   analog-capable layer analog at 1 day. The ratio is the cheap profile's cost in
   exact-evaluation equivalents (an exact profile takes 10 per capable layer);
5. unless ``--no-ceiling``: how well the exact profile agrees with itself on other chips. The
   exact single-layer drops measured again on as many other programmed chips (seeds after the
   artifact's), at the grid times around 1 day and 1 year, against the artifact's; and the cheap
   profile against those other chips. A cheap profile reproduces its chips' own flips; this says
   how much of the exact profile is the chips rather than the layers.

JSON in bench/results/sensitivity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from accuracy.cheap_sensitivity import (CALIBRATION_PATH, COMPETITORS, ESTIMATORS, SEQUENCE_POSITIONS,
                                        Calibration, CalibrationFile, RawScores, calibration_key, cheap_profile,
                                        measure,
                                        load_calibration, parse_calibration, profile_from_raw, select_calibration)
from accuracy.noise import NoiseConfig, load_noise
from accuracy.oracle import AccuracyOracle
from accuracy.profiles import NetworkAccuracyData, artifact_cost, load_or_build, plan_for
from accuracy.surrogate import T_GRID_S, SensitivityProfile
from bench.common import RESULTS_DIR, write_result
from common.io import atomic_write
from common.paths import PROJECT_ROOT
from common.runtime import use_fast_malloc
from common.units import DAY_S, YEAR_S, human_time
from workloads.registry import NetworkSpec, zoo_names

TRAINING = ("lenet5", "mlp", "vgg11", "resnet20", "vit")  # the calibration is fitted on these only
REPORT_TIMES_S = (DAY_S, YEAR_S)
DOCS_SENSITIVITY = PROJECT_ROOT / "docs" / "sensitivity"  # cli.sensitivity's committed reports
CEILING_TIMES_S = (1e4, 1e5, 1e7, 1e8)  # the profile grid's neighbours of 1 day and 1 year
TOP = 3


def agreement(predicted: np.ndarray, exact: np.ndarray) -> dict:
    """Spearman, mean absolute error and top-3 agreement of two per-layer drop vectors (capable layers)."""
    rho = spearmanr(predicted, exact)[0] if np.std(predicted) > 0 and np.std(exact) > 0 else float("nan")
    result = {"spearman": None if np.isnan(rho) else float(rho), "mae": float(np.abs(predicted - exact).mean()),
              "top3_agree": None, "top3_overlap": None}
    if len(exact) > TOP:
        third = np.sort(exact)[-TOP]
        exact_top = set(np.flatnonzero(exact >= third).tolist())  # ties at the third place count as top
        predicted_top = set(np.argsort(-predicted, kind="stable")[:TOP].tolist())
        result["top3_overlap"] = len(predicted_top & exact_top)
        result["top3_agree"] = result["top3_overlap"] == TOP
    return result


def at_times(profile: SensitivityProfile, capable: np.ndarray) -> dict[str, np.ndarray]:
    return {human_time(t): profile.at(t)[capable] for t in REPORT_TIMES_S}


def compare(predicted: SensitivityProfile, exact: SensitivityProfile, capable: np.ndarray) -> dict:
    p, e = at_times(predicted, capable), at_times(exact, capable)
    return {when: agreement(p[when], e[when]) for when in p}


def oracle_for(name: str, noise: NoiseConfig, images: int, seeds: tuple[int, ...]) -> AccuracyOracle:
    return AccuracyOracle(NetworkSpec.zoo(name), noise, images=images, seeds=seeds, cache=None)


def fit_all(raws: dict[str, RawScores], artifacts: dict[str, NetworkAccuracyData]
            ) -> tuple[dict[str, Calibration], dict[str, dict], dict[str, dict[str, Calibration]]]:
    """Per estimator, from the training networks' points (capable layer x cheap time) only: the
    calibration of the form chosen by leave-one-network-out cross-validation, the cross-validation
    table, and every candidate form fitted on all training networks (reported beside it)."""
    calibrations, fits, candidates = {}, {}, {}
    for estimator in ESTIMATORS:
        points = {}
        for name in TRAINING:
            if name in raws:
                raw = raws[name]
                capable = ~np.isnan(artifacts[name].profile.drops[:, 0])
                exact = np.stack([artifacts[name].profile.at(t) for t in raw.times_s], axis=1)
                points[name] = (raw.values[estimator][capable].ravel(), exact[capable].ravel())
        calibrations[estimator], fits[estimator] = select_calibration(estimator, points)
        candidates[estimator] = {form: Calibration(estimator, row["scale"], row["power"])
                                 for form, row in fits[estimator]["forms"].items()}
    return calibrations, fits, candidates


def choose_default(rows: list[dict]) -> str:
    """The estimator with the highest mean Spearman over the training networks and report times
    (an undefined correlation counts 0), then the lowest mean absolute error."""
    def key(estimator: str) -> tuple[float, float]:
        cells = [r["agreement"][estimator][when] for r in rows if r["role"] == "training" for when in r["agreement"][estimator]]
        return (-float(np.mean([c["spearman"] or 0.0 for c in cells])), float(np.mean([c["mae"] for c in cells])))
    return min(ESTIMATORS, key=key)


def exact_evaluation_seconds(name: str, noise: NoiseConfig, images: int, seeds: tuple[int, ...]) -> dict:
    """Wall time of one uncached exact evaluation, every other capable layer analog, at 1 day."""
    oracle = oracle_for(name, noise, images, seeds)
    oracle.baseline()
    capable = np.flatnonzero([layer.analog_capable for layer in oracle.table.layers])
    mapping = np.zeros(len(oracle.table), bool)
    mapping[capable[::2]] = True
    start = time.perf_counter()
    result = oracle.evaluate(mapping, DAY_S)
    return {"seconds": time.perf_counter() - start, "analog_layers": int(mapping.sum()), "drop": result.drop}


def ceiling_profile(name: str, noise: NoiseConfig, images: int, seeds: tuple[int, ...]) -> tuple[SensitivityProfile, tuple]:
    """The exact single-layer drops on as many other chips, at ``CEILING_TIMES_S`` (NaN elsewhere:
    ``at`` reads only the grid points around 1 day and 1 year)."""
    from accuracy.cache import ResultCache
    from accuracy.profiles import DEFAULT_CACHE

    other = tuple(range(max(seeds) + 1, max(seeds) + 1 + len(seeds)))
    # not a cost measurement: cached, so an interrupted run resumes where it stopped
    oracle = AccuracyOracle(NetworkSpec.zoo(name), noise, images=images, seeds=other, cache=ResultCache(DEFAULT_CACHE))
    drops = np.full((len(oracle.table), len(T_GRID_S)), np.nan)
    columns = [T_GRID_S.index(t) for t in CEILING_TIMES_S]
    drops[:, columns] = oracle.sensitivity_profile(CEILING_TIMES_S)
    macs = np.array([layer.macs for layer in oracle.table.layers], float)
    return SensitivityProfile(T_GRID_S, drops, macs), other


def test_profile_agreement(row: dict, calibration: CalibrationFile) -> dict | None:
    """The cheap profile against the per-layer report of ``cli.sensitivity`` on the TEST split
    (``docs/sensitivity/<network>.json``: other images, 4 chips no profile used), per estimator at
    the report's times; None when there is no such report. A second exact reference: where the
    artifact's 2-chip profile is mostly chip noise, a profile on more chips ranks better."""
    from reporting.sensitivity import read

    path = DOCS_SENSITIVITY / f"{row['network']}.json"
    if not path.is_file():
        return None
    report = read(path)
    raw = RawScores(row["network"], tuple(row["raw"]["times_s"]),
                    {e: np.array([[np.nan if v is None else v for v in r] for r in values], float)
                     for e, values in row["raw"]["values"].items()}, {})
    names = [layer["name"] for layer in report["layers"]]
    out = {"file": str(path.relative_to(PROJECT_ROOT)), "split": report["split"], "seeds": report["seeds"],
           "images": report["images"]}
    for estimator in ESTIMATORS:
        values = raw.values[estimator]
        capable = ~np.isnan(values[:, 0])
        if capable.sum() != len(names):
            return None  # another layer set: not comparable
        macs = np.ones(len(values))
        predicted = profile_from_raw(raw, calibration.get(estimator), macs)
        out[estimator] = {}
        for k, t in enumerate(report["times_s"]):
            exact = np.array([layer["drop"][k] for layer in report["layers"]], float)
            out[estimator][human_time(t)] = agreement(predicted.at(t)[capable], exact)
    return out


def summarise(rows: list[dict], role: str) -> dict:
    """Per estimator and report time, the mean over the networks of ``role``."""
    chosen = [r for r in rows if r["role"] == role]
    out = {}
    for estimator in ESTIMATORS:
        out[estimator] = {}
        for when in (human_time(t) for t in REPORT_TIMES_S):
            cells = [r["agreement"][estimator][when] for r in chosen]
            scored = [c["top3_agree"] for c in cells if c["top3_agree"] is not None]
            out[estimator][when] = {
                "spearman_mean": float(np.mean([c["spearman"] or 0.0 for c in cells])) if cells else None,
                "mae_mean": float(np.mean([c["mae"] for c in cells])) if cells else None,
                "top3_agree": f"{sum(scored)}/{len(scored)}"}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=zoo_names(),
                        help="networks to score (those without a current artifact are skipped); the "
                             "calibration is always fitted on the training networks among them")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="skip the exact profile measured again on other chips")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the agreement with the committed test-split reports "
                             "(docs/sensitivity/) from the stored raw scores of bench/results/sensitivity.json; "
                             "nothing is measured")
    parser.add_argument("--keep-stored", action="store_true",
                        help="networks not named keep their stored raw scores, cost and ceiling from "
                             "bench/results/sensitivity.json (nothing of them is measured); the calibration is "
                             "refitted with those raw scores, their agreement recomputed with it, and the default "
                             "estimator's calibration (what the cheap estimate files are keyed on) must come out as "
                             "committed (to measure networks again after their checkpoints changed)")
    args = parser.parse_args(argv)
    if args.rescore:
        path = RESULTS_DIR / "sensitivity.json"
        if not path.is_file():
            parser.error(f"{path} does not exist: run the benchmark first")
        doc = json.loads(path.read_text())
        calibration = parse_calibration(doc["calibration"], str(path))
        for row in doc["networks"]:
            row["test_profile"] = test_profile_agreement(row, calibration)
        write_result("sensitivity", {k: v for k, v in doc.items() if k not in ("benchmark", "machine")},
                     machine=doc["machine"])
        print(f"rescored {path}")
        return 0
    torch.set_num_threads(1)
    noise = load_noise("lionheart")
    artifacts, plans, raws, skipped = {}, {}, {}, {}
    kept: dict[str, dict] = {}
    stored_order: list[str] = []
    if args.keep_stored:
        path = RESULTS_DIR / "sensitivity.json"
        if not path.is_file():
            parser.error(f"--keep-stored: {path} does not exist: run the benchmark on every network first")
        for row in json.loads(path.read_text())["networks"]:
            name = row["network"]
            stored_order.append(name)
            if name in args.networks:
                continue
            kept[name] = row
            raws[name] = RawScores.from_dict(row["raw"])
            # the calibration is refitted from the training networks' raw scores, and every kept
            # network's agreement is recomputed with it
            artifacts[name] = load_or_build(NetworkSpec.zoo(name), noise, allow_build=False, progress=False)
    for name in args.networks:
        spec = NetworkSpec.zoo(name)
        try:
            artifacts[name] = load_or_build(spec, noise, allow_build=False, progress=False)
        except FileNotFoundError as error:
            skipped[name] = str(error)
            continue
        plans[name] = plan_for(spec)
        oracle = oracle_for(name, noise, plans[name].images, plans[name].seeds)
        raws[name] = measure(oracle, estimators=ESTIMATORS)
        print(f"{name}: raw scores in {raws[name].cost['seconds']:.1f} s", flush=True)
    if not any(name in raws for name in TRAINING):
        parser.error("no training network has an artifact: nothing to fit the calibration on")
    calibrations, fits, candidates = fit_all(raws, artifacts)
    rows = []
    for name, raw in raws.items():
        exact, macs = artifacts[name].profile, artifacts[name].profile.macs
        capable = ~np.isnan(exact.drops[:, 0])
        fitted = {"agreement": {e: compare(profile_from_raw(raw, calibrations[e], macs), exact, capable)
                                for e in ESTIMATORS},
                  "agreement_by_form": {e: {form: compare(profile_from_raw(raw, c, macs), exact, capable)
                                            for form, c in candidates[e].items()} for e in ESTIMATORS}}
        if name in kept:
            rows.append({**kept[name], **fitted})
            continue
        rows.append({"network": name, "role": "training" if name in TRAINING else "held_out",
                     "images": plans[name].images, "seeds": list(plans[name].seeds),
                     "capable_layers": int(capable.sum()), **fitted, "raw": raw.to_dict()})
    if kept:  # the stored order, the re-measured networks in their places
        rows.sort(key=lambda r: stored_order.index(r["network"]) if r["network"] in stored_order
                  else len(stored_order))
    default = choose_default(rows)
    calibration = CalibrationFile(default, calibrations, raws[next(iter(raws))].times_s, COMPETITORS,
                                  SEQUENCE_POSITIONS,
                                  meta={"fitted_on": [n for n in TRAINING if n in raws], "fits": fits,
                                        "default_chosen_by": "highest mean Spearman over the training networks "
                                                             "at 1 day and 1 year, then lowest mean absolute error",
                                        "form_chosen_by": "leave-one-training-network-out mean absolute error "
                                                          "at the cheap times"})
    committed = calibration_key(load_calibration())
    if kept and calibration_key(calibration) != committed:
        parser.error("--keep-stored: the default estimator's calibration changed "
                     f"({committed} committed in {CALIBRATION_PATH}, now {calibration_key(calibration)}): every "
                     "network's cheap estimate and stored cost is stale; run the benchmark on every network")
    atomic_write(CALIBRATION_PATH, json.dumps(calibration.to_dict(), indent=2) + "\n")
    for row in rows:
        if row["network"] in kept:
            row["test_profile"] = test_profile_agreement(row, calibration)
    for row in rows:
        name = row["network"]
        if name in kept:
            continue
        plan = plans[name]
        exact = exact_evaluation_seconds(name, noise, plan.images, plan.seeds)
        start = time.perf_counter()
        profile, cost = cheap_profile(oracle_for(name, noise, plan.images, plan.seeds), calibration=calibration)
        seconds = time.perf_counter() - start
        reference = profile_from_raw(RawScores(name, tuple(cost["times_s"]), raws[name].values, {}),
                                     calibrations[default], artifacts[name].profile.macs)
        row["cost"] = {"estimator": default, "cheap_seconds": seconds, "cheap_parts": cost,
                       "exact_evaluation": exact,
                       "exact_evaluation_equivalents": seconds / exact["seconds"],
                       "exact_profile_evaluations": row["capable_layers"] * len(T_GRID_S),
                       "artifact_evaluations": (artifact_cost(NetworkSpec.zoo(name)) or {}).get("evaluations"),
                       "load_average": os.getloadavg()[0],
                       "max_abs_diff_to_bench_measurement": float(np.nanmax(np.abs(profile.drops - reference.drops)))}
        row["test_profile"] = test_profile_agreement(row, calibration)
        if args.ceiling:
            other_profile, other = ceiling_profile(name, noise, plan.images, plan.seeds)
            capable = ~np.isnan(artifacts[name].profile.drops[:, 0])
            row["ceiling"] = {"other_seeds": list(other),
                              "exact_other_chips_vs_exact": compare(other_profile, artifacts[name].profile, capable),
                              "cheap_vs_exact_other_chips": compare(profile, other_profile, capable)}
        print(f"{name}: cost {seconds:.1f} s = {row['cost']['exact_evaluation_equivalents']:.2f} exact evaluations", flush=True)
        path = write_result("sensitivity", {
            "protocol": {"report_times_s": list(REPORT_TIMES_S), "cheap_times_s": list(calibration.times_s),
                         "competitors": COMPETITORS, "sequence_positions": SEQUENCE_POSITIONS,
                         "training": [n for n in TRAINING if n in raws], "noise": noise.name},
            "default_estimator": default, "calibration": calibration.to_dict(), "skipped": skipped,
            "summary": {"training": summarise(rows, "training"), "held_out": summarise(rows, "held_out")},
            "networks": rows})
    print_table(rows, default)
    print(f"wrote {path} and {CALIBRATION_PATH}")
    return 0


def print_table(rows: list[dict], default: str) -> None:
    print(f"default estimator (chosen on the training networks): {default}")
    print(f"{'network':12s} {'role':9s} {'estimator':17s} {'rho 1d':>7s} {'MAE 1d':>7s} {'top3':>5s} "
          f"{'rho 1y':>7s} {'MAE 1y':>7s} {'top3':>5s}")
    for row in sorted(rows, key=lambda r: (r["role"] != "training", r["network"])):
        for estimator in ESTIMATORS:
            cells = []
            for cell in row["agreement"][estimator].values():
                rho = "-" if cell["spearman"] is None else f"{cell['spearman']:.2f}"
                top = "-" if cell["top3_agree"] is None else ("yes" if cell["top3_agree"] else "no")
                cells.append(f"{rho:>7s} {cell['mae']:7.3f} {top:>5s}")
            print(f"{row['network']:12s} {row['role']:9s} {estimator:17s} " + " ".join(cells))
    print(f"{'network':12s} {'cheap s':>8s} {'exact eval s':>12s} {'equivalents':>11s} {'exact profile evals':>19s}")
    for row in rows:
        cost = row["cost"]
        print(f"{row['network']:12s} {cost['cheap_seconds']:8.1f} {cost['exact_evaluation']['seconds']:12.2f} "
              f"{cost['exact_evaluation_equivalents']:11.2f} {cost['exact_profile_evaluations']:19d}")


if __name__ == "__main__":
    use_fast_malloc()
    raise SystemExit(main())
