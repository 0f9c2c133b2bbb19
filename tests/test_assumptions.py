"""The assumptions benchmark finds every value marked "(assumption)" and scales one at a time."""

from bench.bench_assumptions import assumed_constants, conclusions, scaled
from common.presets import load_preset
from hw_model.system import load_system


def test_every_marked_value_is_found_and_scaled_alone():
    found = assumed_constants("alpine_like")
    assert ("cores", "macs_per_cycle") in found and ("tiles", "count") in found and ("cores", "e_mac_pj") in found
    assert ("tiles", "rows") not in found and ("tiles", "t_mvm_ns") not in found  # sourced values stay
    assert ("tiles", "static_power_mw") not in found  # 0: scaling changes nothing
    description = load_preset("hw", "alpine_like")
    half = scaled(description, "tiles", "count", 0.5)
    assert half["tiles"]["count"] == 16 and isinstance(half["tiles"]["count"], int)
    assert description["tiles"]["count"] == 32  # the original is untouched
    double = scaled(description, "cores", "e_mac_pj", 2.0)
    assert double["cores"]["e_mac_pj"] == 40.0
    assert {k: v for k, v in double["cores"].items() if k != "e_mac_pj"} == \
        {k: v for k, v in description["cores"].items() if k != "e_mac_pj"}
    load_system(double)  # still a valid system


def test_conclusions_rank_by_mean_objective_and_measure_the_lead():
    rows = []
    for point, (ppo, knapsack) in enumerate([(1.0, 0.5), (0.2, 0.4)]):
        rows += [{"network": "n", "t": "1 day", "threshold": float(point), "method": "ppo", "objective": ppo,
                  "speedup": 1 + ppo, "feasible": True},
                 {"network": "n", "t": "1 day", "threshold": float(point), "method": "knapsack", "objective": knapsack,
                  "speedup": 1 + knapsack, "feasible": True}]
    found = conclusions(rows)
    assert found["ranking"] == ["ppo", "knapsack"]
    assert abs(found["ppo_lead_mean"] - ((1.0 - 0.5) + (0.2 - 0.4)) / 2) < 1e-12
    assert found["ppo_at_least_best_other_rate"] == 0.5
