"""Training steps per second with one torch thread against torch's default, side by side.

    python -m bench.bench_training [--steps 4096] [--rounds 3] [--vec-env subproc|dummy]
    python -m bench.bench_training --load 2 --name training_threads_busy   # with 2 CPU-bound processes beside it

MaskablePPO as configured in ``conf/agent/maskable_ppo.yaml`` on the default training networks,
with the environments as ``conf/train.yaml`` runs them (``--vec-env subproc``, 2 worker processes)
or in-process (``--vec-env dummy``: only the torch thread count differs), rounds interleaved so
machine load hits both settings alike. Reports the best round of each and the ratio; ``train.torch_threads``
in ``conf/train.yaml`` follows this measurement. JSON in bench/results/training_threads.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch

from agents.ppo import build_model, make_vec_env
from agents.training import env_kwargs_from
from bench.common import write_result
from common.presets import entry_config, load_preset
from envs.tasks import build_tasks


def steps_per_second(threads: int, steps: int, tasks, cfg: dict, vec_env: str) -> float:
    torch.set_num_threads(threads)
    venv = make_vec_env(tasks, env_kwargs_from(cfg), cfg["n_envs"], 0, vec_env)
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
    parser.add_argument("--vec-env", choices=("subproc", "dummy"), default=entry_config("train")["train"]["vec_env"])
    parser.add_argument("--load", type=int, default=0, help="CPU-bound processes to run beside it (a busy machine)")
    parser.add_argument("--name", default="training_threads", help="results file name in bench/results/")
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    cfg = {"agent": load_preset("agent", "maskable_ppo"), "env": load_preset("env", "default"),
           "n_envs": entry_config("train")["train"]["n_envs"]}
    cfg["agent"].pop("_target_", None)
    tasks = build_tasks(entry_config("train")["train"]["networks"], progress=False)
    rates: dict[str, list[float]] = {"one_thread": [], "default_threads": []}
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        for _ in range(args.rounds):
            rates["one_thread"].append(steps_per_second(1, args.steps, tasks, cfg, args.vec_env))
            rates["default_threads"].append(steps_per_second(default_threads, args.steps, tasks, cfg, args.vec_env))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    best = {label: max(values) for label, values in rates.items()}
    ratio = best["one_thread"] / best["default_threads"]
    path = write_result(args.name, {"cpu_bound_processes_beside": args.load,
        "steps": args.steps, "rounds": args.rounds, "default_threads": default_threads, "vec_env": args.vec_env,
        "n_envs": cfg["n_envs"],
        "steps_per_s": {label: [round(v) for v in values] for label, values in rates.items()},
        "best_steps_per_s": {label: round(v) for label, v in best.items()}, "one_over_default": round(ratio, 2)})
    print(f"training ({args.vec_env}, {cfg['n_envs']} envs): {best['one_thread']:,.0f} steps/s with 1 torch thread, {best['default_threads']:,.0f} with "
          f"{default_threads} (torch's default): {ratio:.2f}x")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    from common.runtime import use_fast_malloc

    use_fast_malloc()
    raise SystemExit(main())
