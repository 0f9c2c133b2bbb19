"""(Re)build the accuracy artifacts of zoo networks (``accuracy.profiles``): sensitivity profile
and exact samples, written to ``workloads/profiles/<network>.json``.

    python -m cli.build_profiles --networks lenet5 resnet8 [--noise lionheart]
"""

from __future__ import annotations

import argparse

import numpy as np

from accuracy.noise import NoiseConfigError, load_noise
from accuracy.profiles import load_or_build
from cli.plumbing import run_main
from common.runtime import use_fast_malloc
from workloads.registry import NetworkError, NetworkSpec, zoo_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", required=True, choices=zoo_names())
    parser.add_argument("--noise", default="lionheart", help="a conf/noise preset")
    args = parser.parse_args(argv)

    def build() -> int:
        noise = load_noise(args.noise)
        for name in args.networks:
            data = load_or_build(NetworkSpec.zoo(name), noise)
            print(f"{name}: baseline {data.baseline:.2f}%, {len(data.drops)} samples, "
                  f"max single-layer drop {np.nanmax(data.profile.drops):.2f} points")
        return 0

    return run_main(build, (NoiseConfigError, NetworkError))


if __name__ == "__main__":
    use_fast_malloc()
    raise SystemExit(main())
