"""Benchmark helpers: environment facts and JSON results in bench/results/."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from common.io import atomic_write
from common.units import DAY_S, YEAR_S

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The comparison's drift times, by the labels its rows carry.
TIMES = {"1 day": DAY_S, "1 year": YEAR_S}


def this_machine() -> dict[str, Any]:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "ld_preload": os.environ.get("LD_PRELOAD", ""),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


def write_result(name: str, payload: dict[str, Any], machine: dict[str, Any] | None = None) -> Path:
    """``machine``: the facts of the machine that measured (default: this one, now)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, "machine": machine or this_machine(), **payload}
    return atomic_write(RESULTS_DIR / f"{name}.json", json.dumps(document, indent=2) + "\n")


def rate(fn, count: int, repeats: int = 3) -> float:
    """Best-of-``repeats`` calls per second of ``fn(i)`` for i in range(count)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(count):
            fn(i)
        best = min(best, time.perf_counter() - start)
    return count / best


def objective(row: dict[str, Any]) -> float:
    """A result row's value in the environment's feasible reward with its default weights:
    ln speedup + 0.5 ln energy gain."""
    from envs.reward import RewardWeights, potential

    return potential(row["speedup"], row["energy_gain"], RewardWeights())


def certify_config() -> dict[str, Any]:
    """conf/evaluate.yaml's ``certify`` section (images, image offset, population plan)."""
    from omegaconf import OmegaConf

    from common.paths import CONF_DIR

    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "evaluate.yaml"))["certify"]


def add_row_arguments(parser, network: str = "resnet20", t: str = "1 day", threshold: float = 1.0,
                      method: str = "ppo") -> None:
    """--network, --t, --threshold, --method: one row of the comparison (``certified_row``)."""
    parser.add_argument("--network", default=network)
    parser.add_argument("--t", default=t, choices=list(TIMES))
    parser.add_argument("--threshold", type=float, default=threshold)
    parser.add_argument("--method", default=method)


def certified_row(parser, args) -> dict[str, Any]:
    """The comparison's certified row for the arguments of ``add_row_arguments``, or a usage error
    (exit 2) naming the command that makes it."""
    network, t, threshold, method = args.network, args.t, args.threshold, args.method
    compare = RESULTS_DIR / "compare.json"
    rows = json.loads(compare.read_text())["rows"] if compare.is_file() else []
    chosen = [r for r in rows if (r["network"], r["t"], r["threshold"], r["method"]) == (network, t, threshold, method)
              and r.get("certificate") == "holds"]
    if not chosen:
        parser.error(f"{compare} has no certified row for {network}, {t}, threshold {threshold}, method {method}; "
                     f"run python -m bench.bench_compare --networks {network} first")
    return chosen[0]


def write_rows(name: str, entry: dict[str, Any], fields: tuple[str, ...],
               defaults: dict[str, Any] | None = None) -> Path:
    """Write ``entry`` into bench/results/<name>.json's rows, replacing an earlier row with the same
    ``fields`` and keeping the others (results measured one network or mapping at a time).
    ``defaults``: a field's value in rows written before the field existed."""
    path = RESULTS_DIR / f"{name}.json"
    earlier = json.loads(path.read_text()).get("rows", []) if path.is_file() else []
    defaults = defaults or {}
    key = lambda row: tuple(row.get(field, defaults.get(field)) for field in fields)  # noqa: E731
    return write_result(name, {"rows": [r for r in earlier if key(r) != key(entry)] + [entry]})
