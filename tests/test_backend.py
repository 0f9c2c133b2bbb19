"""Execution backends for exact evaluations (accuracy/backend.py), on real LeNet-5 evaluations.

Serial, the local process pool and Ray (local instance; skipped without ray) must give the same
numbers and write the same cache rows as ``AccuracyOracle.evaluate``; the driver computes only
cache misses; a worker that dies is survived by retrying its jobs, and a job whose worker dies
twice is named in the error. Faults are injected with a picklable ``before_job`` hook defined
here (never in the library), which the worker calls before each job.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from accuracy.backend import (BackendError, EvalJob, EvaluationError, OracleOptions, clear_process_oracles,
                              evaluate_many, local_pool, local_ray_options, resolve_backend, shutdown_local_pool)
from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from accuracy.profiles import ProfilePlan, artifact_key, build, sample_mappings
from accuracy.surrogate import T_GRID_S, SensitivityProfile
from workloads.registry import NetworkSpec

IMAGES, SEEDS, BATCH = 200, (0, 1), 200
HOUR, YEAR = 3600.0, 365 * 86_400.0
NOISE = NoiseConfig(name="lionheart")
# Distinct analog mappings, one all-digital job and one repeated job (computed once).
MAPPINGS = [("10000", HOUR), ("01000", YEAR), ("00110", HOUR), ("11111", YEAR), ("10101", HOUR),
            ("00001", YEAR), ("00000", YEAR), ("10000", HOUR)]
POISON = ("00110", HOUR)
DIE_EXIT_CODE = 3


@pytest.fixture(scope="module")
def options() -> OracleOptions:
    return OracleOptions.of(NetworkSpec.zoo("lenet5"), NOISE, images=IMAGES, seeds=SEEDS, batch_size=BATCH)


@pytest.fixture(scope="module")
def jobs(options) -> list[EvalJob]:
    return [EvalJob(options, mapping, t_s) for mapping, t_s in MAPPINGS]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, options, jobs) -> tuple[list, list]:
    """What the oracle itself answers and stores, job by job: the results and the cache rows."""
    path = tmp_path_factory.mktemp("reference") / "cache.sqlite"
    oracle = AccuracyOracle(NetworkSpec.zoo("lenet5"), NOISE, images=IMAGES, seeds=SEEDS, batch_size=BATCH,
                            cache=ResultCache(path))
    results = [oracle.evaluate(job.bits(), job.t_s) for job in jobs]
    oracle.cache.close()
    return results, rows(path)


@pytest.fixture(scope="module", autouse=True)
def _stop_pool():
    yield
    shutdown_local_pool()
    clear_process_oracles()


def rows(path: Path) -> list[tuple]:
    """Every cache row but its creation time, in key order."""
    with sqlite3.connect(path) as raw:
        return raw.execute("SELECT key, kind, key_json, payload, checksum FROM results ORDER BY key").fetchall()


class Hook:
    """Picklable ``before_job``: logs each job it sees (one file per job, so concurrent workers
    never share a write) and makes the worker exit abruptly at ``die_on``, the first ``times``
    times (a marker file per death, so the count holds across processes)."""

    def __init__(self, folder: Path, die_on: tuple[str, float] | None = None, times: int = 0) -> None:
        self.folder, self.die_on, self.times = folder, die_on, times

    def __call__(self, job: EvalJob) -> None:
        tag = f"{job.mapping}-{job.t_s:g}"
        (self.folder / f"ran-{tag}-{os.getpid()}-{len(list(self.folder.iterdir()))}").touch()
        if self.die_on == (job.mapping, job.t_s):
            deaths = len(list(self.folder.glob("died-*")))
            if deaths < self.times:
                (self.folder / f"died-{deaths}").touch()
                os._exit(DIE_EXIT_CODE)

    def ran(self) -> list[str]:
        return sorted(p.name.split("-")[1] + "-" + p.name.split("-")[2] for p in self.folder.glob("ran-*"))

    def deaths(self) -> int:
        return len(list(self.folder.glob("died-*")))


def per_seed(results) -> list[tuple[float, ...]]:
    return [r.per_seed for r in results]


@pytest.mark.parametrize("backend", ["serial", "local"])
def test_backend_matches_the_oracle_numbers_and_rows(backend, jobs, reference, tmp_path):
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as cache:
        results = evaluate_many(jobs, backend=backend, cache=cache, progress=False)
    expected, expected_rows = reference
    assert results == expected  # AccuracyResult equality: mean, std, per seed, baseline, drop, t, images
    assert rows(path) == expected_rows
    assert len(expected_rows) == 7  # 6 distinct analog mappings and the baseline


def test_driver_sends_only_cache_misses(jobs, options, reference, tmp_path):
    path = tmp_path / "cache.sqlite"
    oracle = AccuracyOracle(NetworkSpec.zoo("lenet5"), NOISE, images=IMAGES, seeds=SEEDS, batch_size=BATCH)
    assert OracleOptions.from_oracle(oracle) == options
    stored = (12.5, 25.0)  # not what it would compute: proves the row was read, not recomputed
    with ResultCache(path) as cache:
        cache.put("accuracy", oracle.key(jobs[3].bits(), jobs[3].t_s), {"per_seed": list(stored)})
        hook = Hook(tmp_path / "log")
        hook.folder.mkdir()
        results = evaluate_many(jobs, backend="local", cache=cache, progress=False, before_job=hook)
    assert results[3].per_seed == stored
    # 8 jobs: one all-digital (no work), one repeated (computed once), one stored: 5 sent
    assert hook.ran() == sorted(f"{m}-{t:g}" for m, t in (MAPPINGS[i] for i in (0, 1, 2, 4, 5)))
    assert per_seed(results[:3]) == per_seed(reference[0][:3])


def check_one_death_is_survived(backend: str, jobs, reference, tmp_path, **options) -> None:
    """The poisoned job kills its worker once: the run completes with every result and row."""
    hook = Hook(tmp_path / "log", die_on=POISON, times=1)
    hook.folder.mkdir()
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as cache:
        results = evaluate_many(jobs, backend=backend, cache=cache, progress=False, before_job=hook, **options)
    assert hook.deaths() == 1
    assert results == reference[0]
    assert rows(path) == reference[1]


def test_a_worker_killed_mid_run_is_survived(jobs, reference, tmp_path):
    check_one_death_is_survived("local", jobs, reference, tmp_path, max_workers=2)


def test_a_job_whose_worker_dies_twice_is_named_and_finished_results_are_kept(jobs, reference, tmp_path):
    hook = Hook(tmp_path / "log", die_on=POISON, times=2)
    hook.folder.mkdir()
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as cache:
        with pytest.raises(EvaluationError, match=r"network lenet5, mapping 00110, t = 3600 s \(1 hour\).*died twice"):
            evaluate_many(jobs, backend="local", cache=cache, progress=False, before_job=hook, max_workers=2)
    assert hook.deaths() == 2
    kept = rows(path)
    poison_key = [row for row in reference[1] if '"mapping":"00110"' in row[2]]
    assert poison_key and not set(poison_key) & set(kept)
    assert set(kept) <= set(reference[1])  # what was stored is right
    assert len(kept) >= 2  # the baseline and results that finished before the failure were not lost


class Raises(Hook):
    """Picklable ``before_job`` that raises (a Python error, not a dying worker) at ``die_on``."""

    def __call__(self, job: EvalJob) -> None:
        super().__call__(job)
        if self.die_on == (job.mapping, job.t_s):
            raise RuntimeError("injected failure")


def test_a_python_error_in_a_job_is_named_not_retried(jobs, tmp_path):
    hook = Raises(tmp_path / "log", die_on=POISON)
    hook.folder.mkdir()
    with pytest.raises(EvaluationError, match=r"mapping 00110, t = 3600 s .*RuntimeError: injected failure"):
        evaluate_many(jobs, backend="local", progress=False, before_job=hook)
    assert hook.ran().count("00110-3600") == 1  # deterministic errors are not retried
    bad_time = EvalJob(jobs[0].options, "10000", float("inf"))
    with pytest.raises(ValueError, match="drift time"):  # checked by the driver before anything runs
        evaluate_many([bad_time], backend="local", progress=False)


def tiny_network(num_classes: int = 10, image_size: int = 8):
    """A small trained-from-nothing network of this test module's own (a builder only packages
    listed in AIMC_TRUSTED_PACKAGES may provide)."""
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * image_size * image_size, num_classes))


def test_workers_trust_the_packages_the_driver_trusts(tmp_path, monkeypatch):
    """A network from a package trusted only after the pool's workers started still builds there."""
    import torch

    local_pool(os.cpu_count() or 1).submit(os.getpid).result()  # workers exist, started without the setting
    monkeypatch.setenv("AIMC_TRUSTED_PACKAGES", "tests")
    torch.manual_seed(0)
    torch.save(tiny_network().state_dict(), tmp_path / "tiny.pt")
    spec = NetworkSpec.from_config({"name": "tiny_backend_test", "checkpoint": str(tmp_path / "tiny.pt"),
                                    "model": {"_target_": "tests.test_backend.tiny_network", "image_size": 8},
                                    "dataset": {"name": "digits", "validation_size": 150}})
    options = OracleOptions.of(spec, NOISE, images=100, seeds=(0, 1), batch_size=100)
    jobs = [EvalJob(options, mapping, HOUR) for mapping in ("10", "01", "11")]
    serial = evaluate_many(jobs, backend="serial", progress=False)
    assert evaluate_many(jobs, backend="local", progress=False) == serial


def test_auto_chooses_ray_only_with_an_address(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert resolve_backend("auto") == ("local" if (os.cpu_count() or 1) > 1 else "serial")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    try:
        import ray  # noqa: F401
        expected = "ray"
    except ImportError:
        expected = "local" if (os.cpu_count() or 1) > 1 else "serial"
    assert resolve_backend("auto") == expected
    with pytest.raises(BackendError, match="backend must be one of"):
        resolve_backend("threads")


def test_without_ray_auto_never_chooses_it_and_asking_for_it_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as without the optional extra
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    assert resolve_backend("auto") == ("local" if (os.cpu_count() or 1) > 1 else "serial")
    with pytest.raises(BackendError, match="make setup-ray"):
        resolve_backend("ray")


def old_build(spec: NetworkSpec, plan: ProfilePlan, cache: ResultCache) -> dict:
    """The artifact as the serial code before the backend measured it (one oracle, one by one)."""
    oracle = AccuracyOracle(spec, NOISE, images=plan.images, seeds=plan.seeds, cache=cache)
    capable = np.array([layer.analog_capable for layer in oracle.table.layers])
    mappings, t_s = sample_mappings(capable, plan)
    drops = oracle.sensitivity_profile(T_GRID_S)
    results = [oracle.evaluate(m, float(t)) for m, t in zip(mappings, t_s)]
    profile = SensitivityProfile(T_GRID_S, drops, np.array([layer.macs for layer in oracle.table.layers], float))
    return {"key": artifact_key(spec, NOISE, plan), "baseline": oracle.baseline(), "profile": profile.to_dict(),
            "samples": {"mappings": ["".join("1" if a else "0" for a in m) for m in mappings],
                        "t_s": t_s.tolist(), "drops": [r.drop for r in results],
                        "per_seed": [list(r.per_seed) for r in results]}}


def test_artifact_build_is_the_same_on_every_backend(tmp_path):
    spec, plan = NetworkSpec.zoo("lenet5"), ProfilePlan(images=100, seeds=(0,), samples=4)
    with ResultCache(tmp_path / "old.sqlite") as cache:
        expected = old_build(spec, plan, cache)
    for backend in ("serial", "local"):
        with ResultCache(tmp_path / f"{backend}.sqlite") as cache:
            built = build(spec, NOISE, plan, cache, progress=False, backend=backend)
        built.pop("seconds")
        assert built == expected, backend
        assert rows(tmp_path / f"{backend}.sqlite") == rows(tmp_path / "old.sqlite")


# ------------------------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray instance of 2 CPUs for this module (skipped when ray is not installed)."""
    ray = pytest.importorskip("ray", reason="ray is an optional extra (make setup-ray); the Ray backend is untested")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("RAY_ADDRESS", raising=False)
        ray.init(**local_ray_options(num_cpus=2), log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()


def test_ray_matches_the_oracle_and_survives_a_dying_worker(ray_local, jobs, reference, tmp_path):
    check_one_death_is_survived("ray", jobs, reference, tmp_path)


def test_ray_names_a_job_whose_worker_dies_twice(ray_local, jobs, tmp_path):
    hook = Hook(tmp_path / "log", die_on=POISON, times=2)
    hook.folder.mkdir()
    with pytest.raises(EvaluationError, match=r"network lenet5, mapping 00110, t = 3600 s \(1 hour\).*died twice"):
        evaluate_many(jobs, backend="ray", progress=False, before_job=hook)
