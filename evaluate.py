"""Emit verified mappings with a trained policy: ``python evaluate.py [policy=PATH] [networks=[...]]``."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from common.runtime import use_fast_malloc


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from reporting.evaluation import KNOWN_ERRORS, evaluate

    out_dir = HydraConfig.get().runtime.output_dir
    try:
        documents = evaluate(cfg, out_dir)
    except KNOWN_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"mappings ({', '.join(documents)}) and report: {out_dir}/ (summary.md, summary.csv, *.json, *.png)")


if __name__ == "__main__":
    use_fast_malloc()
    main()
