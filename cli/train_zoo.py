"""Train the network zoo on its datasets, then fine-tune it hardware-aware (``workloads.train_zoo``).

    python -m cli.train_zoo                                   # every zoo network, default recipe
    python -m cli.train_zoo --networks resnet20 --epochs 6 --hwa-epochs 1 --seed 0
    python -m cli.train_zoo --table                           # the README's zoo table
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

from workloads.registry import zoo_names
from workloads.train_zoo import CHECKPOINT_DIR, RECIPES, Recipe, accuracy_table, train_network


def chip_spread() -> dict[str, float]:
    """Per network, the chip-to-chip sd of the all-analog accuracy at 1 day, from
    bench/results/chip_spread.json (``python -m bench.bench_chip_spread``), if it was measured."""
    import json

    from common.paths import PROJECT_ROOT

    path = PROJECT_ROOT / "bench" / "results" / "chip_spread.json"
    if not path.is_file():
        return {}
    return {row["network"]: row["all_analog_std"] for row in json.loads(path.read_text())["networks"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="+", default=list(RECIPES), choices=zoo_names(),
                        help="zoo networks to train (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the recipe's training epochs")
    parser.add_argument("--hwa-epochs", type=int, help="override the recipe's hardware-aware epochs")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    parser.add_argument("--table", action="store_true", help="print the accuracy table of trained checkpoints and exit")
    args = parser.parse_args(argv)
    if args.table:
        print(accuracy_table(args.out, chip_spread()))
        return 0
    for name in args.networks:
        recipe = RECIPES[name]
        if args.epochs is not None:
            recipe = Recipe(**{**asdict(recipe), "epochs": args.epochs})
        if args.hwa_epochs is not None:
            recipe = Recipe(**{**asdict(recipe), "hwa_epochs": args.hwa_epochs})
        train_network(name, recipe, args.seed, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
