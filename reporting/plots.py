"""PNG plots of an evaluation: lifetime schedule, speedup against threshold, accuracy against time."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from common.io import atomic_write
from common.units import human_time


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buffer.getvalue())


def write_plots(out: Path, documents: dict[str, dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, doc in documents.items():
        points = doc["lifetime"]["points"]
        if points:
            layers = doc["network"]["layers"]
            grid = np.array([[1 if layer["target"] == "analog" else 0 for layer in p["layers"]] for p in points]).T
            fig, ax = plt.subplots(figsize=(2 + 1.1 * len(points), 0.25 * len(layers) + 1.5))
            ax.imshow(grid, cmap="coolwarm", vmin=0, vmax=1, aspect="auto", interpolation="nearest")
            ax.set_xticks(range(len(points)), [human_time(p["t_s"]) for p in points])
            kinds = [layer["kind"] for layer in points[0]["layers"]]
            ax.set_yticks(range(len(layers)), [f"{i}: {n} ({k})" for i, (n, k) in enumerate(zip(layers, kinds))],
                          fontsize=7)
            ax.set_title(f"{name}: lifetime schedule (red = analog), threshold {doc['lifetime']['threshold']} points")
            _save(fig, out / f"{name}_lifetime.png")

            fig, ax = plt.subplots(figsize=(6, 4))
            ts = [p["t_s"] for p in points]
            ax.plot(ts, [p["verified"]["mean"] for p in points], "o-", label="policy mapping (verified)")
            baseline = points[0]["verified"]["mean"] + points[0]["verified"]["drop"]
            ax.axhline(baseline, color="gray", ls="--", label="all digital")
            ax.axhline(baseline - doc["lifetime"]["threshold"], color="red", ls=":", label="threshold")
            ax.set_xscale("log")
            ax.set_xlabel("time after programming (s)")
            ax.set_ylabel("validation accuracy (%)")
            ax.set_title(f"{name}: accuracy against drift time")
            ax.legend()
            _save(fig, out / f"{name}_accuracy_vs_time.png")

        rows = [(r["method"], r["t_s"], r["threshold"], r["speedup"], r["feasible"]) for r in doc["results"]]
        rows += [(b["method"], b["t_s"], b["threshold"], b["speedup"], b["feasible"]) for b in doc["baselines"]]
        if rows:
            t_first = min(r[1] for r in rows)
            fig, ax = plt.subplots(figsize=(6, 4))
            for method in sorted({r[0] for r in rows}):
                sel = sorted((r[2], r[3] if r[4] else np.nan) for r in rows if r[0] == method and r[1] == t_first)
                ax.plot([s[0] for s in sel], [s[1] for s in sel], "o-", label=method)
            ax.set_xlabel("accuracy threshold (points)")
            ax.set_ylabel("verified speedup (infeasible omitted)")
            ax.set_title(f"{name}: speedup against threshold at t = {human_time(t_first)}")
            ax.legend(fontsize=8)
            _save(fig, out / f"{name}_speedup_vs_threshold.png")
