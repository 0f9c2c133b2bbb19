"""How many mappings per second the cost model prices (ResNet-20, alpine_like).

    python -m bench.bench_cost

Three ways, measured side by side in one run: per-mapping recomputation of every layer cost
(what a naive environment would do), the precomputed single-mapping path the environment uses,
and the vectorised batch path. Target: at least 10,000 mappings per second.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import rate, write_result
from hw_model.cost import NetworkCost, analog_layer_cost, digital_layer_cost, network_cost
from hw_model.system import load_system
from workloads.registry import NetworkSpec

TARGET_PER_S = 10_000


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # --help; no options
    system = load_system("alpine_like")
    cost: NetworkCost = network_cost(NetworkSpec.zoo("resnet20"), system)
    rng = np.random.default_rng(0)
    mappings = rng.random((20_000, len(cost))) < 0.5
    layers = cost.table.layers

    def naive(i: int) -> float:
        m = mappings[i]
        return sum((analog_layer_cost if m[j] else digital_layer_cost)(layer, system).latency_s
                   for j, layer in enumerate(layers))

    naive_rate = rate(naive, 1_000)
    single_rate = rate(lambda i: cost.evaluate(mappings[i]), 20_000)
    start = time.perf_counter()
    cost.evaluate_batch(mappings)
    batch_rate = len(mappings) / (time.perf_counter() - start)
    result = {
        "network": "resnet20", "hw": system.name, "layers": len(cost),
        "naive_per_s": round(naive_rate), "precomputed_per_s": round(single_rate),
        "batch_per_s": round(batch_rate), "precomputed_over_naive": round(single_rate / naive_rate, 1),
        "target_per_s": TARGET_PER_S, "target_met": single_rate >= TARGET_PER_S,
    }
    path = write_result("cost", result)
    print(f"ResNet-20 on alpine_like ({len(cost)} layers), mappings costed per second:")
    print(f"  naive recomputation : {naive_rate:>12,.0f}")
    print(f"  precomputed, single : {single_rate:>12,.0f}  ({single_rate / naive_rate:.0f}x naive; "
          f"target {TARGET_PER_S:,}: {'met' if result['target_met'] else 'NOT met'})")
    print(f"  precomputed, batch  : {batch_rate:>12,.0f}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
