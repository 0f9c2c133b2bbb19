"""Surrogate quality per zoo network on held-out random mappings.

    python -m bench.bench_surrogate

Uses each network's accuracy artifact (``workloads/profiles/<network>.json``: sensitivity
profile + exact samples of random mappings at t log-uniform in [1 hour, 1 year]; 150 by default).
Each model is fitted on the first two thirds of the samples and scored on the last third: mean
absolute error (target
<= 0.5 points), Spearman rank correlation, and agreement of the feasibility decision
(drop <= threshold) at thresholds 1, 2 and 5 points (target >= 95%). JSON in bench/results/.

The exact labels are themselves measurements with K programming seeds, the same seeds the
exact verification uses (a layer programmed with seed k has the same device state in every
mapping), so a surrogate is judged against exactly what verification will measure. How far such
a K-seed measurement is from the mean over many programmed chips is a different question, and
is reported beside it where the artifact recorded per-seed accuracies (K >= 2): the standard
error SE of each label and the expected |K-seed label - population mean| = sqrt(2/pi) SE.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from bench.common import write_result
from accuracy.noise import NoiseConfig
from accuracy.profiles import load_or_build
from accuracy.surrogate import MODELS
from workloads.registry import NetworkSpec, zoo_names

THRESHOLDS = (1.0, 2.0, 5.0)
TRAIN_FRACTION = 2 / 3
TARGET_MAE, TARGET_AGREEMENT = 0.5, 0.95


def score(predicted: np.ndarray, exact: np.ndarray) -> dict:
    rho = spearmanr(predicted, exact)[0] if np.std(predicted) > 0 and np.std(exact) > 0 else float("nan")
    return {"mae": float(np.abs(predicted - exact).mean()), "spearman": float(rho),
            "agreement": {str(t): float(np.mean((predicted <= t) == (exact <= t))) for t in THRESHOLDS},
            "near_threshold_share": {str(t): float(np.mean(np.abs(exact - t) < 0.25)) for t in THRESHOLDS}}


def label_noise(per_seed: np.ndarray | None) -> dict | None:
    """How far K-seed labels are from the mean over programmed chips (module docstring)."""
    if per_seed is None or per_seed.shape[1] < 2:
        return None
    se = per_seed.std(axis=1, ddof=1) / np.sqrt(per_seed.shape[1])
    return {"seeds": int(per_seed.shape[1]), "mean_se": float(se.mean()),
            "expected_abs_error_vs_population": float(np.sqrt(2 / np.pi) * se.mean())}


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)  # --help; no options
    noise = NoiseConfig(name="lionheart")
    results, missing = {}, []
    for name in zoo_names():
        try:
            data = load_or_build(NetworkSpec.zoo(name), noise, allow_build=False)
        except FileNotFoundError:
            missing.append(name)
            continue
        train_count = int(round(len(data.drops) * TRAIN_FRACTION))
        test = slice(train_count, None)
        per_model = {}
        for model in MODELS:
            surrogate = data.surrogate(model, slice(0, train_count))
            start = time.perf_counter()
            predicted = surrogate.predict(data.mappings[test], data.t_s[test])
            per_model[model] = {**score(predicted, data.drops[test]),
                                "predict_us_per_mapping": 1e6 * (time.perf_counter() - start) / len(predicted)}
        results[name] = {"baseline": data.baseline, "train_samples": train_count,
                         "test_samples": len(data.drops) - train_count, "exact_drop_mean": float(data.drops[test].mean()),
                         "exact_drop_max": float(data.drops[test].max()), "models": per_model,
                         "label_noise": label_noise(None if data.per_seed is None else data.per_seed[test])}
    best = {name: min(r["models"], key=lambda m: r["models"][m]["mae"]) for name, r in results.items()}
    summary = {}
    for model in MODELS:
        maes = [r["models"][model]["mae"] for r in results.values()]
        agreements = [min(r["models"][model]["agreement"].values()) for r in results.values()]
        summary[model] = {"mean_mae": float(np.mean(maes)), "worst_mae": float(np.max(maes)),
                          "worst_agreement": float(np.min(agreements)),
                          "mae_target_met": bool(np.max(maes) <= TARGET_MAE),
                          "agreement_target_met": bool(np.min(agreements) >= TARGET_AGREEMENT)}
    path = write_result("surrogate", {"train_fraction": TRAIN_FRACTION, "summary": summary, "best_by_network": best,
                                      "networks": results, "missing_artifacts": missing})
    header = f"{'network':12s} {'model':9s} {'MAE':>6s} {'rho':>6s} " + " ".join(f"agree@{t:g}" for t in THRESHOLDS)
    print(header)
    for name, r in results.items():
        for model, s in r["models"].items():
            print(f"{name:12s} {model:9s} {s['mae']:6.3f} {s['spearman']:6.3f} "
                  + " ".join(f"{s['agreement'][str(t)]:8.2f}" for t in THRESHOLDS)
                  + ("   <- best" if best[name] == model else ""))
        if r["label_noise"]:
            n = r["label_noise"]
            print(f"{name:12s} labels: {n['seeds']}-seed exact drops are {n['expected_abs_error_vs_population']:.2f} "
                  "points from the mean over programmed chips (expected |error|)")
    for model, s in summary.items():
        print(f"{model:9s}: worst MAE {s['worst_mae']:.3f} (target <= {TARGET_MAE}: "
              f"{'met' if s['mae_target_met'] else 'NOT met'}), worst agreement {s['worst_agreement']:.2f} "
              f"(target >= {TARGET_AGREEMENT}: {'met' if s['agreement_target_met'] else 'NOT met'})")
    if missing:
        print(f"no artifact yet for: {', '.join(missing)} (python -m accuracy.profiles --networks ...)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
