"""Train a MaskablePPO mapping policy: ``python train.py [experiment=...] [key=value ...]``."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from common.runtime import use_fast_malloc


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    from agents.training import train

    metrics = train(cfg, HydraConfig.get().runtime.output_dir)
    print(f"run directory: {metrics['run_dir']}")
    print(f"TensorBoard:   .venv/bin/tensorboard --logdir {metrics['run_dir']}/tb")
    return float(metrics["best_score"])  # for sweepers


if __name__ == "__main__":
    use_fast_malloc()
    main()
