"""(Re)build the accuracy artifacts of zoo networks (``accuracy.profiles``): sensitivity profile
and exact samples, written to ``workloads/profiles/<network>.json``.

    python -m cli.build_profiles --networks lenet5 resnet8 [--noise lionheart] [--backend auto]
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
from accuracy.profiles import DEFAULT_CACHE, PROFILE_DIR, load_or_build
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
    parser.add_argument("--directory", type=Path, default=PROFILE_DIR,
                        help=f"artifact folder (default {PROFILE_DIR})")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help=f"SQLite result cache, written by this process only (default {DEFAULT_CACHE})")
    args = parser.parse_args(argv)

    def build() -> int:
        noise = load_noise(args.noise)
        for name in args.networks:
            data = load_or_build(NetworkSpec.zoo(name), noise, directory=args.directory, cache_path=args.cache,
                                 backend=args.backend)
            print(f"{name}: baseline {data.baseline:.2f}%, {len(data.drops)} samples, "
                  f"max single-layer drop {np.nanmax(data.profile.drops):.2f} points")
        return 0

    return run_main(build, (NoiseConfigError, NetworkError, BackendError, EvaluationError))


if __name__ == "__main__":
    use_fast_malloc()
    raise SystemExit(main())
