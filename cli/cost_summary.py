"""All-digital and all-analog cost of every zoo network on every hardware preset (Markdown).

    python -m cli.cost_summary
"""

from __future__ import annotations

from common.presets import preset_names
from hw_model.cost import network_cost
from hw_model.system import System, load_system
from workloads.registry import NetworkSpec, zoo_names


def presets() -> dict[str, System]:
    return {name: load_system(name) for name in preset_names("hw")}


def summary_markdown() -> str:
    lines = ["| network | hw | all-digital ms | all-digital uJ | all-analog speedup | all-analog energy gain | tiles needed / available |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    systems = presets()
    for name in zoo_names():
        spec = NetworkSpec.zoo(name)
        for hw, system in systems.items():
            cost = network_cost(spec, system)
            analog = cost.evaluate(cost.all_analog())
            fits = "" if analog.feasible else " (does not fit)"
            lines.append(f"| `{name}` | {hw} | {cost.baseline.latency_s * 1e3:.3f} | {cost.baseline.energy_j * 1e6:.1f} | "
                         f"{analog.speedup:.2f}x | {analog.energy_gain:.2f}x | {analog.tiles_used} / {cost.tile_capacity}{fits} |")
    return "\n".join(lines)


def main() -> int:
    print(summary_markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
