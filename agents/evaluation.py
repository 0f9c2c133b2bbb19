"""``evaluate(cfg, out_dir)``: verified mappings, lifetime schedules, reports and plots.

For each network x t x threshold: a deterministic masked rollout of the trained policy, exact
verification on the validation split (K seeds) with repair when infeasible, and a final report
on the test split; every configured baseline side by side. Writes into ``out_dir``:
``<network>.json`` (schema ``agents/schemas/mapping.schema.json``), ``summary.csv``,
``summary.md`` and PNG plots. Every file is written atomically. All inputs are checked before
anything is written.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from agents import baselines as bl
from agents.ppo import PolicyMapper
from agents.verify import policy_search
from envs.tasks import MappingTask, build_task, load_noise, load_system
from hw_model.apply import check_same_network, read_mapping_file, select
from hw_model.cache import ResultCache
from hw_model.oracle import AccuracyOracle, MappingError
from hw_model.profiles import DEFAULT_CACHE
from workloads.registry import PROJECT_ROOT, NetworkError, NetworkSpec

SCHEMA_PATH = Path(__file__).parent / "schemas" / "mapping.schema.json"
LIFETIME_S = {"1 hour": 3600.0, "1 day": 86_400.0, "1 week": 7 * 86_400.0, "1 month": 30 * 86_400.0,
              "1 year": 365 * 86_400.0}


class EvaluationInputError(ValueError):
    """Bad input to evaluate.py (printed as one line, exit code 2)."""


def atomic_write(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)


def latest_policy(root: Path = PROJECT_ROOT / "outputs" / "train") -> Path:
    """The newest training run's best model (its final model if it never evaluated)."""
    runs = [d for d in root.glob("*") if (d / "best_model.zip").is_file() or (d / "final_model.zip").is_file()]
    if not runs:
        raise EvaluationInputError(f"no trained policy under {root}; train one with `python train.py` "
                                   "or pass policy=<path to a model .zip>")
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
    """Every user input, checked before any work or output."""
    for t_s in cfg["times_s"]:
        if not (isinstance(t_s, (int, float)) and t_s > 0):
            raise EvaluationInputError(f"drift times must be > 0 seconds, got {t_s!r} in times_s")
    for threshold in cfg["thresholds"]:
        if not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise EvaluationInputError(f"thresholds must be >= 0 points, got {threshold!r} in thresholds")
    specs = network_specs(cfg)
    for spec in specs:
        model = spec.load()  # raises NetworkError for a missing or corrupt checkpoint
        if cfg.get("mapping_file"):
            from workloads.layers import build_layer_table

            names = [layer.name for layer in build_layer_table(model, spec.input_shape, spec.name).layers]
            check_same_network(read_mapping_file(cfg["mapping_file"]), spec, names)
    if cfg.get("mapping_file"):
        return specs, None
    policy = Path(cfg["policy"]) if cfg.get("policy") not in (None, "latest") else latest_policy()
    if not policy.is_file():
        raise EvaluationInputError(f"policy {policy} does not exist (give the .zip saved by train.py)")
    return specs, policy


def accuracy_record(result, seeds, split: str) -> dict[str, Any]:
    return {"mean": result.mean, "std": result.std, "drop": result.drop, "images": result.images,
            "seeds": list(seeds), "split": split}


class NetworkEvaluator:
    """Everything evaluate needs for one network: task, exact oracles, baselines."""

    def __init__(self, spec: NetworkSpec, cfg: dict[str, Any]) -> None:
        self.spec, self.cfg = spec, cfg
        self.system = load_system(cfg["hw"])
        self.noise = load_noise(cfg["noise"], self.system)
        cache = ResultCache(cfg.get("cache") or DEFAULT_CACHE)
        self.task: MappingTask = build_task(spec, hw=cfg["hw"], noise=cfg["noise"],
                                            surrogate_model=cfg["env"]["surrogate_model"])
        verify, report = cfg["verify"], cfg["report"]
        self.validation = AccuracyOracle(spec, self.noise, images=verify["images"], seeds=verify["seeds"], cache=cache)
        self.test = AccuracyOracle(spec, self.noise, images=report["images"], seeds=report["seeds"],
                                   split="test", cache=cache)
        self.verifier = bl.ExactVerifier(lambda m, t: self.validation.evaluate(m, t).drop)

    def result(self, method: str, mapping: np.ndarray, t_s: float, threshold: float, exact_evaluations: int,
               repaired: int, wall_s: float) -> dict[str, Any]:
        table = self.task.cost.table
        cost = self.task.cost.evaluate(mapping)
        verified = self.validation.evaluate(mapping, t_s)
        tested = self.test.evaluate(mapping, t_s)
        return {
            "method": method, "t_s": t_s, "threshold": threshold, "mapping": mapping.astype(int).tolist(),
            "layers": [{"name": layer.name, "kind": layer.kind, "target": "analog" if mapping[i] else "digital",
                        "tiles": int(self.task.cost.tiles[i]), "macs": int(layer.macs)}
                       for i, layer in enumerate(table.layers)],
            "predicted_drop": float(self.task.drop(mapping, t_s)) if mapping.any() else 0.0,
            "verified": accuracy_record(verified, self.validation.seeds, "validation"),
            "test": accuracy_record(tested, self.test.seeds, "test"),
            "speedup": cost.speedup, "energy_gain": cost.energy_gain, "tiles_used": cost.tiles_used,
            "feasible": bool(verified.drop <= threshold and cost.feasible),
            "exact_evaluations": exact_evaluations, "repaired_layers": repaired, "wall_s": round(wall_s, 3),
        }

    def policy_result(self, mapper: PolicyMapper, t_s: float, threshold: float) -> dict[str, Any]:
        start = time.perf_counter()
        verified = policy_search(mapper, self.task, t_s, threshold, self.verifier,
                                 evaluations=int(self.cfg.get("policy_evaluations", 2)))
        wall = time.perf_counter() - start
        return self.result("ppo", verified.mapping, t_s, threshold, verified.exact_evaluations,
                           verified.repaired_layers, wall)

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
            if drop <= here["threshold"]:
                points[k] = self.result("ppo", mapping, here["t_s"], here["threshold"],
                                        here["exact_evaluations"] + self.verifier.evaluations - before,
                                        here["repaired_layers"], here["wall_s"] + time.perf_counter() - start)
        return points

    def baselines(self, t_s: float, threshold: float) -> list[dict[str, Any]]:
        methods: list[Any] = [bl.LionHeartGreedy(self.verifier), bl.SensitivityKnapsack(),
                              bl.RandomFeasible(seed=0), bl.AllAnalog()]
        if bl.ExhaustiveOptimum.applicable(self.task) and self.cfg.get("optimum", True):
            methods.append(bl.ExhaustiveOptimum(self.verifier))
        rows = []
        for method in methods:
            if method.name not in self.cfg["baselines"]:
                continue
            start = time.perf_counter()
            proposal = method.propose(self.task, t_s, threshold)
            drop = self.validation.evaluate(proposal.mapping, t_s).drop
            cost = self.task.cost.evaluate(proposal.mapping)
            rows.append({"method": method.name, "t_s": t_s, "threshold": threshold,
                         "mapping": proposal.mapping.astype(int).tolist(), "speedup": cost.speedup,
                         "energy_gain": cost.energy_gain, "verified_drop": drop,
                         "feasible": bool(drop <= threshold and cost.feasible),
                         "exact_evaluations": proposal.exact_evaluations,
                         "wall_s": round(time.perf_counter() - start, 3)})
        return rows


def lifetime(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Layers that are analog at one lifetime point and digital at the next."""
    moves = []
    for before, after in zip(points, points[1:]):
        for a, b in zip(before["layers"], after["layers"]):
            if a["target"] == "analog" and b["target"] == "digital":
                moves.append({"layer": a["name"], "analog_until_t_s": before["t_s"], "digital_from_t_s": after["t_s"]})
    return moves


def evaluate(cfg: DictConfig | dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Evaluate as configured; returns {network: document} and writes the files (see module doc)."""
    import jsonschema
    from sb3_contrib import MaskablePPO

    if isinstance(cfg, DictConfig):
        cfg = OmegaConf.to_container(cfg, resolve=True)
    specs, policy = check_inputs(cfg)
    mapper = None
    if policy:
        try:
            mapper = PolicyMapper(MaskablePPO.load(policy, device="cpu"))
        except Exception as error:  # SB3 raises many types for a damaged or foreign zip
            raise EvaluationInputError(f"policy {policy} cannot be loaded ({type(error).__name__}: "
                                       f"{str(error).splitlines()[0] if str(error) else ''}); give a .zip saved by "
                                       "train.py") from error
    fixed = read_mapping_file(cfg["mapping_file"]) if cfg.get("mapping_file") else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    schema = json.loads(SCHEMA_PATH.read_text())
    documents, summary = {}, []
    per_network = len(cfg["times_s"]) * len(cfg["thresholds"]) + (len(LIFETIME_S) if mapper is not None else 0)
    bar = tqdm(total=len(specs) * per_network, unit="point", desc="evaluating", dynamic_ncols=True,
               disable=not cfg.get("progress", True))
    for spec in specs:
        bar.set_postfix(network=spec.name)
        evaluator = NetworkEvaluator(spec, cfg)
        layer_names = [layer.name for layer in evaluator.task.cost.table.layers]
        if fixed is not None:
            check_same_network(fixed, spec, layer_names)
        results, baseline_rows = [], []
        for t_s in cfg["times_s"]:
            for threshold in cfg["thresholds"]:
                if fixed is not None:
                    mapping = np.array(select(fixed)["mapping"], bool)
                    evaluator.validation.validate(mapping)
                    results.append(evaluator.result("file", mapping, t_s, threshold, 1, 0, 0.0))
                    bar.update(1)
                    continue
                results.append(evaluator.policy_result(mapper, t_s, threshold))
                baseline_rows += evaluator.baselines(t_s, threshold)
                bar.update(1)
        points = []
        for t_s in LIFETIME_S.values() if mapper is not None else ():
            points.append(evaluator.policy_result(mapper, t_s, cfg["lifetime_threshold"]))
            bar.update(1)
        points = evaluator.monotone_schedule(points)
        document = {
            "schema_version": 1,
            "network": {"name": spec.name, "checkpoint_sha256": spec.checkpoint_sha256(), "layers": layer_names},
            "hw": evaluator.system.to_dict(),
            "device": {**dataclasses.asdict(evaluator.noise), "digest": evaluator.noise.digest()},
            "policy": str(policy) if policy else None,
            "results": results, "baselines": baseline_rows,
            "lifetime": {"threshold": cfg["lifetime_threshold"], "points": points, "moves_to_digital": lifetime(points)},
        }
        jsonschema.validate(document, schema)
        atomic_write(out / f"{spec.name}.json", json.dumps(document, indent=2) + "\n")
        documents[spec.name] = document
        for row in results:
            summary.append({"network": spec.name, "t_s": row["t_s"], "threshold": row["threshold"],
                            "method": row["method"], "speedup": row["speedup"], "energy_gain": row["energy_gain"],
                            "verified_drop": row["verified"]["drop"], "test_drop": row["test"]["drop"],
                            "feasible": row["feasible"], "exact_evaluations": row["exact_evaluations"],
                            "wall_s": row["wall_s"]})
        for row in baseline_rows:
            summary.append({"network": spec.name, "t_s": row["t_s"], "threshold": row["threshold"],
                            "method": row["method"], "speedup": row["speedup"], "energy_gain": row["energy_gain"],
                            "verified_drop": row["verified_drop"], "test_drop": None, "feasible": row["feasible"],
                            "exact_evaluations": row["exact_evaluations"], "wall_s": row["wall_s"]})
    bar.close()
    write_summaries(out, summary)
    from agents.plots import write_plots

    write_plots(out, documents)
    return documents


def write_summaries(out: Path, rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    fields = ["network", "t_s", "threshold", "method", "speedup", "energy_gain", "verified_drop", "test_drop",
              "feasible", "exact_evaluations", "wall_s"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(out / "summary.csv", buffer.getvalue())
    lines = ["| network | t (s) | threshold | method | speedup | energy gain | verified drop | feasible | exact evals | wall s |",
             "| --- | ---: | ---: | --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['network']} | {r['t_s']:g} | {r['threshold']:g} | {r['method']} | {r['speedup']:.2f}x | "
                     f"{r['energy_gain']:.2f}x | {r['verified_drop']:.2f} | {'yes' if r['feasible'] else 'no'} | "
                     f"{r['exact_evaluations']} | {r['wall_s']:.1f} |")
    atomic_write(out / "summary.md", "\n".join(lines) + "\n")


KNOWN_ERRORS = (EvaluationInputError, NetworkError, MappingError, FileNotFoundError)
