import math

import pytest

from envs.reward import RewardWeights, potential, terminal_reward

W = RewardWeights(speedup=1.0, energy=0.5, violation=2.0, violation_scale=1.0)


def test_feasible_reward_by_hand():
    # ln 2 + 0.5 ln 4 = 0.6931 + 0.6931
    assert terminal_reward(2.0, 4.0, drop=0.5, threshold=1.0, weights=W) == pytest.approx(2 * math.log(2))
    assert terminal_reward(2.0, 4.0, drop=1.0, threshold=1.0, weights=W) == pytest.approx(2 * math.log(2))


def test_all_digital_scores_zero():
    assert terminal_reward(1.0, 1.0, drop=0.0, threshold=0.5, weights=W) == 0.0


def test_violation_penalty_by_hand_and_growing():
    # -2 * (1 + (3.5 - 2.0) / 1.0) = -5
    assert terminal_reward(5.0, 9.0, drop=3.5, threshold=2.0, weights=W) == pytest.approx(-5.0)
    penalties = [terminal_reward(5.0, 9.0, drop=d, threshold=2.0, weights=W) for d in (2.01, 3.0, 6.0)]
    assert penalties[0] > penalties[1] > penalties[2]
    assert all(p < -W.violation for p in penalties)


def test_infeasible_never_beats_all_digital():
    assert terminal_reward(100.0, 100.0, drop=2.0001, threshold=2.0, weights=W) < 0.0


def test_potential_telescopes_to_the_terminal_reward():
    steps = [(1.0, 1.0), (1.3, 1.5), (1.3, 1.5), (2.2, 3.1)]  # prefix speedup/energy after each layer
    shaped = [potential(*b, W) - potential(*a, W) for a, b in zip(steps, steps[1:])]
    final = terminal_reward(*steps[-1], drop=0.2, threshold=1.0, weights=W)
    shaped_return = sum(shaped) + final - potential(*steps[-1], W)
    assert shaped_return == pytest.approx(final)


def test_weights_are_validated():
    with pytest.raises(ValueError, match="violation_scale"):
        RewardWeights(violation_scale=0.0)
    with pytest.raises(ValueError, match="speedup"):
        RewardWeights(speedup=-1.0)
