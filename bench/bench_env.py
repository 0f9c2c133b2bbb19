"""Environment steps per second in one process, surrogate accuracy (ResNet-20 by default).

    python -m bench.bench_env [--network resnet20] [--steps 50000]

Random valid actions (sampled from the action mask). Measured side by side in one run: the plain
environment, with shaping, and the exact-oracle accuracy source is left out (it is cached
evaluation, not an inner-loop path). Target: at least 5,000 steps per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import write_result
from envs import LayerMappingEnv
from envs.tasks import build_task

TARGET = 5_000


def steps_per_second(env: LayerMappingEnv, steps: int, seed: int = 0) -> tuple[float, int]:
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    episodes = 0
    start = time.perf_counter()
    for _ in range(steps):
        mask = env.action_masks()
        action = int(rng.integers(2)) if mask[1] else 0
        _, _, terminated, _, _ = env.step(action)
        if terminated:
            episodes += 1
            env.reset()
    return steps / (time.perf_counter() - start), episodes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--network", default="resnet20")
    parser.add_argument("--steps", type=int, default=50_000)
    args = parser.parse_args(argv)
    task = build_task(args.network)
    rates = {}
    for label, env in (("plain", LayerMappingEnv([task])), ("shaping", LayerMappingEnv([task], shaping=True))):
        steps_per_second(env, 2_000)  # warm-up
        rates[label], episodes = steps_per_second(env, args.steps)
    result = {"network": args.network, "layers": len(task), "steps": args.steps,
              "steps_per_s": {k: round(v) for k, v in rates.items()}, "target_per_s": TARGET,
              "target_met": rates["plain"] >= TARGET}
    path = write_result("env", result)
    print(f"{args.network} ({len(task)} layers): {rates['plain']:,.0f} steps/s plain, "
          f"{rates['shaping']:,.0f} with shaping (target {TARGET:,}: {'met' if result['target_met'] else 'NOT met'})")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
