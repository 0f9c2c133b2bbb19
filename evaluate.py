"""Emit verified mappings with a trained policy: ``python evaluate.py [policy=PATH] [networks=[...]]``."""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from common.runtime import register_resolvers, use_fast_malloc


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    from cli.checks import check_evaluate
    from cli.plumbing import usage_errors
    from reporting.evaluation import evaluate

    out_dir = HydraConfig.get().runtime.output_dir
    with usage_errors():
        plain = OmegaConf.to_container(cfg, resolve=True)
        check_evaluate(plain, out_dir)
        documents = evaluate(plain, out_dir)
    policies = {document["policy"] for document in documents.values()} - {None}
    print(f"mappings ({', '.join(documents)}) and report: {out_dir}/ (summary.md, summary.csv, *.json, *.png)"
          + (f"; policy: {', '.join(sorted(policies))}" if policies else ""))


if __name__ == "__main__":
    use_fast_malloc()
    register_resolvers()
    from cli.plumbing import precheck_overrides

    precheck_overrides("evaluate")
    main()
