"""All-digital and all-analog cost of every zoo network on every hardware preset (Markdown).

    python -m hw_model.summary
"""

from __future__ import annotations

import yaml

from hw_model.report import network_cost
from hw_model.system import System
from workloads.registry import PROJECT_ROOT, NetworkSpec, zoo_names

HW_DIR = PROJECT_ROOT / "conf" / "hw"


def presets() -> dict[str, System]:
    return {path.stem: System.from_dict(yaml.safe_load(path.read_text())) for path in sorted(HW_DIR.glob("*.yaml"))}


def summary_markdown() -> str:
    lines = ["| network | hw | all-digital ms | all-digital uJ | all-analog speedup | all-analog energy gain | tiles needed / available |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in zoo_names():
        spec = NetworkSpec.zoo(name)
        for hw, system in presets().items():
            cost = network_cost(spec, system)
            analog = cost.evaluate(cost.all_analog())
            fits = "" if analog.feasible else " (does not fit)"
            lines.append(f"| `{name}` | {hw} | {cost.baseline.latency_s * 1e3:.3f} | {cost.baseline.energy_j * 1e6:.1f} | "
                         f"{analog.speedup:.2f}x | {analog.energy_gain:.2f}x | {analog.tiles_used} / {cost.tile_capacity}{fits} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary_markdown())
