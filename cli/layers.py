"""Print a network's layer table: mappable layers, MACs, tiles (``workloads.layers``).

    python -m cli.layers network=resnet20 [tile.rows=256 tile.cols=256]
"""

from __future__ import annotations

from cli.plumbing import compose_or_exit, run_main
from workloads.layers import build_layer_table
from workloads.registry import NetworkError, NetworkSpec


def main(argv: list[str] | None = None) -> int:
    cfg = compose_or_exit("layers", argv)

    def show() -> int:
        spec = NetworkSpec.from_config(cfg.network)
        table = build_layer_table(spec.build(), spec.input_shape, spec.name, int(cfg.tile.rows), int(cfg.tile.cols))
        print(table.format())
        return 0

    return run_main(show, (NetworkError, ValueError))


if __name__ == "__main__":
    raise SystemExit(main())
