"""Train a bring-your-own network description with the zoo's recipe (``workloads.train_zoo``).

    AIMC_TRUSTED_PACKAGES=bench.networks python -m bench.networks.train                 # the mixer
    AIMC_TRUSTED_PACKAGES=bench.networks python -m bench.networks.train bench/networks/mixer.yaml \
        --epochs 10 --hwa-epochs 2 --seed 0

The zoo's trainer (``workloads.train_zoo.train_network``) on a ``NetworkSpec`` read from a
description file: standard training, then hardware-aware fine-tuning at a tenth of the learning
rate with additive weight noise of ``HWA_NOISE_STD`` x max|W| per layer. It writes
``<checkpoint>`` (a state dict), and ``.json`` / ``.log`` beside it in the zoo's format
(``workloads/checkpoints/*.json``); the checkpoint's file name must be ``<name>.pt``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import yaml

from workloads.registry import NetworkSpec
from workloads.train_zoo import Recipe, train_network

DEFAULT_DESCRIPTION = Path(__file__).resolve().parent / "mixer.yaml"
# The zoo's AdamW recipe for its token model (RECIPES["vit"]: lr 2e-3, weight decay 0.05, batch
# 128, 2 HWA epochs) with 10 instead of 15 epochs, on one thread (bitwise reproducible, and the
# machine is shared).
MIXER_RECIPE = Recipe(epochs=10, hwa_epochs=2, lr=2e-3, optimizer="adamw", weight_decay=0.05, torch_threads=1)


def load_description(path: str | Path) -> NetworkSpec:
    spec = NetworkSpec.from_config(yaml.safe_load(Path(path).read_text()))
    if spec.checkpoint_path.name != f"{spec.name}.pt":
        raise ValueError(f"{path}: the trainer writes <name>.pt beside the checkpoint; name the checkpoint "
                         f"{spec.name}.pt (it is {spec.checkpoint_path.name})")
    return spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("description", nargs="?", type=Path, default=DEFAULT_DESCRIPTION)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the recipe's training epochs")
    parser.add_argument("--hwa-epochs", type=int, help="override the recipe's hardware-aware epochs")
    args = parser.parse_args(argv)
    recipe = MIXER_RECIPE
    if args.epochs is not None:
        recipe = Recipe(**{**asdict(recipe), "epochs": args.epochs})
    if args.hwa_epochs is not None:
        recipe = Recipe(**{**asdict(recipe), "hwa_epochs": args.hwa_epochs})
    try:
        spec = load_description(args.description)
    except (OSError, ValueError, yaml.YAMLError) as error:
        parser.error(str(error))
    train_network(spec, recipe, args.seed, spec.checkpoint_path.parent)  # writes <checkpoint>, .json, .log
    return 0


if __name__ == "__main__":
    sys.exit(main())
