"""evaluate.py end to end with a tiny trained policy, and its answers to bad input."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from reporting.evaluation import evaluate
from reporting.mapping_file import SCHEMA_PATH
from agents.training import train
from reporting.apply import build_hybrid_model, drift_seeded_forward
from common.paths import PROJECT_ROOT

CONF = str(PROJECT_ROOT / "conf")
OUTPUTS = ("*.json", "*.csv", "*.md", "*.png", "*.tmp")


def compose_config(name, *overrides):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    train(compose_config("train", "experiment=smoke"), root / "run")
    out = root / "eval"
    documents = evaluate(compose_config(
        "evaluate", f"policy={root / 'run' / 'best_model.zip'}", "networks=[lenet5]", "times_s=[86400]",
        "thresholds=[1.0]", "verify.images=200", "report.images=200", "report.seeds=[100]", "baselines=all",
        "lifetime_threshold=2.0", f"cache={root / 'cache.sqlite'}"), out)
    return out, documents


def test_end_to_end_outputs_validate(evaluated):
    out, documents = evaluated
    document = json.loads((out / "lenet5.json").read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    assert document == json.loads(json.dumps(documents["lenet5"]))
    (result,) = document["results"]
    assert result["method"] == "ppo" and result["feasible"]  # verified, repaired if needed
    assert result["verified"]["drop"] <= 1.0 and result["test"]["split"] == "test"
    # certified on chips and images no search used; every mapping emitted as feasible holds its statement
    assert result["certified"]["decision"] == "holds" and result["certified"]["upper_bound"] <= 1.0
    certified_analog = 0
    for row in document["results"] + document["baselines"] + document["lifetime"]["points"]:
        assert not row["feasible"] or (row["certified"] or {}).get("decision") == "holds"
        if row["feasible"] and any(row["mapping"]):
            certificate = row["certified"]
            assert min(certificate["seeds"]) >= 1000 and certificate["image_offset"] >= 200
            assert certificate["chips"] >= 4 and row["certification_chip_passes"] >= certificate["chips"]
            certified_analog += 1
        assert row["feasible"] or row["certified"] is None or row["certified"]["decision"] != "holds"
        assert len(row["test"]["seeds"]) >= 1 and not set(row["test"]["seeds"]) & {0, 1}
    assert certified_analog >= 2  # e.g. greedy's and the optimum's mappings
    methods = {row["method"] for row in document["baselines"]}
    assert {"lionheart_greedy", "knapsack", "random", "all_analog", "optimum"} <= methods
    assert len(document["lifetime"]["points"]) == 5
    for name in ("summary.csv", "summary.md", "lenet5_lifetime.png", "lenet5_speedup_vs_threshold.png",
                 "lenet5_accuracy_vs_time.png"):
        assert (out / name).stat().st_size > 0
    assert not list(out.glob("*.tmp"))


def test_no_lifetime_schedule_when_its_threshold_is_null(evaluated, tmp_path):
    out, _ = evaluated
    root = out.parent
    documents = evaluate(compose_config(
        "evaluate", f"policy={root / 'run' / 'best_model.zip'}", "networks=[lenet5]", "times_s=[86400]",
        "thresholds=[1.0]", "verify.images=200", "report.images=200", "report.seeds=[100]", "baselines=[knapsack]",
        "lifetime_threshold=null", f"cache={root / 'cache.sqlite'}"), tmp_path)
    document = documents["lenet5"]
    assert document["lifetime"] == {"threshold": None, "points": [], "moves_to_digital": []}
    assert [r["method"] for r in document["results"] + document["baselines"]] == ["ppo", "knapsack"]
    jsonschema.validate(json.loads((tmp_path / "lenet5.json").read_text()), json.loads(SCHEMA_PATH.read_text()))
    assert not list(tmp_path.glob("*_lifetime.png"))


def test_apply_mapping_builds_a_runnable_hybrid_model(evaluated, fashion):
    out, _ = evaluated
    document = json.loads((out / "lenet5.json").read_text())
    model = build_hybrid_model(out / "lenet5.json", t_s=86400.0, threshold=1.0)
    analog = [layer["name"] for layer in document["results"][0]["layers"] if layer["target"] == "analog"]
    assert all("Analog" in type(model.get_submodule(name)).__name__ for name in analog)
    logits = drift_seeded_forward(model, fashion.validation.images[:64])
    assert logits.shape == (64, 10)


def run_evaluate(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "evaluate.py", f"hydra.run.dir={tmp_path}", *overrides],
                          capture_output=True, text=True, timeout=300, cwd=PROJECT_ROOT,
                          env={"PATH": "/usr/bin:/bin", "AIMC_NO_REEXEC": "1", "PYTHONPATH": str(PROJECT_ROOT)})


@pytest.mark.parametrize("overrides, message", [
    (["networks=[alexnet]"], "unknown network 'alexnet'"),
    (["network={name: mine, model: {_target_: workloads.zoo.mlp}, checkpoint: /nowhere/mine.pt}"],
     "does not exist"),
    (["thresholds=[-1.0]"], "thresholds must hold finite numbers > 0"),
    (["times_s=[0]"], "times_s must hold finite numbers > 0"),
    (["policy=/nowhere/model.zip"], "does not exist"),
    (["env.estimator=hessian"], "env.estimator must be null (the calibration's default) or one of"),
    (["env.estimator=fisher", "env.profile=exact"], "set env.profile=cheap or env.estimator=null"),
])
def test_bad_input_exits_2_with_nothing_written(tmp_path, overrides, message):
    done = run_evaluate(tmp_path, *overrides)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not [p for pattern in OUTPUTS for p in tmp_path.glob(pattern)]


def test_corrupt_checkpoint_and_foreign_mapping_file(tmp_path, evaluated):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    done = run_evaluate(tmp_path / "a", f"network={{name: mine, model: {{_target_: workloads.zoo.mlp}}, checkpoint: {bad}}}")
    assert done.returncode == 2 and "cannot be loaded" in done.stderr
    junk = tmp_path / "policy.zip"
    junk.write_bytes(b"PK not really a zip")
    done = run_evaluate(tmp_path / "c", f"policy={junk}", "networks=[lenet5]")
    assert done.returncode == 2 and "cannot be loaded" in done.stderr and "Traceback" not in done.stderr
    out, _ = evaluated
    done = run_evaluate(tmp_path / "b", f"mapping_file={out / 'lenet5.json'}", "networks=[mlp]")
    assert done.returncode == 2 and "is for network 'lenet5'" in done.stderr
    assert not [p for pattern in OUTPUTS for p in (tmp_path / "b").glob(pattern)]


def test_latest_policy_is_the_newest_runs_best_model(tmp_path):
    import os

    from reporting.evaluation import EvaluationInputError, latest_policy

    with pytest.raises(EvaluationInputError, match="python train.py"):
        latest_policy(tmp_path)
    old, new = tmp_path / "2026-01-01_00-00-00", tmp_path / "2026-01-02_00-00-00"
    for run, stamp in ((old, 1000), (new, 2000)):
        run.mkdir()
        for name, offset in (("best_model.zip", 0), ("final_model.zip", 10)):  # final is written last
            (run / name).write_bytes(b"zip")
            os.utime(run / name, (stamp + offset, stamp + offset))
    assert latest_policy(tmp_path) == new / "best_model.zip"
    (new / "best_model.zip").unlink()
    assert latest_policy(tmp_path) == new / "final_model.zip"


def test_lifetime_schedule_takes_a_faster_later_mapping_only_if_it_verifies_earlier(tmp_path):
    import numpy as np

    from reporting.evaluation import NetworkEvaluator
    from workloads.registry import NetworkSpec

    cfg = OmegaConf.to_container(compose_config(
        "evaluate", "verify.images=200", "report.images=200", "report.seeds=[0]",
        f"cache={tmp_path / 'cache.sqlite'}"), resolve=True)
    evaluator = NetworkEvaluator(NetworkSpec.zoo("lenet5"), cfg)
    slow, fast = np.array([0, 0, 0, 1, 0], bool), np.array([0, 1, 1, 1, 0], bool)
    assert evaluator.task.cost.evaluate(fast).speedup > evaluator.task.cost.evaluate(slow).speedup
    for threshold, replaced in ((100.0, True), (-100.0, False)):  # everything verifies / nothing does
        points = [evaluator.result("ppo", slow, 3600.0, threshold, exact_evaluations=2),
                  evaluator.result("ppo", fast, 31_536_000.0, threshold, exact_evaluations=2)]
        before = evaluator.verifier.evaluations
        schedule = evaluator.monotone_schedule(points)
        assert evaluator.verifier.evaluations == before + 1  # one exact evaluation for the candidate
        assert schedule[1] is points[1] and schedule[0]["t_s"] == 3600.0
        assert (schedule[0]["mapping"] == fast.astype(int).tolist()) is replaced
        assert schedule[0]["exact_evaluations"] == (3 if replaced else 2)


def test_lifetime_schedule_never_moves_a_layer_from_digital_to_analog(tmp_path):
    import itertools

    import numpy as np

    from reporting.evaluation import NetworkEvaluator, lifetime
    from workloads.registry import NetworkSpec

    cfg = OmegaConf.to_container(compose_config(
        "evaluate", "verify.images=200", "report.images=200", "report.seeds=[100]",
        f"cache={tmp_path / 'cache.sqlite'}"), resolve=True)
    evaluator = NetworkEvaluator(NetworkSpec.zoo("lenet5"), cfg)
    cost = evaluator.task.cost
    mappings = [np.array(bits, bool) for bits in itertools.product([0, 1], repeat=len(cost))]
    # a later mapping with a layer the earlier one keeps digital, and no faster (so it is not taken early)
    early, late = next((a, b) for a, b in itertools.product(mappings, mappings)
                       if (b & ~a).any() and (a & b).any() and cost.evaluate(b).speedup <= cost.evaluate(a).speedup)
    for threshold in (100.0, -100.0):  # everything verifies / nothing does
        points = [evaluator.result("ppo", early, 3600.0, threshold, exact_evaluations=2),
                  evaluator.result("ppo", late, 31_536_000.0, threshold, exact_evaluations=2)]
        schedule = evaluator.physical_schedule(points)
        first, second = (np.array(p["mapping"], bool) for p in schedule)
        assert not (second & ~first).any()  # nested: analog later => analog before
        assert [p["t_s"] for p in schedule] == [3600.0, 31_536_000.0]
        moves = lifetime(schedule)
        assert {m["layer"] for m in moves} == {cost.table.layers[i].name for i in np.flatnonzero(first & ~second)}
        if threshold > 0:
            assert np.array_equal(second, early & late) and schedule[1]["exact_evaluations"] == 3


def test_readme_snippet_runs_from_another_folder(evaluated, tmp_path):
    import re

    out, _ = evaluated
    readme = (PROJECT_ROOT / "README.md").read_text()
    snippet = re.search(r"```python\n(from reporting\.apply.*?)```", readme, re.DOTALL).group(1)
    snippet = snippet.replace('"outputs/evaluate/<run>/resnet8.json"', repr(str(out / "lenet5.json")))
    snippet = snippet.replace('zoo("resnet8")', 'zoo("lenet5")').replace("threshold=2.0", "threshold=1.0")
    done = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "AIMC_NO_REEXEC": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "torch.Size([100, 10])"


def test_latest_policy_skips_smoke_runs(tmp_path):
    import os

    from reporting.evaluation import latest_policy

    real, smoke = tmp_path / "2026-01-01_00-00-00_1-aaaa", tmp_path / "2026-01-02_00-00-00_2-bbbb"
    for run, stamp, experiment in ((real, 1000, None), (smoke, 2000, "smoke")):
        run.mkdir()
        (run / "best_model.zip").write_bytes(b"zip")
        os.utime(run / "best_model.zip", (stamp, stamp))
        (run / "run.json").write_text(json.dumps({"experiment": experiment}))
    assert latest_policy(tmp_path) == real / "best_model.zip"  # the smoke run is newer but skipped
