"""What a newcomer reads: summaries, plots, --help."""

import subprocess
import sys

import numpy as np
import pytest

from common.paths import PROJECT_ROOT
from common.units import human_time


def document(infeasible_method="all_analog"):
    layers = [{"name": "0", "label": "conv 1, 1->8 3x3 [0]", "kind": "conv", "target": "analog", "tiles": 1, "macs": 9}]
    rows = []
    for method, speedup in (("knapsack", 1.5), ("optimum", 1.5), (infeasible_method, 2.0)):
        for threshold in (1.0, 2.0):
            rows.append({"method": method, "t_s": 86_400.0, "threshold": threshold, "mapping": [1], "speedup": speedup,
                         "energy_gain": 2 * speedup, "verified_drop": 0.5, "feasible": method != infeasible_method,
                         "holds_on_test": True, "exact_evaluations": 0, "wall_s": 0.0,
                         "test": {"mean": 80.0, "std": 0.2, "drop": 0.6, "images": 10, "seeds": [100], "split": "test"}})
    return {"network": {"name": "toy", "layers": ["0"]}, "results": [], "baselines": rows,
            "lifetime": {"threshold": 2.0, "points": [], "moves_to_digital": []}, "layers": layers}


def test_every_method_in_the_tradeoff_plot_is_drawn_even_when_infeasible():
    import matplotlib

    matplotlib.use("Agg")
    from reporting.plots import tradeoff_figure

    fig = tradeoff_figure("toy", document())
    speed, energy = fig.axes
    assert [t.get_text() for t in speed.get_legend().get_texts()] == ["knapsack", "optimum", "all_analog"]
    drawn = [np.isfinite(np.asarray(line.get_ydata(), float)).any() for line in speed.get_lines()]
    assert sum(drawn) == 3  # knapsack and optimum lines, all_analog's crosses
    xs = [tuple(np.asarray(line.get_xdata(), float)) for line in speed.get_lines()[:3]]
    assert len(set(xs)) == len(xs)  # coinciding methods are offset, not drawn over each other
    assert energy.get_ylabel().startswith("energy gain")


def test_summary_markdown_says_times_in_words_and_flags_mappings_that_fail_on_test(tmp_path):
    from reporting.evaluation import write_summaries

    rows = [{"network": "toy", "t_s": 31_536_000.0, "threshold": 1.0, "method": "ppo", "speedup": 2.0,
             "energy_gain": 3.0, "verified_drop": 0.9, "certificate": "holds", "certified_chips": 8, "test_drop": 1.4,
             "feasible": True, "holds_on_test": False, "exact_evaluations": 2, "certification_chip_passes": 8,
             "wall_s": 0.1}]
    write_summaries(tmp_path, rows)
    text = (tmp_path / "summary.md").read_text()
    assert "| toy | 1 year | 1 | ppo |" in text and "| 1.40 | **NO** |" in text and "| holds (8) |" in text
    assert human_time(86_400.0) == "1 day" and human_time(3 * 3600.0) == "3 hours"


@pytest.mark.parametrize("entry, keys", [("evaluate.py", ("times_s", "verify.images/seeds", "policy_evaluations")),
                                         ("train.py", ("train.holdout", "train.total_timesteps_mode"))])
def test_help_describes_each_key(entry, keys):
    done = subprocess.run([sys.executable, entry, "--help"], capture_output=True, text=True, timeout=120,
                          cwd=PROJECT_ROOT, env={"PATH": "/usr/bin:/bin", "AIMC_NO_REEXEC": "1",
                                                 "PYTHONPATH": str(PROJECT_ROOT)})
    assert done.returncode == 0, done.stderr
    for key in keys:
        line = next(line for line in done.stdout.splitlines() if line.strip().startswith(key))
        assert len(line.split(key, 1)[1].strip()) > 10, line  # a description follows the key
