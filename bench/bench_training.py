"""Training steps per second with one torch thread against torch's default, side by side.

    python -m bench.bench_training [--steps 4096] [--rounds 3]

MaskablePPO as configured in ``conf/agent/maskable_ppo.yaml`` on the default training networks,
in-process environments (so only the torch thread count differs), rounds interleaved so machine
load hits both settings alike. Reports the best round of each and the ratio; ``train.torch_threads``
in ``conf/train.yaml`` follows this measurement. JSON in bench/results/training_threads.json.
"""

from __future__ import annotations

import argparse
import time

import torch

from agents.ppo import build_model, make_vec_env
from agents.training import env_kwargs_from
from bench.common import write_result
from common.presets import entry_config, load_preset
from envs.tasks import build_tasks


def steps_per_second(threads: int, steps: int, tasks, cfg: dict) -> float:
    torch.set_num_threads(threads)
    venv = make_vec_env(tasks, env_kwargs_from(cfg), 2, 0, "dummy")
    model = build_model(venv, cfg["agent"], 0, None)
    start = time.perf_counter()
    model.learn(steps)
    rate = model.num_timesteps / (time.perf_counter() - start)
    venv.close()
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    cfg = {"agent": load_preset("agent", "maskable_ppo"), "env": load_preset("env", "default")}
    cfg["agent"].pop("_target_", None)
    tasks = build_tasks(entry_config("train")["train"]["networks"], progress=False)
    rates: dict[str, list[float]] = {"one_thread": [], "default_threads": []}
    for _ in range(args.rounds):
        rates["one_thread"].append(steps_per_second(1, args.steps, tasks, cfg))
        rates["default_threads"].append(steps_per_second(default_threads, args.steps, tasks, cfg))
    best = {label: max(values) for label, values in rates.items()}
    ratio = best["one_thread"] / best["default_threads"]
    path = write_result("training_threads", {
        "steps": args.steps, "rounds": args.rounds, "default_threads": default_threads,
        "steps_per_s": {label: [round(v) for v in values] for label, values in rates.items()},
        "best_steps_per_s": {label: round(v) for label, v in best.items()}, "one_over_default": round(ratio, 2)})
    print(f"training: {best['one_thread']:,.0f} steps/s with 1 torch thread, {best['default_threads']:,.0f} with "
          f"{default_threads} (torch's default): {ratio:.2f}x")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from common.runtime import use_fast_malloc

    use_fast_malloc()
    raise SystemExit(main())
