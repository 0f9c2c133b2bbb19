"""Per-network accuracy artifacts: the sensitivity profile and exact samples for the surrogate.

    python -m cli.build_profiles --networks lenet5 resnet8     # (re)build and write the artifacts

Both are measured with the exact oracle (fast path) on the validation split and written to
``workloads/profiles/<network>.json`` beside the checkpoints, keyed by everything that changes
them (checkpoint hash, device-configuration digest, images, seeds, sampling plan, oracle
version). A missing or stale artifact is rebuilt when it is needed, never used. Its exact
evaluations are independent, so a build submits them all at once to an execution backend
(:mod:`accuracy.backend`: serial, a local process pool or Ray); the artifact does not depend on it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from accuracy.backend import EvalJob, OracleOptions, evaluate_many, process_oracle
from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from accuracy.oracle import ORACLE_VERSION, mapping_bits
from accuracy.surrogate import T_GRID_S, DropSurrogate, SensitivityProfile
from common.io import atomic_write
from common.paths import PROJECT_ROOT
from common.units import HOUR_S, YEAR_S
from workloads.registry import NetworkSpec

PROFILE_DIR = PROJECT_ROOT / "workloads" / "profiles"
DEFAULT_CACHE = PROJECT_ROOT / "cache" / "accuracy.sqlite"


@dataclass(frozen=True)
class ProfilePlan:
    """How much exact measurement one network's artifact takes."""

    images: int = 1000
    seeds: tuple[int, ...] = (0, 1)
    samples: int = 150  # random mappings with exact drops (surrogate fitting and checking)
    t_low_s: float = HOUR_S  # samples' drift times: log-uniform in [t_low, t_high]
    t_high_s: float = YEAR_S
    sample_seed: int = 0


def plan_for(spec: NetworkSpec) -> ProfilePlan:
    """The default plan with the network's own overrides (``profile:`` in its description)."""
    overrides = dict(spec.profile)
    if "seeds" in overrides:
        overrides["seeds"] = tuple(overrides["seeds"])
    return ProfilePlan(**overrides)


def artifact_key(spec: NetworkSpec, noise: NoiseConfig, plan: ProfilePlan) -> dict:
    """The key as it reads back from JSON (tuples become lists), so stored and fresh keys compare."""
    key = {"oracle": ORACLE_VERSION, "network": spec.name, "checkpoint": spec.checkpoint_sha256(),
           "device": noise.digest(), "t_grid": list(T_GRID_S), "plan": asdict(plan)}
    return json.loads(json.dumps(key))


@dataclass
class NetworkAccuracyData:
    profile: SensitivityProfile
    baseline: float
    mappings: np.ndarray  # (S, L) bool
    t_s: np.ndarray  # (S,)
    drops: np.ndarray  # (S,)
    per_seed: np.ndarray | None = None  # (S, K) accuracies per programming seed, when recorded

    def surrogate(self, model: str = "linear", train: slice = slice(None)) -> DropSurrogate:
        return DropSurrogate(self.profile, model).fit(self.mappings[train], self.t_s[train], self.drops[train])


def sample_mappings(capable: np.ndarray, plan: ProfilePlan) -> tuple[np.ndarray, np.ndarray]:
    """Random mappings of varied density (analog share uniform in [0.05, 0.95]) and drift times;
    none when no layer is analog-capable (there is nothing to sample)."""
    rng = np.random.default_rng(plan.sample_seed)
    if not np.any(capable):
        return np.zeros((0, len(capable)), bool), np.zeros(0)
    mappings = np.zeros((plan.samples, len(capable)), bool)
    for k in range(plan.samples):
        while not mappings[k].any():
            mappings[k] = (rng.random(len(capable)) < rng.uniform(0.05, 0.95)) & capable
    t_s = np.exp(rng.uniform(np.log(plan.t_low_s), np.log(plan.t_high_s), plan.samples))
    return mappings, t_s


def artifact_jobs(spec: NetworkSpec, noise: NoiseConfig, plan: ProfilePlan,
                  capable: np.ndarray) -> tuple[list[EvalJob], np.ndarray, np.ndarray]:
    """The artifact's exact evaluations, all independent: every analog-capable layer alone at each
    t of ``T_GRID_S`` (layer by layer), then the plan's sampled mappings; and those samples."""
    options = OracleOptions.of(spec, noise, images=plan.images, seeds=plan.seeds)
    mappings, t_s = sample_mappings(capable, plan)
    jobs = []
    for i in np.flatnonzero(capable):
        alone = np.zeros(len(capable), bool)
        alone[i] = True
        jobs += [EvalJob.of(options, alone, t) for t in T_GRID_S]
    jobs += [EvalJob.of(options, mapping, float(t)) for mapping, t in zip(mappings, t_s)]
    return jobs, mappings, t_s


def build(spec: NetworkSpec, noise: NoiseConfig, plan: ProfilePlan, cache: ResultCache | None,
          progress: bool = True, backend: str = "auto") -> dict:
    """Measure the artifact; its exact evaluations run on ``backend`` (``accuracy.backend``: "serial",
    "local", "ray" or "auto"), all submitted at once; the document does not depend on the backend."""
    options = OracleOptions.of(spec, noise, images=plan.images, seeds=plan.seeds)
    oracle = process_oracle(options)
    capable = np.array([layer.analog_capable for layer in oracle.table.layers])
    started = time.time()
    if not capable.any():
        print(f"{spec.name}: no analog-capable layer (only grouped/depthwise convolutions): nothing to map",
              file=sys.stderr)
    jobs, mappings, t_s = artifact_jobs(spec, noise, plan, capable)
    results = evaluate_many(jobs, backend=backend, cache=cache, progress=progress, desc=f"profile {spec.name}")
    drops = np.full((len(capable), len(T_GRID_S)), np.nan)
    singles = int(capable.sum()) * len(T_GRID_S)
    drops[capable] = np.array([result.drop for result in results[:singles]]).reshape(-1, len(T_GRID_S))
    samples = results[singles:]
    if not results:  # nothing analog-capable: the all-digital job answers the baseline
        results = evaluate_many([EvalJob.of(options, np.zeros(len(capable), bool), 0.0)], "serial", cache, False)
    baseline = results[0].baseline
    profile = SensitivityProfile(T_GRID_S, drops, np.array([layer.macs for layer in oracle.table.layers], float))
    return {"key": artifact_key(spec, noise, plan), "baseline": baseline, "profile": profile.to_dict(),
            "samples": {"mappings": [mapping_bits(m) for m in mappings],
                        "t_s": t_s.tolist(), "drops": [result.drop for result in samples],
                        "per_seed": [list(result.per_seed) for result in samples]},
            "seconds": round(time.time() - started, 1)}


def parse(data: dict) -> NetworkAccuracyData:
    samples = data["samples"]
    return NetworkAccuracyData(
        profile=SensitivityProfile.from_dict(data["profile"]), baseline=float(data["baseline"]),
        mappings=np.array([[c == "1" for c in m] for m in samples["mappings"]], dtype=bool),
        t_s=np.asarray(samples["t_s"], float), drops=np.asarray(samples["drops"], float),
        per_seed=np.asarray(samples["per_seed"], float) if "per_seed" in samples else None)


def load_or_build(spec: NetworkSpec, noise: NoiseConfig, plan: ProfilePlan | None = None,
                  directory: Path = PROFILE_DIR, cache_path: Path | None = DEFAULT_CACHE,
                  progress: bool = True, allow_build: bool = True, backend: str = "auto") -> NetworkAccuracyData:
    """The network's artifact, rebuilt (and written atomically) when missing or stale.

    With ``allow_build=False`` a missing or stale artifact raises FileNotFoundError instead.
    ``backend``: where a build's exact evaluations run (``accuracy.backend``).
    """
    plan = plan or plan_for(spec)
    path = directory / f"{spec.name}.json"
    key = artifact_key(spec, noise, plan)
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            if data.get("key") == key:
                return parse(data)
            reason = "it was made for another checkpoint, device configuration or plan"
        except (ValueError, KeyError, TypeError) as error:
            reason = f"it is unreadable ({error})"
    else:
        reason = "it does not exist"
    if not allow_build:
        raise FileNotFoundError(f"{path}: {reason}; build it with `python -m cli.build_profiles --networks {spec.name}`")
    if progress:
        print(f"building {path}: {reason}", file=sys.stderr)
    cache = ResultCache(cache_path) if cache_path else None
    data = build(spec, noise, plan, cache, progress, backend)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(data) + "\n")
    return parse(data)


def artifact_cost(spec: NetworkSpec, directory: Path = PROFILE_DIR) -> dict[str, Any] | None:
    """What building the network's artifact takes, from its file: exact evaluations (profile
    singles plus samples), their images and chips (the plan), and the seconds the build recorded
    (small when it was answered from the cache, so not a cost measurement). None without a file."""
    path = directory / f"{spec.name}.json"
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    singles = sum(1 for row in data["profile"]["drops"] for value in row if value is not None)
    plan = data["key"]["plan"]
    return {"evaluations": singles + len(data["samples"]["drops"]), "images": int(plan["images"]),
            "chips": len(plan["seeds"]), "recorded_seconds": data.get("seconds")}
