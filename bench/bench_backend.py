"""Artifact builds on each execution backend, side by side: serial, local process pool, Ray.

    python -m bench.bench_backend [--networks lenet5 resnet8] [--images 300] [--samples 20] [--rounds 3]

The same reduced-plan artifact build (``accuracy.profiles.build``: every analog-capable layer
alone at the 10 drift times, plus ``--samples`` random mappings; ``--images`` validation images,
one programming seed) of each network, timed on:

* ``serial_default_threads``: one process, torch's default thread count (the machine's cores);
* ``serial_one_thread``: one process, ``torch.set_num_threads(1)`` (does intra-op threading pay?);
* ``local``: the process pool (``os.cpu_count()`` workers of one thread), its start-up included
  (the forkserver it forks workers from starts once per process, in the first local run);
* ``ray``: Ray tasks on a local Ray instance of ``os.cpu_count()`` CPUs (skipped without ray);
  the instance is restarted before each run, and its start-up is reported apart.

Every run writes into a fresh temporary cache and artifact folder (committed files are never
touched) and starts with no oracle built in any process, so no run profits from another's work.
Rounds are interleaved, the order rotated each round, so machine load hits every variant alike;
the best round of each is reported. The artifacts of all variants must be identical (but for
their wall time). JSON in bench/results/backend.json.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from accuracy.backend import clear_process_oracles, local_ray_options, ray_available, shutdown_local_pool
from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from accuracy.profiles import ProfilePlan, build
from bench.common import write_result
from workloads.registry import NetworkSpec

NETWORKS = ("lenet5", "resnet8")
VARIANTS = ("serial_default_threads", "serial_one_thread", "local", "ray")


def start_ray() -> float:
    """(Re)start a local Ray instance of this machine's cores; the seconds it took."""
    import ray

    ray.shutdown()
    started = time.perf_counter()
    ray.init(**local_ray_options(), log_to_driver=False)
    return time.perf_counter() - started


def run(variant: str, networks: list[str], plan: ProfilePlan, folder: Path, default_threads: int) -> dict:
    """One timed build of every network on ``variant``; returns times and the artifacts."""
    clear_process_oracles()
    shutdown_local_pool()
    torch.set_num_threads(1 if variant == "serial_one_thread" else default_threads)
    startup = start_ray() if variant == "ray" else 0.0
    backend = "serial" if variant.startswith("serial") else variant
    noise = NoiseConfig(name="lionheart")
    times, artifacts = {}, {}
    with ResultCache(folder / f"{variant}-{time.time_ns()}.sqlite") as cache:
        for name in networks:
            started = time.perf_counter()
            document = build(NetworkSpec.zoo(name), noise, plan, cache, progress=False, backend=backend)
            times[name] = time.perf_counter() - started
            document.pop("seconds")
            artifacts[name] = document
    torch.set_num_threads(default_threads)
    if variant == "local":
        shutdown_local_pool()
    return {"seconds": times, "total_s": sum(times.values()), "startup_s": startup, "artifacts": artifacts}


def summarize(variant: str, runs: list[dict], serial_s: float) -> dict:
    """A variant's best round (least total time), every round's total, and its speed-up over the
    best serial run at torch's default thread count (Ray: also with its start-up counted)."""
    best = min(runs, key=lambda r: r["total_s"])
    summary = {"best_total_s": round(best["total_s"], 2),
               "best_per_network_s": {n: round(s, 2) for n, s in best["seconds"].items()},
               "all_totals_s": [round(r["total_s"], 2) for r in runs],
               "speedup_vs_serial": round(serial_s / best["total_s"], 3)}
    if variant == "ray":
        summary["ray_startup_s"] = round(best["startup_s"], 2)
        summary["speedup_vs_serial_with_startup"] = round(serial_s / (best["total_s"] + best["startup_s"]), 3)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    plan = ProfilePlan(images=args.images, seeds=(0,), samples=args.samples)
    default_threads = torch.get_num_threads()
    variants = [v for v in VARIANTS if v != "ray" or ray_available()]
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="bench_backend_") as folder:
        for round_index in range(args.rounds):
            order = variants[round_index % len(variants):] + variants[:round_index % len(variants)]
            for variant in order:
                result = run(variant, args.networks, plan, Path(folder), default_threads)
                runs[variant].append(result)
                print(f"round {round_index + 1} {variant:24s} {result['total_s']:7.1f} s "
                      + " ".join(f"{n} {s:.1f}" for n, s in result["seconds"].items())
                      + (f" (+ ray start-up {result['startup_s']:.1f} s)" if variant == "ray" else ""), flush=True)
    if "ray" in runs:
        import ray

        ray.shutdown()
    reference = runs["serial_default_threads"][0]["artifacts"]
    identical = all(r["artifacts"] == reference for values in runs.values() for r in values)
    serial = min(r["total_s"] for r in runs["serial_default_threads"])
    one_thread = min(r["total_s"] for r in runs["serial_one_thread"])
    summary = {variant: summarize(variant, runs[variant], serial) for variant in variants}
    evaluations = {n: len(reference[n]["samples"]["drops"]) + sum(
        value is not None for row in reference[n]["profile"]["drops"] for value in row) for n in args.networks}
    path = write_result("backend", {
        "plan": {"networks": args.networks, "images": args.images, "seeds": [0], "samples": args.samples,
                 "exact_evaluations": evaluations},
        "rounds": args.rounds, "default_threads": default_threads, "cpus": os.cpu_count(),
        "artifacts_identical": identical, "variants": summary,
        "one_thread_speed_over_default_threads": round(serial / one_thread, 3)})
    print(f"{'variant':24s} {'best s':>8s} {'vs serial':>9s}  per network (s)")
    for variant, row in summary.items():
        extra = (f"  (ray start-up {row['ray_startup_s']:.1f} s; with it {row['speedup_vs_serial_with_startup']:.2f}x)"
                 if variant == "ray" else "")
        print(f"{variant:24s} {row['best_total_s']:8.1f} {row['speedup_vs_serial']:8.2f}x  "
              + ", ".join(f"{n} {v:.1f}" for n, v in row["best_per_network_s"].items()) + extra)
    print(f"artifacts identical on every backend: {identical}")
    print(f"serial with 1 torch thread is {serial / one_thread:.2f}x the speed of "
          f"{default_threads} threads (torch's default)")
    print(f"wrote {path}")
    return 0 if identical else 1


if __name__ == "__main__":
    from common.runtime import use_fast_malloc

    use_fast_malloc()
    raise SystemExit(main())
