"""Baselines on a small real network: LeNet-5, surrogate for screening, exact oracle to verify."""

import numpy as np
import pytest

from agents.methods import (AllAnalog, AllDigital, ExhaustiveOptimum, LionHeartGreedy, RandomFeasible,
                            SensitivityKnapsack, fits)
from agents.verify import ExactVerifier
from envs.tasks import build_task
from accuracy.noise import NoiseConfig
from accuracy.oracle import AccuracyOracle
from workloads.registry import NetworkSpec

T_S, THRESHOLD = 86_400.0, 0.6


@pytest.fixture(scope="module")
def task():
    return build_task("lenet5", progress=False)


@pytest.fixture(scope="module")
def verify(fashion):
    oracle = AccuracyOracle(NetworkSpec.zoo("lenet5"), NoiseConfig(name="lionheart"), images=400,
                            seeds=(0, 1), batch_size=400, data=fashion.validation)
    memo = {}

    def drop(mapping, t_s):
        key = (mapping.tobytes(), t_s)
        if key not in memo:
            memo[key] = oracle.evaluate(mapping, t_s).drop
        return memo[key]

    return drop


@pytest.fixture(scope="module")
def proposals(task, verify):
    greedy = LionHeartGreedy(ExactVerifier(verify))
    optimum = ExhaustiveOptimum(ExactVerifier(verify))
    methods = [AllDigital(), AllAnalog(), RandomFeasible(seed=1), greedy, SensitivityKnapsack(), optimum]
    return {m.name: m.propose(task, T_S, THRESHOLD) for m in methods}


def test_every_mapping_respects_the_masks(task, proposals):
    for proposal in proposals.values():
        assert fits(task, proposal.mapping), proposal.method


def test_greedy_uses_one_evaluation_per_layer(task, proposals):
    assert proposals["lionheart_greedy"].exact_evaluations == int(task.cost.analog_capable.sum())


def test_optimum_is_at_least_as_good_as_every_baseline(task, verify, proposals):
    best = proposals["optimum"]
    assert verify(best.mapping, T_S) <= THRESHOLD
    best_speedup = task.cost.evaluate(best.mapping).speedup
    for proposal in proposals.values():
        if verify(proposal.mapping, T_S) <= THRESHOLD:  # compare at equal verified feasibility
            assert best_speedup >= task.cost.evaluate(proposal.mapping).speedup - 1e-12, proposal.method


def test_knapsack_is_optimal_for_its_own_model(task):
    """Brute force over all 32 mappings with the additive model agrees with the DP."""
    proposal = SensitivityKnapsack().propose(task, T_S, THRESHOLD)
    drops = np.maximum(task.profile.at(T_S), 0)
    saving = task.cost.digital_latency_s - task.cost.analog_latency_s
    best = 0.0
    for code in range(32):
        m = np.array([(code >> i) & 1 for i in range(5)], bool)
        if fits(task, m) and np.ceil(drops[m] / 0.01 - 1e-9).sum() * 0.01 <= THRESHOLD + 1e-9:
            best = max(best, saving[m].sum())
    assert saving[proposal.mapping].sum() == pytest.approx(best)


def test_trivial_baselines(task, proposals):
    assert not proposals["all_digital"].mapping.any()
    assert proposals["all_analog"].mapping.sum() == int(task.cost.analog_capable.sum())  # 6 tiles fit in 32
    assert task.drop(proposals["random"].mapping, T_S) <= THRESHOLD


class KnapsackProposer:
    """Proposes like a policy would: the knapsack's mapping for the threshold it is given."""

    name = "knapsack_proposer"

    def __init__(self):
        self.knapsack = SensitivityKnapsack()

    def propose(self, task, t_s, threshold):
        return self.knapsack.propose(task, t_s, threshold)


@pytest.mark.parametrize("threshold", [0.3, 0.6, 2.0])
@pytest.mark.parametrize("budget", [1, 2, 3])
def test_policy_search_is_verified_within_budget_and_never_worse_than_its_nominal_proposal(
        task, verify, threshold, budget):
    from agents.verify import policy_search

    verifier = ExactVerifier(verify)
    result = policy_search(KnapsackProposer(), task, T_S, threshold, verifier, evaluations=budget)
    assert verifier.evaluations == result.exact_evaluations
    assert result.drop == pytest.approx(verify(result.mapping, T_S)) if result.mapping.any() else result.drop == 0
    assert result.drop <= threshold and fits(task, result.mapping)
    if result.repaired_layers == 0:  # no repair: the search stayed within its budget
        assert result.exact_evaluations <= budget
    nominal = KnapsackProposer().propose(task, T_S, threshold).mapping
    if nominal.any() and verify(nominal, T_S) <= threshold:  # a feasible nominal proposal is a floor
        assert task.cost.evaluate(result.mapping).speedup >= task.cost.evaluate(nominal).speedup - 1e-12


def test_policy_search_repairs_when_no_proposal_verifies(task, verify):
    from agents.verify import policy_search

    class Reckless:  # always everything analog that fits
        name = "reckless"

        def propose(self, task, t_s, threshold):
            return AllAnalog().propose(task, t_s, threshold)

    tight = 0.5 * verify(AllAnalog().propose(task, T_S, 1.0).mapping, T_S)
    verifier = ExactVerifier(verify)
    result = policy_search(Reckless(), task, T_S, tight, verifier, evaluations=2)
    assert result.repaired_layers >= 1 and result.drop <= tight
    assert result.exact_evaluations == verifier.evaluations == 1 + result.repaired_layers
    with pytest.raises(ValueError, match="at least 1"):
        policy_search(Reckless(), task, T_S, tight, verifier, evaluations=0)


def test_cost_aware_greedy_tries_only_layers_that_are_faster_on_analog(task, verify):
    from agents.methods import CostAwareGreedy

    saving = task.cost.digital_latency_s - task.cost.analog_latency_s
    assert (saving <= 0).any() and (saving > 0).any()  # LeNet-5 has both kinds (README: greedy is 0.27x)
    verifier = ExactVerifier(verify)
    proposal = CostAwareGreedy(verifier).propose(task, T_S, 100.0)  # every layer tried is kept
    assert proposal.exact_evaluations == int(((saving > 0) & task.cost.analog_capable).sum())
    assert np.array_equal(proposal.mapping, (saving > 0) & task.cost.analog_capable)
    assert task.cost.evaluate(proposal.mapping).speedup > 1.0
    tight = CostAwareGreedy(ExactVerifier(verify)).propose(task, T_S, THRESHOLD)
    assert verify(tight.mapping, T_S) <= THRESHOLD and not (tight.mapping & (saving <= 0)).any()


@pytest.mark.parametrize("budget", [5, 40])
def test_local_search_is_verified_within_budget_and_no_worse_than_its_starts(task, verify, budget):
    from agents.methods import LocalSearch

    verifier = ExactVerifier(verify)
    result = LocalSearch(verifier, budget=budget).propose(task, T_S, THRESHOLD)
    assert result.exact_evaluations == verifier.evaluations <= budget
    assert fits(task, result.mapping) and verify(result.mapping, T_S) <= THRESHOLD
    knapsack = SensitivityKnapsack().propose(task, T_S, THRESHOLD).mapping
    if budget >= 40 and verify(knapsack, T_S) <= THRESHOLD:
        assert task.cost.evaluate(result.mapping).speedup >= task.cost.evaluate(knapsack).speedup - 1e-12


def test_local_search_reaches_the_exhaustive_optimum_on_lenet5(task, verify, proposals):
    from agents.methods import LocalSearch

    result = LocalSearch(ExactVerifier(verify), budget=100).propose(task, T_S, THRESHOLD)
    optimum = proposals["optimum"].mapping
    assert task.cost.evaluate(result.mapping).speedup == pytest.approx(task.cost.evaluate(optimum).speedup)


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_same_budget_knapsack_is_the_policy_search_around_the_knapsack(task, verify, budget):
    from agents.methods import KnapsackLadder
    from agents.verify import policy_search

    counted = ExactVerifier(verify)
    proposal = KnapsackLadder(verifier=counted, evaluations=budget).propose(task, T_S, THRESHOLD)
    reference = policy_search(SensitivityKnapsack(), task, T_S, THRESHOLD, ExactVerifier(verify), evaluations=budget)
    assert np.array_equal(proposal.mapping, reference.mapping)
    assert proposal.exact_evaluations == counted.evaluations == reference.exact_evaluations
    assert fits(task, proposal.mapping) and verify(proposal.mapping, T_S) <= THRESHOLD
    # never behind the knapsack's own proposal when that one verifies
    plain = SensitivityKnapsack().propose(task, T_S, THRESHOLD).mapping
    if verify(plain, T_S) <= THRESHOLD:
        assert task.cost.evaluate(proposal.mapping).speedup >= task.cost.evaluate(plain).speedup - 1e-12


def test_lionheart_protocol_evaluates_at_one_day_with_its_own_protocol_and_counts_equivalents(task, verify):
    from agents.methods import LionHeartProtocol

    asked = []

    def protocol(images, chips):
        asked.append((images, chips))
        times = []

        def drop(mapping, t_s):
            times.append(t_s)
            assert t_s == 86_400.0  # LionHeart evaluates at 1 day whatever the target time
            return verify(mapping, t_s)

        protocol.times = times
        return drop, (images * chips) / (400 * 2)

    standard = ExactVerifier(verify, protocol=protocol)
    method = LionHeartProtocol(verifier=standard, images=400, repetitions=6)
    proposal = method.propose(task, 3.15e7, THRESHOLD)  # target: 1 year
    greedy_at_one_day = LionHeartGreedy(ExactVerifier(verify)).propose(task, 86_400.0, THRESHOLD)
    assert asked == [(400, 6)] and standard.evaluations == 0  # the standard verifier is not used
    assert np.array_equal(proposal.mapping, greedy_at_one_day.mapping)
    assert proposal.exact_evaluations == 3 * len(protocol.times) == 3 * greedy_at_one_day.exact_evaluations
    assert method.verifier is standard
    with pytest.raises(ValueError, match="no other evaluation protocol"):
        LionHeartProtocol(verifier=ExactVerifier(verify)).propose(task, T_S, THRESHOLD)
