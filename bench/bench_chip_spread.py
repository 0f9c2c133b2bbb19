"""How much one programmed chip differs from the next: the zoo's all-analog accuracy over chips.

    python -m bench.bench_chip_spread [--networks ...] [--chips 8] [--images 1000] [--t-s 86400] [--name chip_spread]

For each zoo network: every analog-capable layer analog, drifted to t (1 day by default), on
``--chips`` programmed chips (programming seeds 100, 101, ...) and the first ``--images`` test
images (fast path, chips stacked in one pass). Reported: the all-digital accuracy, the mean
all-analog accuracy, its sample standard deviation over chips (the "seed std" of the zoo table)
and the chips a 95% interval of +-0.25 points on the mean would need at that spread. A network
whose chip-to-chip spread is large needs many chips before any statement about the chip
population can be made (``accuracy.population``).

For networks with batch normalisation, the same chips again with each chip's BN statistics
re-estimated on ``--recalibration-images`` training images (train mode, cumulative average):
where the spread and the drop collapse, they come from the per-chip shift of channel statistics
that frozen running statistics cannot follow, which device-aware fine-tuning with frozen BN
(``accuracy.hwa``) teaches the network to tolerate. The re-estimation is a diagnosis, not a
deployment step: the oracle and every mapping use the checkpoint's statistics.
JSON in bench/results/chip_spread.json (``--name``: another file, for another protocol).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from tqdm import tqdm

from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from bench.common import RESULTS_DIR, write_result
from common.runtime import use_fast_malloc
from common.units import DAY_S, human_time
from workloads.registry import NetworkSpec, zoo_names
from workloads.train_zoo import accuracy, batch_norm_layers


def spread(name: str, chips: int, images: int, t_s: float, recalibration_images: int) -> dict:
    seeds = tuple(range(100, 100 + chips))
    spec = NetworkSpec.zoo(name)
    oracle = AccuracyOracle(spec, NoiseConfig(name="lionheart"), images=images, seeds=seeds, split="test")
    capable = np.array([layer.analog_capable for layer in oracle.table.layers])
    start = time.perf_counter()
    result = oracle.evaluate(capable, t_s)
    seconds = time.perf_counter() - start
    row = {"network": name, "checkpoint": spec.checkpoint_sha256(), "chips": chips, "images": oracle.images,
           "t_s": t_s, "digital": result.baseline, "all_analog_mean": result.mean, "all_analog_std": result.std,
           "per_chip": list(result.per_seed), "chips_for_0_25_points": int(np.ceil((1.96 * result.std / 0.25) ** 2)),
           "seconds": seconds}
    if batch_norm_layers(oracle.model) and recalibration_images:
        train = spec.data().train.images[:recalibration_images]
        recalibrated = [bn_recalibrated_accuracy(oracle, capable, t_s, seed, train) for seed in seeds]
        row.update({"bn_recalibrated_mean": float(np.mean(recalibrated)),
                    "bn_recalibrated_std": float(np.std(recalibrated, ddof=1)),
                    "bn_recalibration_images": len(train)})
    return row


@torch.no_grad()
def bn_recalibrated_accuracy(oracle: AccuracyOracle, mapping: np.ndarray, t_s: float, seed: int,
                             train: torch.Tensor, batch: int = 500) -> float:
    """Accuracy (percent) on the oracle's images of chip ``seed`` with every BN layer's statistics
    re-estimated on ``train`` through that chip; the checkpoint's statistics are restored after."""
    with oracle.programmed_network(mapping, t_s, seed) as network:
        norms = batch_norm_layers(network)
        saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum)
                 for m in norms]
        try:
            for m in norms:
                m.reset_running_stats()
                m.momentum = None  # a cumulative average over the batches
            network.train()
            for start in range(0, len(train), batch):
                network(train[start:start + batch])
            return accuracy(network, oracle.data, batch)  # in eval mode, with the re-estimated statistics
        finally:
            network.eval()
            for m, (mean, var, count, momentum) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)
                m.momentum = momentum


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", nargs="+", default=zoo_names())
    parser.add_argument("--chips", type=int, default=8)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--t-s", type=float, default=DAY_S)
    parser.add_argument("--recalibration-images", type=int, default=2000,
                        help="training images per chip to re-estimate BN statistics on (0: skip that diagnosis)")
    parser.add_argument("--name", default="chip_spread",
                        help="result name: bench/results/<name>.json (another protocol, e.g. more chips, "
                             "in a file of its own)")
    args = parser.parse_args(argv)
    if not args.name.replace("_", "").isalnum():
        parser.error(f"--name {args.name!r}: letters, digits and underscores only (it names a file in bench/results)")
    torch.set_num_threads(1)
    rows = [spread(name, args.chips, args.images, args.t_s, args.recalibration_images)
            for name in tqdm(args.networks, desc="networks")]
    # networks measured earlier with the same protocol are kept (a run on a subset adds to them)
    previous = RESULTS_DIR / f"{args.name}.json"
    if previous.is_file():
        old = json.loads(previous.read_text())
        if (old.get("t_s"), old.get("chips"), old.get("images")) == (args.t_s, args.chips, args.images):
            mine = {r["network"] for r in rows}
            rows = [r for r in old.get("networks", []) if r["network"] not in mine] + rows
    path = write_result(args.name, {"t_s": args.t_s, "chips": args.chips, "images": args.images, "networks": rows})
    print(f"all layers analog at {human_time(args.t_s)}, {args.chips} chips, {args.images} test images")
    print(f"{'network':12s} {'digital':>8s} {'analog':>8s} {'chip sd':>8s} {'chips for +-0.25':>17s} "
          f"{'BN re-estimated: analog':>24s} {'chip sd':>8s}")
    for r in rows:
        recalibrated = (f"{r['bn_recalibrated_mean']:24.2f} {r['bn_recalibrated_std']:8.2f}"
                        if "bn_recalibrated_mean" in r else f"{'-':>24s} {'-':>8s}")
        print(f"{r['network']:12s} {r['digital']:8.2f} {r['all_analog_mean']:8.2f} {r['all_analog_std']:8.2f} "
              f"{r['chips_for_0_25_points']:17d} {recalibrated}")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    use_fast_malloc()
    raise SystemExit(main())
