"""(Re)build the accuracy artifacts of zoo networks (``accuracy.profiles``): sensitivity profile
and exact samples, written to ``workloads/profiles/<network>.json``; with ``--cheap``, the cheap
sensitivity estimates instead (``accuracy.cheap_sensitivity``), written to
``workloads/profiles/cheap/<network>.json``.

    python -m cli.build_profiles --networks lenet5 resnet8 [--noise lionheart] [--backend auto]
    python -m cli.build_profiles --cheap --networks lenet5 resnet8     # from the cache, else measured
    RAY_ADDRESS=<head>:<port> python -m cli.build_profiles --networks vgg11 --backend ray

The exact evaluations run on ``--backend`` (``accuracy.backend``): "serial", "local" (a process
pool on this machine's cores), "ray" (the cluster at RAY_ADDRESS, or a Ray instance started
here) or "auto". The artifact does not depend on the backend.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from accuracy.backend import BACKENDS, BackendError, EvaluationError
from accuracy.noise import NoiseConfigError, load_noise
from accuracy.cache import ResultCache
from accuracy.cheap_sensitivity import (CHEAP_DIR, CalibrationError, cached_cheap_profile, cheap_key,
                                        load_calibration, write_cheap_file)
from accuracy.oracle import AccuracyOracle
from accuracy.profiles import DEFAULT_CACHE, PROFILE_DIR, load_or_build, plan_for
from accuracy.surrogate import T_GRID_S
from cli.plumbing import run_main
from common.runtime import use_fast_malloc
from workloads.registry import NetworkError, NetworkSpec, zoo_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", required=True, choices=zoo_names())
    parser.add_argument("--noise", default="lionheart", help="a conf/noise preset")
    parser.add_argument("--backend", default="auto", choices=BACKENDS,
                        help="where the exact evaluations run (default: auto = ray when RAY_ADDRESS is set and "
                             "ray is installed, else a local process pool when there is more than one core)")
    parser.add_argument("--cheap", action="store_true",
                        help="write the cheap sensitivity estimates (no exact evaluation) instead of the artifacts")
    parser.add_argument("--directory", type=Path, default=None,
                        help=f"output folder (default {PROFILE_DIR}, with --cheap {CHEAP_DIR})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"SQLite result cache, written by this process only (default {DEFAULT_CACHE})")
    args = parser.parse_args(argv)

    def build() -> int:
        noise = load_noise(args.noise)
        if args.cheap:
            return write_cheap(args.networks, noise, args.directory or CHEAP_DIR, args.cache)
        for name in args.networks:
            data = load_or_build(NetworkSpec.zoo(name), noise, directory=args.directory or PROFILE_DIR,
                                 cache_path=args.cache,
                                 backend=args.backend)
            print(f"{name}: baseline {data.baseline:.2f}%, {len(data.drops)} samples, "
                  f"max single-layer drop {np.nanmax(data.profile.drops):.2f} points")
        return 0

    return run_main(build, (NoiseConfigError, NetworkError, BackendError, EvaluationError, CalibrationError))


def write_cheap(networks: list[str], noise, directory: Path, cache_path: Path) -> int:
    """Each network's cheap estimate on its artifact's images and chips (``plan_for``), exactly as
    a mapping task measures it: answered from the SQLite cache when it holds it (with the cost
    measured then), else measured; written to ``directory``."""
    cache = ResultCache(cache_path)
    for name in networks:
        spec = NetworkSpec.zoo(name)
        plan = plan_for(spec)
        oracle = AccuracyOracle(spec, noise, images=plan.images, seeds=plan.seeds, cache=cache)
        calibration = load_calibration()
        artifact = cached_cheap_profile(oracle, cache, calibration=calibration, progress=True, directory=None)
        path = write_cheap_file(artifact, cheap_key(oracle, calibration, None, T_GRID_S), name, directory)
        print(f"{name}: cheap estimate ({artifact.cost['seconds']:.0f} s when measured) -> {path}")
    return 0


if __name__ == "__main__":
    use_fast_malloc()
    raise SystemExit(main())
