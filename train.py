"""Train a MaskablePPO mapping policy: ``python train.py [experiment=...] [key=value ...]``."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from common.runtime import register_resolvers, use_fast_malloc

INTERRUPTED_EXIT_CODE = 130  # the shell's code for a Ctrl-C


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from agents.training import train
    from cli.checks import check_train
    from cli.plumbing import usage_errors

    out_dir = HydraConfig.get().runtime.output_dir
    with usage_errors():
        plain = OmegaConf.to_container(cfg, resolve=True)
        check_train(plain, out_dir)
        metrics = train(plain, out_dir)
    print(f"run directory: {metrics['run_dir']}")
    print(f"TensorBoard:   .venv/bin/tensorboard --logdir {metrics['run_dir']}/tb")
    if metrics["interrupted"]:
        print(f"interrupted: saved {metrics['run_dir']}/interrupted_model.zip", file=sys.stderr)
        sys.exit(INTERRUPTED_EXIT_CODE)
    return float(metrics["best_score"])  # for sweepers


if __name__ == "__main__":
    use_fast_malloc()
    register_resolvers()
    from cli.plumbing import precheck_overrides

    precheck_overrides("train")
    main()
