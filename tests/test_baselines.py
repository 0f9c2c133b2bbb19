"""Baselines on a small real network: LeNet-5, surrogate for screening, exact oracle to verify."""

import numpy as np
import pytest

from agents.baselines import (AllAnalog, AllDigital, ExactVerifier, ExhaustiveOptimum, LionHeartGreedy,
                              RandomFeasible, SensitivityKnapsack, fits)
from envs.tasks import build_task
from hw_model.noise import NoiseConfig
from hw_model.oracle import AccuracyOracle
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
