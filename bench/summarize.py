"""Markdown summary of the benchmark results in bench/results/ (for the README).

    python -m bench.summarize
"""

from __future__ import annotations

import json

from bench.common import RESULTS_DIR


def load(name: str) -> dict | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> int:
    lines = ["| benchmark | measured | target |", "| --- | --- | --- |"]
    cost = load("cost")
    if cost:
        lines.append(f"| cost model, ResNet-20 (`bench.bench_cost`) | {cost['precomputed_per_s']:,} mappings/s single, "
                     f"{cost['batch_per_s']:,}/s batched ({cost['precomputed_over_naive']}x naive recomputation) | >= 10,000/s |")
    oracle = load("oracle")
    if oracle:
        s = oracle["summary"]
        nets = ", ".join(f"{n['network']} {n['mean_abs_diff_points']:.2f} / {n['speedup_warm']:.1f}x"
                         for n in oracle["networks"])
        count = sum(n["evaluations"] for n in oracle["networks"])
        lines.append(f"| oracle fast vs reference (`bench.bench_oracle`), {count} paired evaluations | mean abs accuracy "
                     f"difference {s['mean_abs_diff_points']:.3f} points; {s['speedup_warm']:.1f}x faster with device "
                     f"states programmed ({s['speedup_cold']:.1f}x including programming); per network (diff / speed-up): "
                     f"{nets}; cache hit {1e3 * oracle['networks'][0]['cache_hit_s']:.2f} ms | <= 0.3 points, >= 10x |")
    surrogate = load("surrogate")
    if surrogate:
        for model, s in surrogate["summary"].items():
            lines.append(f"| surrogate `{model}` (`bench.bench_surrogate`), {len(surrogate['networks'])} networks | "
                         f"mean MAE {s['mean_mae']:.3f}, worst {s['worst_mae']:.3f} points; worst feasibility "
                         f"agreement {100 * s['worst_agreement']:.0f}% | MAE <= 0.5, agreement >= 95% |")
    env = load("env")
    if env:
        lines.append(f"| environment, {env['network']} (`bench.bench_env`) | {env['steps_per_s']['plain']:,} steps/s "
                     f"({env['steps_per_s']['shaping']:,} with shaping) | >= 5,000/s |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
