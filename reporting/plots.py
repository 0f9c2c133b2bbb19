"""PNG plots of an evaluation, per network:

* ``<network>_lifetime.png``: which layer is analog at each point of the lifetime schedule;
* ``<network>_accuracy_vs_time.png``: the schedule's accuracy against drift time, mean and
  standard deviation over chips, on the validation chips it was verified on and on the test split;
* ``<network>_speedup_vs_threshold.png``: speedup and energy gain of every method against the
  threshold at the first drift time; infeasible mappings are drawn as crosses, and methods that
  coincide are told apart by marker, line style and a small horizontal offset.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write
from common.units import human_time

MARKERS = ("o", "s", "^", "D", "v", "P", "*", "X")
LINESTYLES = ("-", "--", "-.", ":")
OFFSET = 0.015  # horizontal offset between methods, as a fraction of the threshold axis span


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def lifetime_figure(name: str, doc: dict[str, Any]):
    import matplotlib.pyplot as plt

    points = doc["lifetime"]["points"]
    labels = [layer.get("label", layer["name"]) for layer in points[0]["layers"]]
    grid = np.array([[1 if layer["target"] == "analog" else 0 for layer in p["layers"]] for p in points]).T
    fig, ax = plt.subplots(figsize=(3 + 1.1 * len(points), 0.25 * len(labels) + 1.5))
    ax.imshow(grid, cmap="coolwarm", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(points)), [human_time(p["t_s"]) for p in points])
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_title(f"{name}: lifetime schedule (red = analog), threshold {doc['lifetime']['threshold']} points")
    return fig


def accuracy_figure(name: str, doc: dict[str, Any]):
    import matplotlib.pyplot as plt

    points = doc["lifetime"]["points"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ts = np.array([p["t_s"] for p in points])
    for split, label, shift in (("verified", "validation, search chips", 0.97), ("test", "test, report chips", 1.03)):
        means = [p[split]["mean"] for p in points]
        spreads = [p[split]["std"] for p in points]
        seeds = len(points[0][split]["seeds"])
        ax.errorbar(ts * shift, means, yerr=spreads, fmt="o-", capsize=3,
                    label=f"policy schedule: {label} (mean +- sd over {seeds} chips)")
    baseline = points[0]["verified"]["mean"] + points[0]["verified"]["drop"]
    ax.axhline(baseline, color="gray", ls="--", label="all digital (validation)")
    ax.axhline(baseline - doc["lifetime"]["threshold"], color="red", ls=":", label="threshold (validation)")
    ax.set_xscale("log")
    ax.set_xticks(ts, [human_time(t) for t in ts])
    ax.set_xlabel("time after programming")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{name}: accuracy against drift time")
    ax.legend(fontsize=7)
    return fig


def tradeoff_figure(name: str, doc: dict[str, Any]):
    """Speedup and energy gain against threshold for every method at the first drift time."""
    import matplotlib.pyplot as plt

    rows = doc["results"] + doc["baselines"]
    t_first = min(r["t_s"] for r in rows)
    rows = [r for r in rows if r["t_s"] == t_first]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    thresholds = sorted({r["threshold"] for r in rows})
    span = (max(thresholds) - min(thresholds)) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for k, method in enumerate(methods):
        mine = sorted((r for r in rows if r["method"] == method), key=lambda r: r["threshold"])
        x = np.array([r["threshold"] for r in mine]) + (k - (len(methods) - 1) / 2) * OFFSET * span
        feasible = np.array([r["feasible"] for r in mine])
        style = {"marker": MARKERS[k % len(MARKERS)], "ls": LINESTYLES[k % len(LINESTYLES)]}
        for ax, key in zip(axes, ("speedup", "energy_gain")):
            y = np.array([r[key] for r in mine])
            line, = ax.plot(x, np.where(feasible, y, np.nan), label=method, **style)
            if (~feasible).any():  # drawn, so every method in the legend is visible
                ax.plot(x[~feasible], y[~feasible], ls="none", marker="x", ms=9, color=line.get_color())
    for ax, what in zip(axes, ("speedup", "energy gain")):
        ax.set_xlabel("accuracy threshold (points)")
        ax.set_ylabel(f"{what} over all-digital (x = not verified feasible)")
        ax.set_xticks(thresholds)
        ax.set_title(f"{name}: {what} at t = {human_time(t_first)}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_plots(out: Path, documents: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")

    for name, doc in documents.items():
        if doc["lifetime"]["points"]:
            _save(lifetime_figure(name, doc), out / f"{name}_lifetime.png")
            _save(accuracy_figure(name, doc), out / f"{name}_accuracy_vs_time.png")
        if doc["results"] or doc["baselines"]:
            _save(tradeoff_figure(name, doc), out / f"{name}_speedup_vs_threshold.png")
