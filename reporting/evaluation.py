"""``evaluate(cfg, out_dir)``: verified mappings, lifetime schedules, reports and plots.

For each network x t x threshold: the trained policy's verified search (agents/verify.py,
exact evaluations on the validation split, repair when needed) and every mapping method of the
registry (``agents.methods``) that the configuration selects, side by side. Every mapping a
method emits as feasible is then certified: a population statement (``accuracy.population``) on
chips and validation images that no search used, with repair until it holds
(``certify.enabled``). Last, a final report on the test split with other chips again. Writes into ``out_dir``: ``<network>.json`` (the mapping file,
``reporting.mapping_file``), ``summary.csv``, ``summary.md`` and PNG plots. Every file is
written atomically. All inputs are checked before anything is written.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from accuracy.cache import ResultCache
from accuracy.noise import load_noise
from accuracy.oracle import AccuracyOracle, MappingError
from accuracy.profiles import DEFAULT_CACHE
from agents.methods import make_methods
from agents.policy_file import PolicyFileError, load_policy
from agents.ppo import PolicyMapper
from accuracy.population import PopulationPlan
from agents.verify import Certifier, ExactVerifier, certify_and_repair, policy_search, verify_and_repair
from common.io import atomic_write
from common.paths import PROJECT_ROOT
from common.units import LIFETIME_S, human_time
from envs.tasks import MappingTask, build_task
from hw_model.system import load_system
from reporting.mapping_file import (SCHEMA_VERSION, check_same_network, mapping_of, read_mapping_file, select,
                                    write_mapping_file)
from workloads.registry import NetworkError, NetworkSpec

NO_POLICY = "none"  # policy=none: only the mapping methods of the registry


class EvaluationInputError(ValueError):
    """Bad input to evaluate.py (printed as one line, exit code 2)."""


SKIPPED_EXPERIMENTS = ("smoke",)  # quick runs that must never silently become "the latest policy"


def _experiment(run: Path) -> str | None:
    try:
        return json.loads((run / "run.json").read_text()).get("experiment")
    except (OSError, ValueError, AttributeError):
        return None


def latest_policy(root: Path = PROJECT_ROOT / "outputs" / "train") -> Path:
    """The newest training run's best model (its final model if it never evaluated), skipping runs
    of the smoke experiment (their run.json says so)."""
    runs = [d for d in root.glob("*") if ((d / "best_model.zip").is_file() or (d / "final_model.zip").is_file())
            and _experiment(d) not in SKIPPED_EXPERIMENTS]
    if not runs:
        raise EvaluationInputError(f"no trained policy under {root} (smoke runs are skipped); train one with "
                                   "`python train.py` or pass policy=<path to a model .zip>")
    newest = max(runs, key=lambda d: max(p.stat().st_mtime for p in d.glob("*_model.zip")))
    best = newest / "best_model.zip"
    return best if best.is_file() else newest / "final_model.zip"


def network_specs(cfg: dict[str, Any]) -> list[NetworkSpec]:
    if cfg.get("network"):
        return [NetworkSpec.from_config(cfg["network"])]
    if not cfg.get("networks"):
        raise EvaluationInputError("give networks=[name, ...] or a network description (network.name=..., "
                                   "network.model._target_=..., network.checkpoint=..., network.dataset.name=...)")
    return [NetworkSpec.zoo(name) for name in cfg["networks"]]


def check_inputs(cfg: dict[str, Any]) -> tuple[list[NetworkSpec], Path | None]:
    """The networks and the policy file, checked before any work or output. (evaluate.py checks
    every other value first: ``cli.checks.check_evaluate``.)"""
    specs = network_specs(cfg)
    for spec in specs:
        model = spec.load()  # raises NetworkError for a missing or corrupt checkpoint
        if cfg.get("mapping_file"):
            from workloads.layers import build_layer_table

            names = [layer.name for layer in build_layer_table(model, spec.input_shape, spec.name).layers]
            check_same_network(read_mapping_file(cfg["mapping_file"]), spec, names)
    if cfg.get("mapping_file") or cfg.get("policy") == NO_POLICY:
        return specs, None
    policy = Path(cfg["policy"]) if cfg.get("policy") not in (None, "latest") else latest_policy()
    if not policy.is_file():
        raise EvaluationInputError(f"policy {policy} does not exist (give the .zip saved by train.py)")
    return specs, policy


def load_mapper(policy: Path) -> PolicyMapper:
    """The policy as a mapper; the file is read without running code (``agents.policy_file``)."""
    try:
        return PolicyMapper(load_policy(policy))
    except PolicyFileError as error:
        raise EvaluationInputError(f"policy {policy} cannot be loaded: {error}") from None


def accuracy_record(result, seeds, split: str) -> dict[str, Any]:
    return {"mean": result.mean, "std": result.std, "drop": result.drop, "images": result.images,
            "seeds": list(seeds), "split": split}


class NetworkEvaluator:
    """Everything evaluate needs for one network: task, exact oracles, counted verifier."""

    def __init__(self, spec: NetworkSpec, cfg: dict[str, Any]) -> None:
        self.spec, self.cfg = spec, cfg
        self.system = load_system(cfg["hw"])
        self.noise = load_noise(cfg["noise"], self.system.tiles.rows, self.system.tiles.cols)
        cache = ResultCache(cfg.get("cache") or DEFAULT_CACHE)
        profile = cfg["env"].get("profile", "exact")  # cheap: no accuracy artifact is read or built
        self.task: MappingTask = build_task(spec, hw=cfg["hw"], noise=cfg["noise"],
                                            surrogate_model=cfg["env"]["surrogate_model"],
                                            cache_path=cfg.get("cache") or DEFAULT_CACHE,
                                            profile=profile, artifact=profile == "exact",
                                            estimator=cfg["env"].get("estimator"))
        if not self.task.cost.analog_capable.any():
            print(f"{spec.name}: no analog-capable layer: nothing to map; every mapping is all-digital",
                  file=sys.stderr)
        verify, report = cfg["verify"], cfg["report"]
        self.validation = AccuracyOracle(spec, self.noise, images=verify["images"], seeds=verify["seeds"], cache=cache)
        self.test = AccuracyOracle(spec, self.noise, images=report["images"], seeds=report["seeds"],
                                   split="test", cache=cache)
        self.verifier = ExactVerifier(lambda m, t: self.validation.evaluate(m, t).drop, protocol=self._protocol)
        self._protocols: dict[tuple[int, int], AccuracyOracle] = {}
        certify = cfg.get("certify") or {"enabled": False}
        self.certifier: Certifier | None = None
        if certify.get("enabled") and self.task.cost.analog_capable.any():
            plan = PopulationPlan.of(certify.get("plan"))
            try:
                oracle = AccuracyOracle(spec, self.noise, images=certify["images"],
                                        image_offset=certify["image_offset"], seeds=plan.all_seeds(), cache=cache)
            except ValueError as error:
                raise EvaluationInputError(f"certify: {error}") from None
            self.certifier = Certifier(oracle, plan)

    def _protocol(self, images: int, chips: int):
        """Another search protocol on the validation split (``ExactVerifier.with_protocol``): its first
        ``images`` images (all of them when it has fewer) and chips 0 .. chips - 1; and the cost of one
        of its evaluations in evaluations of the standard verification (images x chips)."""
        key = (int(images), int(chips))
        if key not in self._protocols:
            images = min(int(images), len(self.spec.data().validation))
            self._protocols[key] = AccuracyOracle(self.spec, self.noise, images=images, seeds=tuple(range(chips)),
                                                  cache=self.validation.cache)
        oracle = self._protocols[key]
        weight = (oracle.images * len(oracle.seeds)) / (self.validation.images * len(self.validation.seeds))
        return (lambda m, t: oracle.evaluate(m, t).drop), weight

    @property
    def layer_names(self) -> list[str]:
        return [layer.name for layer in self.task.cost.table.layers]

    def result(self, method: str, mapping: np.ndarray, t_s: float, threshold: float, *, exact_evaluations: int,
               repaired_layers: int = 0, wall_s: float = 0.0, chip_passes: int = 0,
               repair: bool = True) -> dict[str, Any]:
        """One emitted mapping's full record: layers, predicted drop, the search's verification
        (validation split, search chips), the population statement (certification chips and
        images, after repair), the final report (test split, report chips) and cost.

        A mapping the search verified feasible is certified, and repaired until its statement
        holds; a mapping the search already found infeasible is reported as it is, uncertified.
        ``repair=False`` certifies without repairing (a mapping file is reported as written);
        ``chip_passes`` carries certification work already spent on this point."""
        mapping = np.asarray(mapping, bool)
        proposed = mapping
        start = time.perf_counter()
        certificate = None
        if self.certifier is not None and self.validation.evaluate(mapping, t_s).drop <= threshold:
            if repair:
                certified = certify_and_repair(self.task, mapping, t_s, threshold, self.certifier)
                mapping, certificate = certified.mapping, certified.statement
                chip_passes += certified.chip_passes
                repaired_layers += certified.repaired_layers
            else:
                before = self.certifier.chip_passes
                certificate = self.certifier(mapping, t_s, threshold)
                chip_passes += self.certifier.chip_passes - before
        wall_s += time.perf_counter() - start
        cost = self.task.cost.evaluate(mapping)
        verified = self.validation.evaluate(mapping, t_s)
        tested = self.test.evaluate(mapping, t_s)
        table = self.task.cost.table
        within = certificate.holds if certificate is not None else (
            self.certifier is None and verified.drop <= threshold)
        return {
            "method": method, "t_s": t_s, "threshold": threshold, "mapping": mapping.astype(int).tolist(),
            "proposed_mapping": proposed.astype(int).tolist(),
            "layers": [{"name": layer.name, "label": label, "kind": layer.kind,
                        "target": "analog" if mapping[i] else "digital",
                        "tiles": int(self.task.cost.tiles[i]), "macs": int(layer.macs)}
                       for i, (layer, label) in enumerate(zip(table.layers, table.labels()))],
            "predicted_drop": float(self.task.drop(mapping, t_s)) if mapping.any() else 0.0,
            "verified": accuracy_record(verified, self.validation.seeds, "validation"),
            "certified": self.certificate_record(certificate),
            "test": accuracy_record(tested, self.test.seeds, "test"),
            "speedup": cost.speedup, "energy_gain": cost.energy_gain, "tiles_used": cost.tiles_used,
            "feasible": bool(within and cost.feasible),
            "holds_on_test": bool(tested.drop <= threshold and cost.feasible),
            "exact_evaluations": exact_evaluations, "certification_chip_passes": chip_passes,
            "repaired_layers": repaired_layers, "wall_s": round(wall_s, 3),
        }

    def certificate_record(self, statement) -> dict[str, Any] | None:
        if statement is None:
            return None
        oracle = self.certifier.oracle
        return {**statement.to_dict(), "seeds": list(statement.seeds), "drops": list(statement.drops),
                "images": oracle.images, "image_offset": oracle.image_offset, "split": oracle.split}

    def policy_result(self, mapper: PolicyMapper, t_s: float, threshold: float) -> dict[str, Any]:
        start = time.perf_counter()
        verified = policy_search(mapper, self.task, t_s, threshold, self.verifier,
                                 evaluations=int(self.cfg.get("policy_evaluations", 2)))
        return self.result("ppo", verified.mapping, t_s, threshold, exact_evaluations=verified.exact_evaluations,
                           repaired_layers=verified.repaired_layers, wall_s=time.perf_counter() - start)

    def physical_schedule(self, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A lifetime schedule a chip can follow without reprogramming: every analog layer is
        programmed at deployment (t = 0) and ages from then on, so a layer may move analog ->
        digital later in life but never digital -> analog (it would need a tile programmed later,
        with a younger drift age). First :meth:`monotone_schedule`; then, from the first point on,
        each point keeps only layers that were analog at the point before; a mapping narrowed so
        is verified at its time (one exact evaluation) and repaired if it fails (repair only moves
        layers to digital, so the nesting holds)."""
        points = self.monotone_schedule(points)
        for k in range(1, len(points)):
            earlier, here = np.array(points[k - 1]["mapping"], bool), np.array(points[k]["mapping"], bool)
            if not (here & ~earlier).any():
                continue
            start, before = time.perf_counter(), self.verifier.evaluations
            repaired = verify_and_repair(self.task, here & earlier, points[k]["t_s"], points[k]["threshold"],
                                         self.verifier)
            points[k] = self.result(
                "ppo", repaired.mapping, points[k]["t_s"], points[k]["threshold"],
                exact_evaluations=points[k]["exact_evaluations"] + self.verifier.evaluations - before,
                repaired_layers=points[k]["repaired_layers"] + repaired.repaired_layers,
                wall_s=points[k]["wall_s"] + time.perf_counter() - start,
                chip_passes=points[k]["certification_chip_passes"])
        return points

    def monotone_schedule(self, points: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Drift only grows, so a mapping verified at a later time is a candidate for every earlier
        one: from the last point back, a later mapping that is faster replaces the earlier one if
        it verifies at the earlier time (one exact evaluation each). Afterwards the speedup rises
        from one point to the next only where the faster later mapping failed verification at the
        earlier time (measured drift is not perfectly monotone at the resolution of K seeds)."""
        points = list(points)
        for k in range(len(points) - 2, -1, -1):
            here, later = points[k], points[k + 1]
            if later["speedup"] <= here["speedup"]:
                continue
            mapping = np.array(later["mapping"], bool)
            start, before = time.perf_counter(), self.verifier.evaluations
            drop = self.verifier(mapping, here["t_s"])
            chip_passes = here["certification_chip_passes"]
            if drop <= here["threshold"] and self.certifier is not None:
                # it replaces the earlier mapping only if it holds there as it is (no repair)
                passes = self.certifier.chip_passes
                holds = self.certifier(mapping, here["t_s"], here["threshold"]).holds
                chip_passes += self.certifier.chip_passes - passes
            else:
                holds = drop <= here["threshold"]
            if not holds:
                points[k] = {**here, "certification_chip_passes": chip_passes}
            else:
                points[k] = self.result(
                    "ppo", mapping, here["t_s"], here["threshold"],
                    exact_evaluations=here["exact_evaluations"] + self.verifier.evaluations - before,
                    repaired_layers=here["repaired_layers"], wall_s=here["wall_s"] + time.perf_counter() - start,
                    chip_passes=chip_passes, repair=False)
        return points

    def baselines(self, t_s: float, threshold: float, selection=None,
                  starts: list[np.ndarray] = (), on_method=None) -> list[dict[str, Any]]:
        """Every selected mapping method of the registry at one point (``selection``, default the
        configuration's ``baselines``), each emitted mapping recorded (and certified) exactly as
        the policy's is (:meth:`result`). A method that takes starting mappings (the local search)
        is seeded with ``starts`` and every mapping proposed before it at this point.
        ``on_method(name)``, if given, is called as each method starts (progress)."""
        rows = []
        starts = [np.asarray(m, bool) for m in starts]
        selection = self.cfg["baselines"] if selection is None else selection
        for method in make_methods(self.task, self.verifier, selection, self.cfg.get("method_options")):
            if on_method is not None:
                on_method(method.name)
            start = time.perf_counter()
            if getattr(method, "accepts_starts", False):
                seeds = starts + [np.asarray(r[key], bool) for r in rows for key in ("proposed_mapping", "mapping")]
                proposal = method.propose(self.task, t_s, threshold, extra_starts=seeds)
            else:
                proposal = method.propose(self.task, t_s, threshold)
            rows.append(self.result(method.name, np.asarray(proposal.mapping, bool), t_s, threshold,
                                    exact_evaluations=proposal.exact_evaluations,
                                    wall_s=time.perf_counter() - start))
        return rows


def lifetime(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Layers that are analog at one lifetime point and digital at the next (the only moves a
    :meth:`NetworkEvaluator.physical_schedule` has)."""
    moves = []
    for before, after in zip(points, points[1:]):
        for a, b in zip(before["layers"], after["layers"]):
            if a["target"] == "analog" and b["target"] == "digital":
                moves.append({"layer": a["name"], "analog_until_t_s": before["t_s"], "digital_from_t_s": after["t_s"]})
    return moves


def evaluate_network(evaluator: NetworkEvaluator, cfg: dict[str, Any], mapper: PolicyMapper | None,
                     fixed: dict[str, Any] | None, policy: Path | None, advance) -> dict[str, Any]:
    """One network's mapping file document; ``advance()`` is called once per finished point."""
    results, baseline_rows = [], []
    for t_s in cfg["times_s"]:
        for threshold in cfg["thresholds"]:
            if fixed is not None:
                mapping = evaluator.validation.validate(mapping_of(select(fixed)))
                results.append(evaluator.result("file", mapping, t_s, threshold, exact_evaluations=1, repair=False))
            else:
                if mapper is not None:
                    results.append(evaluator.policy_result(mapper, t_s, threshold))
                baseline_rows += evaluator.baselines(t_s, threshold)
            advance()
    points = []
    for t_s in LIFETIME_S.values() if mapper is not None and cfg["lifetime_threshold"] is not None else ():
        points.append(evaluator.policy_result(mapper, t_s, cfg["lifetime_threshold"]))
        advance()
    points = evaluator.physical_schedule(points)
    return {
        "schema_version": SCHEMA_VERSION,
        "network": {"name": evaluator.spec.name, "checkpoint_sha256": evaluator.spec.checkpoint_sha256(),
                    "layers": evaluator.layer_names},
        "hw": evaluator.system.to_dict(),
        "device": {**dataclasses.asdict(evaluator.noise), "digest": evaluator.noise.digest()},
        "policy": str(policy) if policy else None,
        "results": results, "baselines": baseline_rows,
        "lifetime": {"threshold": cfg["lifetime_threshold"], "points": points, "moves_to_digital": lifetime(points)},
    }


SUMMARY_FIELDS = ("network", "t_s", "threshold", "method", "speedup", "energy_gain", "verified_drop",
                  "certificate", "certified_chips", "test_drop", "feasible", "holds_on_test", "exact_evaluations",
                  "certification_chip_passes", "wall_s")


def summary_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per mapping of a document (policy or file results first, then the methods)."""
    name = document["network"]["name"]
    rows = []
    for r in document["results"] + document["baselines"]:
        certificate = r.get("certified")
        rows.append({"network": name, "t_s": r["t_s"], "threshold": r["threshold"], "method": r["method"],
                     "speedup": r["speedup"], "energy_gain": r["energy_gain"], "verified_drop": r["verified"]["drop"],
                     "certificate": certificate["decision"] if certificate else "none",
                     "certified_chips": certificate["chips"] if certificate else 0,
                     "test_drop": r["test"]["drop"], "feasible": r["feasible"], "holds_on_test": r["holds_on_test"],
                     "exact_evaluations": r["exact_evaluations"],
                     "certification_chip_passes": r.get("certification_chip_passes", 0), "wall_s": r["wall_s"]})
    return rows


def evaluate(cfg: DictConfig | dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Evaluate as configured; returns {network: document} and writes the files (see module doc)."""
    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    specs, policy = check_inputs(cfg)
    mapper = load_mapper(policy) if policy else None
    if policy:
        print(f"policy: {policy}", file=sys.stderr)
    fixed = read_mapping_file(cfg["mapping_file"]) if cfg.get("mapping_file") else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    per_network = len(cfg["times_s"]) * len(cfg["thresholds"]) + (len(LIFETIME_S) if mapper is not None and cfg["lifetime_threshold"] is not None else 0)
    bar = tqdm(total=len(specs) * per_network, unit="point", desc="evaluating", dynamic_ncols=True,
               disable=not cfg.get("progress", True))
    documents, summary = {}, []
    for spec in specs:
        bar.set_postfix(network=spec.name)
        evaluator = NetworkEvaluator(spec, cfg)
        if fixed is not None:
            check_same_network(fixed, spec, evaluator.layer_names)
        document = evaluate_network(evaluator, cfg, mapper, fixed, policy, lambda: bar.update(1))
        write_mapping_file(out / f"{spec.name}.json", document)
        documents[spec.name] = document
        summary += summary_rows(document)
    bar.close()
    write_summaries(out, summary)
    from reporting.plots import write_plots

    write_plots(out, documents)
    return documents


def write_summaries(out: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SUMMARY_FIELDS))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "summary.csv", buffer.getvalue())
    lines = ["Drops in accuracy points below all-digital. *verified*: the validation split on the search's chips "
             "(what the method selected on); *certificate*: the population statement on other chips and images "
             "(holds / fails / undecided at cap, chips used); *test*: the test split on other chips again (report "
             "seeds). **NO** marks a mapping certified feasible whose test drop exceeds its threshold.", "",
             "| network | t | threshold | method | speedup | energy gain | verified drop | certificate | feasible | "
             "test drop | holds on test | exact evals | chip passes | wall s |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | --- | --- | ---: | --- | ---: | ---: | ---: |"]
    for r in rows:
        holds = "yes" if r["holds_on_test"] else ("**NO**" if r["feasible"] else "no")
        certificate = f"{r['certificate']} ({r['certified_chips']})" if r["certificate"] != "none" else "-"
        lines.append(f"| {r['network']} | {human_time(r['t_s'])} | {r['threshold']:g} | {r['method']} | "
                     f"{r['speedup']:.2f}x | {r['energy_gain']:.2f}x | {r['verified_drop']:.2f} | {certificate} | "
                     f"{'yes' if r['feasible'] else 'no'} | {r['test_drop']:.2f} | {holds} | "
                     f"{r['exact_evaluations']} | {r['certification_chip_passes']} | {r['wall_s']:.1f} |")
    atomic_write(out / "summary.md", "\n".join(lines) + "\n")


KNOWN_ERRORS = (EvaluationInputError, NetworkError, MappingError, FileNotFoundError)
