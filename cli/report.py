"""Per-layer cost table of a network on a system, with all-digital and all-analog totals.

    python -m cli.report network=resnet20 hw=alpine_like
"""

from __future__ import annotations

from cli.plumbing import compose_or_exit, run_main
from hw_model.cost import NetworkCost, network_cost
from hw_model.system import HardwareConfigError, System
from workloads.registry import NetworkError, NetworkSpec


def format_report(cost: NetworkCost) -> str:
    header = ("#", "name", "kind", "MACs", "tiles", "dig us", "ana us", "dig uJ", "ana uJ", "speedup", "E gain")
    rows = [header]
    for r in cost.breakdown():
        capable = r["analog_capable"]
        rows.append((str(r["index"]), r["name"], r["kind"], f"{r['macs']:,}", str(r["tiles"]),
                     f"{r['digital_latency_s'] * 1e6:.2f}",
                     f"{r['analog_latency_s'] * 1e6:.2f}" if capable else "-",
                     f"{r['digital_energy_j'] * 1e6:.3f}",
                     f"{r['analog_energy_j'] * 1e6:.3f}" if capable else "-",
                     f"{r['speedup']:.2f}x" if capable else "digital-only",
                     f"{r['energy_gain']:.2f}x" if capable else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i in (1, 2) else c.rjust(w)
                               for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("-" * len(lines[0]))
    analog = cost.evaluate(cost.all_analog())
    system = cost.system
    lines += [
        "",
        f"{cost.table.network} on {system.name}: {system.cores.count} cores @ {system.cores.clock_ghz} GHz, "
        f"{system.tiles.count} tiles of {system.tiles.rows}x{system.tiles.cols}",
        f"  unmappable work: {cost.fixed_latency_s * 1e6:.2f} us, {cost.fixed_energy_j * 1e6:.3f} uJ",
        f"  all-digital: {cost.baseline.latency_s * 1e3:.4f} ms, {cost.baseline.energy_j * 1e6:.2f} uJ",
        f"  all-analog : {analog.latency_s * 1e3:.4f} ms, {analog.energy_j * 1e6:.2f} uJ, "
        f"speedup {analog.speedup:.2f}x, energy gain {analog.energy_gain:.2f}x, "
        f"tiles {analog.tiles_used}/{cost.tile_capacity}"
        + ("" if analog.feasible else "  (INFEASIBLE: more tiles than the system has)"),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cfg = compose_or_exit("report", argv)

    def report() -> int:
        system = System.from_dict(cfg.hw)
        print(format_report(network_cost(NetworkSpec.from_config(cfg.network), system)))
        return 0

    return run_main(report, (HardwareConfigError, NetworkError))


if __name__ == "__main__":
    raise SystemExit(main())
