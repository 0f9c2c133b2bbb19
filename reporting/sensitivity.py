"""Per-layer drift sensitivity of one network: the accuracy drop with only that layer analog.

For every analog-capable layer (a transformer's projection, a CNN's convolution) and every
requested drift time, one exact evaluation with that layer alone on programmed PCM tiles and
every other layer digital, on the chosen split and programming seeds (chips). The report gives,
per layer, the mean drop over chips and its standard error, and says whether a few layers
dominate: the layers sorted by drop, the share of the summed drop the top ``k`` carry, the
ratio of the largest drop to the median one, and the smallest number of layers carrying half
of the sum.

This is the measurement the heterogeneous-mapping literature profiles (Lammie et al.,
"Heterogeneous Mapping for Analog In-Memory Computing Accelerators: A Unified Workflow", IEEE
CAL 2026, arXiv:2606.02672, profile GPT-2's 49 projections one at a time); it is independent
of the accuracy artifact (``accuracy.profiles``), whose profile uses the validation images and
search chips.

``measure`` runs the evaluations (on an execution backend, ``accuracy.backend``); ``write``
owns the JSON document (``<out>/<network>.json``) and its bar chart (``<out>/<network>.png``).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from accuracy.backend import EvalJob, OracleOptions, evaluate_many, process_oracle
from accuracy.cache import ResultCache
from accuracy.noise import NoiseConfig
from common.io import atomic_write
from common.units import human_time
from workloads.registry import NetworkSpec

SCHEMA = "aimc-sensitivity/1"
TOP_K = 4  # "a few layers": the reference names 4 of GPT-2's 49 projections


def measure(spec: NetworkSpec, noise: NoiseConfig, *, times_s: Sequence[float], images: int,
            seeds: Sequence[int], split: str, backend: str = "auto", cache: ResultCache | None = None,
            progress: bool = True) -> dict[str, Any]:
    """The sensitivity document of ``spec`` (see the module docstring); every layer alone at every time."""
    if not times_s or any(t <= 0 for t in times_s):
        raise ValueError(f"times_s must be positive drift times in seconds, got {list(times_s)}")
    options = OracleOptions.of(spec, noise, images=images, seeds=seeds, split=split)
    oracle = process_oracle(options)
    layers = oracle.table.layers
    capable = [i for i, layer in enumerate(layers) if layer.analog_capable]
    if not capable:
        raise ValueError(f"{spec.name} has no analog-capable layer: nothing to profile")
    jobs = []
    for i in capable:
        alone = np.zeros(len(layers), bool)
        alone[i] = True
        jobs += [EvalJob.of(options, alone, t) for t in times_s]
    started = time.time()
    results = evaluate_many(jobs, backend=backend, cache=cache, progress=progress, desc=f"sensitivity {spec.name}")
    seconds = time.time() - started
    rows = []
    for n, i in enumerate(capable):
        layer, per_time = layers[i], results[n * len(times_s):(n + 1) * len(times_s)]
        rows.append({
            "index": i, "name": layer.name, "kind": layer.kind, "macs": int(layer.macs),
            "drop": [r.drop for r in per_time],
            "drop_per_chip": [[r.baseline - a for a in r.per_seed] for r in per_time],
            "stderr": [r.std / np.sqrt(len(r.per_seed)) for r in per_time],
        })
    return {
        "schema": SCHEMA, "network": spec.name, "checkpoint": spec.checkpoint_sha256(),
        "device": noise.digest(), "split": split, "images": oracle.images, "seeds": list(oracle.seeds),
        "baseline": results[0].baseline, "times_s": [float(t) for t in times_s],
        "digital_only": [layer.name for layer in layers if not layer.analog_capable],
        "layers": rows, "dominance": [dominance(rows, j) for j in range(len(times_s))],
        "evaluations": len(jobs), "seconds": round(seconds, 1),
    }


def dominance(rows: list[dict[str, Any]], j: int, top_k: int = TOP_K) -> dict[str, Any]:
    """Do a few layers dominate at time index ``j``? Drops below zero count as zero (noise)."""
    drops = np.array([max(row["drop"][j], 0.0) for row in rows])
    order = np.argsort(-drops, kind="stable")
    total = float(drops.sum())
    cumulative = np.cumsum(drops[order]) / total if total > 0 else np.zeros(len(drops))
    median = float(np.median(drops))
    return {
        "ranking": [rows[i]["name"] for i in order],
        "top_k": top_k,
        "top_k_share": float(cumulative[min(top_k, len(drops)) - 1]) if total > 0 else 0.0,
        "layers_for_half": int(np.searchsorted(cumulative, 0.5) + 1) if total > 0 else 0,
        # None where the denominator is not positive (no ratio to speak of)
        "largest_over_median": float(drops[order[0]] / median) if median > 0 else None,
        "largest_over_second": (float(drops[order[0]] / drops[order[1]])
                                if len(drops) > 1 and drops[order[1]] > 0 else None),
        "summed_drop": total,
    }


def summary_lines(doc: dict[str, Any]) -> list[str]:
    """Plain-text reading of the document, one line per drift time."""
    lines = [f"{doc['network']}: {len(doc['layers'])} layers alone on analog tiles, {doc['split']} split, "
             f"{doc['images']} samples, chips (seeds) {doc['seeds']}, baseline {doc['baseline']:.2f}%, "
             f"{doc['evaluations']} exact evaluations in {doc['seconds']:.0f} s"]
    ratio = lambda value: "-" if value is None else f"{value:.1f}x"  # noqa: E731
    for t, d in zip(doc["times_s"], doc["dominance"]):
        top = ", ".join(d["ranking"][:d["top_k"]])
        if d["summed_drop"] <= 0:
            lines.append(f"  t = {human_time(t)}: no layer alone loses accuracy (every mean drop <= 0)")
            continue
        lines.append(f"  t = {human_time(t)}: summed drop {d['summed_drop']:.2f} points; top {d['top_k']} "
                     f"({top}) carry {100 * d['top_k_share']:.0f}%; {d['layers_for_half']} layer(s) carry half; "
                     f"largest / median {ratio(d['largest_over_median'])}, largest / second {ratio(d['largest_over_second'])}")
    return lines


def figure(doc: dict[str, Any]):
    """Bars per layer (in network order) at each drift time, with standard errors over chips;
    the bar colour is the layer's kind, and vertical lines separate transformer blocks / stages."""
    import matplotlib.pyplot as plt

    rows = doc["layers"]
    names = [row["name"] for row in rows]
    kinds = sorted({row["kind"] for row in rows})
    colours = {kind: plt.get_cmap("tab10")(i) for i, kind in enumerate(kinds)}
    times = doc["times_s"]
    fig, axes = plt.subplots(len(times), 1, figsize=(max(8.0, 0.32 * len(rows) + 2), 2.6 * len(times) + 0.8),
                             sharex=True, squeeze=False)
    x = np.arange(len(rows))
    groups = [name.rsplit(".", 2)[0] if name.count(".") >= 2 else name for name in names]
    for j, (ax, t) in enumerate(zip(axes[:, 0], times)):
        drops = np.array([row["drop"][j] for row in rows])
        errors = np.array([row["stderr"][j] for row in rows])
        ax.bar(x, drops, yerr=errors, color=[colours[row["kind"]] for row in rows], capsize=2, width=0.8)
        ax.axhline(0.0, color="black", linewidth=0.6)
        for k in range(1, len(groups)):
            if groups[k] != groups[k - 1]:
                ax.axvline(k - 0.5, color="grey", linewidth=0.6, linestyle=":")
        ax.set_ylabel("drop (points)")
        ax.set_title(f"t = {human_time(t)}: only this layer analog ({doc['split']} split, "
                     f"{len(doc['seeds'])} chips, mean and standard error)", fontsize=9)
    short = [name.replace("blocks.", "b").replace("attention.", "").replace("mlp.0", "fc1").replace("mlp.2", "fc2")
             for name in names]
    axes[-1, 0].set_xticks(x, short, rotation=90, fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[kind]) for kind in kinds]
    axes[0, 0].legend(handles, kinds, fontsize=8, loc="upper right")
    fig.suptitle(f"{doc['network']}: drift sensitivity per layer (baseline {doc['baseline']:.2f}%)", fontsize=10)
    fig.tight_layout()
    return fig


def paths(out: Path, network: str) -> tuple[Path, Path]:
    return out / f"{network}.json", out / f"{network}.png"


def write(doc: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """Write the JSON document and its figure (each atomically; the folder is made if missing)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    json_path, png_path = paths(out, doc["network"])
    json_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(json_path, (json.dumps(doc, indent=1) + "\n").encode())
    fig = figure(doc)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(png_path, buffer.getvalue())
    return json_path, png_path


def read(path: Path) -> dict[str, Any]:
    doc = json.loads(Path(path).read_text())
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a sensitivity document ({SCHEMA}); rebuild it with python -m cli.sensitivity")
    return doc
