"""The comparison's summary from its rows alone: deployable-speedup ratios, same-budget rates,
hold rates and the total cost of mapping a network (one-time artifact work counted for the
methods that read it)."""

import pytest

from bench.bench_compare import summarise


def _row(method, t, threshold, speedup, feasible=True, holds=True, evaluations=0, passes=0, training=False):
    return {"network": "net", "training": training, "t": t, "threshold": threshold, "method": method,
            "speedup": speedup, "feasible": feasible, "holds_on_test": holds, "exact_evaluations": evaluations,
            "certification_chip_passes": passes, "wall_s": 1.0, "objective": 0.0}


def _rows():
    rows = []
    for t, threshold in (("1 day", 1.0), ("1 year", 2.0)):
        rows += [_row("ppo", t, threshold, 2.0, evaluations=2, passes=8),
                 _row("lionheart_greedy", t, threshold, 1.6, evaluations=10, passes=40, holds=t == "1 day"),
                 _row("lionheart_costaware", t, threshold, 2.0, evaluations=8),
                 _row("knapsack_ladder", t, threshold, 2.2 if t == "1 day" else 1.5, evaluations=2),
                 _row("search", t, threshold, 2.5, evaluations=100)]
    rows.append(_row("random", "1 day", 1.0, 9.0, feasible=False))  # not deployable: counts as 1
    return rows


def test_ratios_rates_and_total_cost():
    networks = {"net": {"exact_eval_s": 2.0, "profiling": {"evaluations": 250, "eval_equivalents": 250.0}}}
    summary = summarise(_rows(), networks, cert_per_pass=0.5)
    held = summary["held_out"]
    assert held["points"] == 2 and "training" not in summary
    assert held["ppo_over_greedy_geomean"] == pytest.approx(2.0 / 1.6)
    assert held["ppo_over_costaware_geomean"] == pytest.approx(1.0) and held["ppo_ge_costaware_rate"] == 1.0
    assert held["ppo_over_best_geomean"] == pytest.approx(2.0 / 2.5)  # random's 9x is not deployable
    assert held["ppo_over_best_min"] == pytest.approx(0.8)
    assert held["same_budget"]["knapsack_ladder"]["ppo_ge_rate"] == 0.5
    assert held["ppo_ge_same_budget_rate"] == 0.5
    assert held["out_of_sample_hold_rate"]["lionheart_greedy"] == 0.5
    assert held["out_of_sample_hold_rate"]["random"] is None
    cost = summary["networks"]["net"]["total_cost"]
    # PPO reads the artifact: 250 one-time + 4 searched + 16 chip passes x 0.5
    assert cost["ppo"]["eval_equivalents"] == pytest.approx(250 + 4 + 8)
    assert cost["ppo"]["seconds"] == pytest.approx(2.0 * (250 + 4 + 8))
    # greedy does not: its 20 evaluations + 80 chip passes x 0.5
    assert cost["lionheart_greedy"]["eval_equivalents"] == pytest.approx(20 + 40)
    assert cost["lionheart_greedy"]["profiling_eval_equivalents"] == 0
    assert cost["search"]["profiling_eval_equivalents"] == 250.0
    # PPO: 250 one-time, then 6 per point; greedy 30 per point: cheaper in all after 250 / 24 points
    assert summary["networks"]["net"]["break_even_points_vs_greedy"] == pytest.approx(250 / 24, abs=0.01)


def test_break_even_is_absent_when_the_policy_costs_more_per_point():
    from bench.bench_compare import break_even

    cheap_per_point = {"points": 2, "profiling_eval_equivalents": 0.0, "eval_equivalents": 10.0}
    assert break_even({"points": 2, "profiling_eval_equivalents": 5.0, "eval_equivalents": 30.0},
                      cheap_per_point) is None  # 12.5 per point against 5: never
    assert break_even(cheap_per_point, {**cheap_per_point, "eval_equivalents": 20.0}) == 0.0


def test_a_method_missing_at_some_points_gives_no_ratio():
    rows = [r for r in _rows() if not (r["method"] == "lionheart_costaware" and r["t"] == "1 year")]
    held = summarise(rows)["held_out"]
    assert held["ppo_over_costaware_geomean"] is None and held["ppo_ge_costaware_rate"] is None


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("name: lenet5\nmodel: {_target_: workloads.zoo.lenet5}\ncheckpoint: x.pt\ndataset: {name: fashion_mnist}\n",
     "a zoo network"),
    ("name: mine\nmodel: {_target_: os.system, command: echo}\ncheckpoint: x.pt\ndataset: {name: fashion_mnist}\n",
     "os.system"),
])
def test_a_bad_network_file_is_a_usage_error_before_any_work(tmp_path, capsys, content, message):
    from bench.bench_compare import main

    path = tmp_path / "net.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        main(["--networks", "--network-files", str(path), "--policy", str(tmp_path / "absent.zip")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_rows_recorded_before_a_plan_key_existed_resume_under_what_they_meant():
    from bench.bench_compare import recorded_certify

    old = {"certify": {"enabled": True, "images": 1000, "plan": {"confidence": 0.95, "first_chips": 4}}}
    assert recorded_certify(old)["plan"] == {"confidence": 0.95, "first_chips": 4, "population": "chips",
                                             "draw": "shared"}
    named = {"certify": {"plan": {"population": "chips_and_images", "draw": "per_statement"}}}
    assert recorded_certify(named) == named["certify"]
    assert recorded_certify({}) is None


def test_rows_of_another_checkpoint_are_measured_again():
    from bench.bench_compare import measured_with

    networks = {"resnet8": {"checkpoint": "a" * 64, "exact_eval_s": 8.0}, "mlp": {"exact_eval_s": 1.0}}
    assert measured_with(networks, "resnet8", "a" * 64)
    assert not measured_with(networks, "resnet8", "b" * 64)  # the checkpoint changed
    assert not measured_with(networks, "mlp", "a" * 64)  # recorded before checkpoints were
    assert not measured_with(networks, "vgg11", "a" * 64)  # never measured


def test_a_new_policy_keeps_only_the_rows_that_do_not_depend_on_it():
    from bench.bench_compare import depends_on_policy, kept_rows

    methods = ["ppo", "lionheart_greedy", "lionheart_costaware", "knapsack", "knapsack_ladder", "search", "optimum"]
    previous = {"policy": {"sha256": "a" * 64}, "rows": [{"method": m, "network": "lenet5"} for m in methods]}
    assert kept_rows(previous, "a" * 64) == previous["rows"]  # the same policy: everything is kept
    kept = {r["method"] for r in kept_rows(previous, "b" * 64)}
    assert kept == set(methods) - {"ppo", "search"}  # the search is seeded with the policy's mapping
    assert depends_on_policy("ppo") and depends_on_policy("search") and not depends_on_policy("knapsack")


def _comparison(policy: str, networks: dict, rows: list[tuple]) -> dict:
    """A compare.json's fields that merging reads: settings, policy, networks and rows."""
    return {"protocol": 2, "hw": "alpine_like", "profile": "cheap", "report": {"images": 2000, "seeds": [100]},
            "certify": {"enabled": True, "plan": {"population": "chips", "draw": "shared"}},
            "policy": {"sha256": policy}, "networks": networks,
            "rows": [{"network": n, "t": t, "threshold": th, "method": m, "speedup": x} for n, t, th, m, x in rows]}


def test_merging_adds_the_rows_a_comparison_lacks_and_refuses_what_cannot_share_its_table():
    import pytest

    from bench.bench_compare import MergeError, merged_results

    ours = _comparison("a" * 64, {"vgg11": {"checkpoint": "c1"}},
                       [("vgg11", "1 day", 1.0, "ppo", 5.0), ("resnet20", "1 day", 1.0, "ppo", 2.0)])
    ours["networks"]["resnet20"] = {"checkpoint": "c2"}
    theirs = _comparison("a" * 64, {"resnet20": {"checkpoint": "c2"}},
                         [("resnet20", "1 day", 1.0, "ppo", 9.9),                  # we have it: ours is kept
                          ("resnet20", "1 day", 1.0, "lionheart_costaware", 2.1),  # we lack it: added
                          ("resnet20", "1 year", 1.0, "lionheart_costaware", 2.0)])
    rows, networks, added = merged_results(ours, theirs)
    assert added == 2 and len(rows) == 4
    assert {r["speedup"] for r in rows if r["method"] == "ppo" and r["network"] == "resnet20"} == {2.0}
    assert networks == {"vgg11": {"checkpoint": "c1"}, "resnet20": {"checkpoint": "c2"}}

    other_policy = {**theirs, "policy": {"sha256": "b" * 64},
                    "rows": theirs["rows"] + [{"network": "resnet20", "t": "1 year", "threshold": 1.0,
                                               "method": "ppo", "speedup": 1.0}]}
    rows, _, added = merged_results(ours, other_policy)
    assert added == 2 and all(r["method"] != "ppo" or r["speedup"] != 1.0 for r in rows)  # not its policy rows
    new_network = _comparison("a" * 64, {"mlp": {"checkpoint": "c3"}}, [("mlp", "1 day", 1.0, "ppo", 30.0)])
    _, networks, added = merged_results(ours, new_network)
    assert added == 1 and networks["mlp"] == {"checkpoint": "c3"}

    with pytest.raises(MergeError, match="checkpoint"):
        merged_results(ours, {**theirs, "networks": {"resnet20": {"checkpoint": "other"}}})
    with pytest.raises(MergeError, match="hw"):
        merged_results(ours, {**theirs, "hw": "hermes_like"})
    with pytest.raises(MergeError, match="certify"):
        merged_results(ours, {**theirs, "certify": {"enabled": True, "plan": {"population": "chips_and_images"}}})
    with pytest.raises(MergeError, match="no measurement"):
        merged_results(ours, {**new_network, "networks": {}})


def test_the_committed_comparison_records_each_networks_checkpoint():
    import json

    import yaml

    from bench.common import RESULTS_DIR
    from common.paths import PROJECT_ROOT
    from workloads.registry import NetworkSpec, zoo_names

    document = json.loads((RESULTS_DIR / "compare.json").read_text())
    stale = []
    for name in {row["network"] for row in document["rows"]}:
        spec = (NetworkSpec.zoo(name) if name in zoo_names() else
                NetworkSpec.from_config(yaml.safe_load((PROJECT_ROOT / "bench" / "networks" / f"{name}.yaml").read_text())))
        if document["networks"][name].get("checkpoint") != spec.checkpoint_sha256():
            stale.append(name)
    assert not stale, f"rows of an earlier checkpoint: python -m bench.bench_compare --networks {' '.join(stale)}"
