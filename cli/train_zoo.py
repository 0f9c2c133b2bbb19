"""Train the network zoo on its datasets, then fine-tune it hardware-aware (``workloads.train_zoo``).

    python -m cli.train_zoo                                   # every zoo network, default recipe
    python -m cli.train_zoo --networks resnet20 --epochs 6 --hwa-epochs 1 --seed 0
    python -m cli.train_zoo --networks resnet8 --device-phase-only   # phase 3 on the committed phases 1-2
    python -m cli.train_zoo --table                           # the README's zoo table

Recipes with device-aware epochs (phase 3, ``workloads.train_zoo``) train against the device
model of ``--noise`` (a ``conf/noise`` preset, the one the oracle evaluates with by default).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from cli.plumbing import run_main
from workloads.registry import NetworkError, zoo_names
from workloads.train_zoo import CHECKPOINT_DIR, RECIPES, Recipe, RecipeError, accuracy_table, train_network


def chip_spread(results_dir: Path | None = None) -> dict[str, str]:
    """Per network, the chip-to-chip sd of the all-analog accuracy at 1 day from
    bench/results/chip_spread.json (``python -m bench.bench_chip_spread``: 8 chips, and with BN
    statistics re-estimated per chip where measured) and, in brackets, from
    bench/results/chip_spread_32.json (the same over 32 chips, ``--chips 32 --name chip_spread_32``),
    each only if it was measured with the current checkpoint (``results_dir``: default bench/results)."""
    import json

    from common.paths import PROJECT_ROOT
    from workloads.registry import NetworkSpec

    def current_rows(name: str) -> dict[str, dict]:
        path = (results_dir or PROJECT_ROOT / "bench" / "results") / f"{name}.json"
        if not path.is_file():
            return {}
        return {row["network"]: row for row in json.loads(path.read_text())["networks"]  # not an earlier checkpoint's
                if row.get("checkpoint") in (None, NetworkSpec.zoo(row["network"]).checkpoint_sha256())}

    eight, many = current_rows("chip_spread"), current_rows("chip_spread_32")
    cells = {}
    for network, row in eight.items():
        recalibrated = row.get("bn_recalibrated_std")
        cells[network] = f"{row['all_analog_std']:.2f}" + (f" / {recalibrated:.2f}" if recalibrated else "")
    for network, row in many.items():
        cells[network] = f"{cells.get(network, '-')} [{row['all_analog_std']:.2f}]"
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(RECIPES), choices=zoo_names(),
                        help="zoo networks to train (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the recipe's training epochs")
    parser.add_argument("--hwa-epochs", type=int, help="override the recipe's hardware-aware epochs")
    parser.add_argument("--device-epochs", type=int, help="override the recipe's device-aware epochs (phase 3)")
    parser.add_argument("--device-clip-norm", type=float,
                        help="override the recipe's gradient clipping in phase 3 (L2 norm; 0: none)")
    parser.add_argument("--device-phase-only", action="store_true",
                        help="run phase 3 alone on the checkpoint in --out, which must be phases 1-2 of the same recipe")
    parser.add_argument("--noise", default="lionheart", help="the conf/noise preset phase 3 trains against")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    parser.add_argument("--table", action="store_true", help="print the accuracy table of trained checkpoints and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(accuracy_table(args.out, chip_spread()))
        return 0

    def train() -> int:
        from accuracy.hwa import DeviceWeightNoise
        from accuracy.noise import load_noise

        for name in args.networks:
            recipe = RECIPES[name]
            overrides = {"epochs": args.epochs, "hwa_epochs": args.hwa_epochs, "device_epochs": args.device_epochs,
                         "device_clip_norm": args.device_clip_norm}
            recipe = Recipe(**{**asdict(recipe), **{k: v for k, v in overrides.items() if v is not None}})
            perturbation = DeviceWeightNoise(load_noise(args.noise)) if recipe.device_epochs else None
            train_network(name, recipe, args.seed, args.out, perturbation, args.device_phase_only)
        return 0

    from accuracy.noise import NoiseConfigError

    return run_main(train, (RecipeError, NoiseConfigError, NetworkError))


if __name__ == "__main__":
    sys.exit(main())
