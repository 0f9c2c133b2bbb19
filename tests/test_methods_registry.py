"""One registry of mapping methods: a method registered in one place shows up in evaluate.py's
report and in the comparison's rows and tables, with no other change."""

import csv

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from agents.methods import METHODS, Proposal, make_methods, method_names, register_method
from agents.verify import ExactVerifier
from common.paths import CONF_DIR
from envs.tasks import build_task
from reporting.evaluation import evaluate
from workloads.registry import NetworkSpec


class LargestLayerOnly:
    """A toy method: only the layer with the most MACs analog."""

    def propose(self, task, t_s, threshold):
        mapping = np.zeros(len(task), bool)
        capable = np.flatnonzero(task.cost.analog_capable)
        mapping[capable[np.argmax(task.cost.macs[capable])]] = True
        return Proposal(self.name, mapping, 0)


@pytest.fixture
def toy_method():
    register_method("toy_largest", label="toy (largest layer)")(LargestLayerOnly)
    yield "toy_largest"
    METHODS.pop("toy_largest")


def test_registry_selection_and_errors(toy_method):
    assert toy_method in method_names("all")
    assert "all_digital" not in method_names("all")  # registered, not run by default
    assert method_names(["knapsack", toy_method]) == ["knapsack", toy_method]
    with pytest.raises(ValueError, match="unknown mapping method.*'nope'.*registered"):
        method_names(["nope"])
    with pytest.raises(ValueError, match="already registered"):
        register_method("knapsack")(LargestLayerOnly)


def test_a_registered_method_appears_in_the_report(toy_method, tmp_path):
    # At 2 points the largest layer alone certifies (chips and images); at 1 point its bound with
    # the 1,000 certification images' error exceeds 1 and the repair would make it all-digital.
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[
            "policy=none", "networks=[lenet5]", "times_s=[86400]", "thresholds=[2.0]", "verify.images=200",
            "report.images=200", "report.seeds=[0]", "baselines=[knapsack,toy_largest]",
            f"cache={tmp_path / 'cache.sqlite'}", "progress=false"])
    documents = evaluate(cfg, tmp_path / "out")
    rows = documents["lenet5"]["baselines"]
    assert [row["method"] for row in rows] == ["knapsack", toy_method]
    assert sum(rows[1]["mapping"]) == 1 and documents["lenet5"]["results"] == []
    with open(tmp_path / "out" / "summary.csv") as handle:
        assert toy_method in {row["method"] for row in csv.DictReader(handle)}


def test_a_registered_method_appears_in_the_comparison(toy_method, fashion, tmp_path):
    from bench.bench_compare import THRESHOLDS, TIMES, compare_network, evaluate_config, method_labels

    oracle = AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=200, seeds=(0, 1),
                            batch_size=200, data=fashion.validation)
    verifier = ExactVerifier(lambda mapping, t_s: oracle.evaluate(mapping, t_s).drop)

    class KnapsackProposer:  # stands in for a trained policy
        name = "ppo"

        def propose(self, task, t_s, threshold):
            return make_methods(task, verifier, ["knapsack"])[0].propose(task, t_s, threshold)

    cfg = evaluate_config(["verify.images=200", "certify.images=200", "certify.image_offset=200",
                           "report.images=200", "report.seeds=[100,101]", f"cache={tmp_path / 'cache.sqlite'}",
                           "certify.plan.first_chips=2", "certify.plan.batch_chips=2", "certify.plan.max_chips=4",
                           f"baselines=[{toy_method}]"])
    rows = compare_network("lenet5", KnapsackProposer(), cfg, methods=(toy_method,))
    toy_rows = [row for row in rows if row["method"] == toy_method]
    assert len(toy_rows) == len(TIMES) * len(THRESHOLDS)
    assert all("objective" in row for row in rows)
    assert method_labels(rows)[toy_method] == "toy (largest layer)"
    task = build_task("lenet5", progress=False)
    assert all(row["analog_layers"] <= row["proposal_analog_layers"] == 1 for row in toy_rows) and len(task) == 5
    # every row went through evaluate's pipeline: certified when emitted feasible, scored on 2 fresh test chips
    assert all(row["certificate"] == "holds" for row in rows if row["feasible"] and row["analog_layers"])
    assert all(row["test_chips"] == 2 and "holds_on_test" in row for row in rows)

    class NotAgain:  # a resumed comparison does not ask the policy again for points it has
        def propose(self, task, t_s, threshold):
            raise AssertionError("the policy's rows were measured already")

    more = compare_network("lenet5", NotAgain(), cfg, methods=(toy_method, "all_analog"), done=rows)
    assert more[:len(rows)] == rows
    added = more[len(rows):]
    assert {row["method"] for row in added} == {"all_analog"} and len(added) == len(TIMES) * len(THRESHOLDS)


def test_lionheart_protocol_and_same_budget_rows_run_through_evaluate(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[
            "policy=none", "networks=[lenet5]", "times_s=[31536000]", "thresholds=[2.0]", "verify.images=200",
            "report.images=200", "report.seeds=[100]", "certify.enabled=false",
            "baselines=[lionheart_greedy,lionheart_protocol,knapsack_ladder]",
            "+method_options={lionheart_protocol: {images: 300, repetitions: 2}, knapsack_ladder: {evaluations: 2}}",
            f"cache={tmp_path / 'cache.sqlite'}", "progress=false"])
    rows = {row["method"]: row for row in evaluate(cfg, tmp_path / "out")["lenet5"]["baselines"]}
    assert set(rows) == {"lionheart_greedy", "lionheart_protocol", "knapsack_ladder"}
    # 300 images x 2 chips = 1.5 standard evaluations (200 images x 2 chips) each, rounded up in all
    greedy_evaluations = rows["lionheart_greedy"]["exact_evaluations"]
    assert rows["lionheart_protocol"]["exact_evaluations"] >= 1.5 * (greedy_evaluations - 1)
    assert 1 <= rows["knapsack_ladder"]["exact_evaluations"] <= 2 + 5  # the search, plus a repair at most
