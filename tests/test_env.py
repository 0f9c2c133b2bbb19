"""LayerMappingEnv: API checks, determinism, masks, rewards by hand, a random-action fuzz."""

import math

import gymnasium as gym
import numpy as np
import pytest
import yaml
from gymnasium.utils.env_checker import check_env as gym_check_env
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from common.paths import PROJECT_ROOT
from envs import ENV_ID, LayerMappingEnv
from envs.mapping_env import FEATURES
from envs.reward import RewardWeights
from envs.tasks import MappingTask, build_task
from workloads.registry import zoo_names


@pytest.fixture(scope="module")
def tasks():
    return [build_task("lenet5", progress=False), build_task("mlp", progress=False)]


@pytest.fixture()
def env(tasks):
    return LayerMappingEnv(tasks)


def run(env, actions, **options):
    obs, info = env.reset(seed=0, options=options)
    total, rewards = 0.0, []
    for action in actions:
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        total += reward
        if terminated:
            break
    return total, rewards, info


def test_gymnasium_and_sb3_checkers_pass(env):
    gym_check_env(env, skip_render_check=True)
    sb3_check_env(LayerMappingEnv(env.tasks.values()), warn=True)


def test_registered_id_with_config_kwargs():
    env = gym.make(ENV_ID, networks=["lenet5"], hw="hermes_like", threshold_range=(1.0, 2.0))
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert env.unwrapped.tasks["lenet5"].cost.tile_capacity == 64


def test_registered_id_with_no_arguments_uses_the_training_defaults():
    from common.presets import entry_config

    env = gym.make(ENV_ID)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (len(FEATURES),)
    assert sorted(env.unwrapped.tasks) == sorted(entry_config("train")["train"]["networks"])
    assert env.unwrapped.tasks["vgg11"].cost.system.name == "alpine_like"


def test_same_seed_lockstep(tasks):
    a, b = LayerMappingEnv(tasks), LayerMappingEnv(tasks)
    for episode in range(5):
        obs_a, _ = a.reset(seed=episode)
        obs_b, _ = b.reset(seed=episode)
        assert np.array_equal(obs_a, obs_b)
        rng = np.random.default_rng(episode)
        done = False
        while not done:
            action = int(rng.integers(2))
            step_a, step_b = a.step(action), b.step(action)
            assert np.array_equal(step_a[0], step_b[0]) and step_a[1:4] == step_b[1:4]
            done = step_a[2]


def test_all_digital_reward_is_zero(env):
    total, _, info = run(env, [0] * 10, network="lenet5", t_s=86_400.0, threshold=1.0)
    assert total == 0.0 and info["speedup"] == 1.0 and info["feasible"] and info["drop"] == 0.0


def test_feasible_reward_matches_the_formula(env, tasks):
    lenet = tasks[0]
    actions = [0, 0, 1, 1, 1]  # the three linear layers analog
    total, _, info = run(env, actions, network="lenet5", t_s=3600.0, threshold=5.0)
    cost = lenet.cost.evaluate(np.array(actions, bool))
    drop = lenet.drop(np.array(actions, bool), 3600.0)
    assert info["drop"] == pytest.approx(drop) and drop <= 5.0
    assert total == pytest.approx(1.0 * math.log(cost.speedup) + 0.5 * math.log(cost.energy_gain))
    assert info["mapping"] == actions and info["accuracy"] == pytest.approx(lenet.baseline - drop)


def test_violation_reward_by_hand(tasks):
    lenet = tasks[0]
    broken = MappingTask("lenet5", lenet.cost, lenet.profile, lambda mapping, t_s: 3.0, lenet.baseline)
    env = LayerMappingEnv([broken])
    total, _, info = run(env, [1, 0, 0, 0, 0], t_s=3600.0, threshold=1.0)
    assert total == pytest.approx(-2.0 * (1 + (3.0 - 1.0) / 1.0))  # -6
    assert not info["feasible"]


def test_shaping_keeps_the_return_and_moves_reward_earlier(tasks):
    actions = [1, 0, 1, 1, 0]
    plain, _, _ = run(LayerMappingEnv(tasks), actions, network="lenet5", t_s=86_400.0, threshold=3.0)
    shaped, steps, _ = run(LayerMappingEnv(tasks, shaping=True), actions, network="lenet5", t_s=86_400.0,
                           threshold=3.0)
    assert shaped == pytest.approx(plain)
    assert any(r != 0.0 for r in steps[:-1])


def test_capacity_mask_and_invalid_action(tasks):
    hw = yaml.safe_load((PROJECT_ROOT / "conf/hw/alpine_like.yaml").read_text())
    hw["tiles"]["count"] = 3
    small = build_task("lenet5", hw=hw, progress=False)
    env = LayerMappingEnv([small])
    env.reset(seed=0, options={"t_s": 3600.0, "threshold": 2.0})
    assert list(env.action_masks()) == [True, True]
    env.step(1)  # conv1: 1 tile
    env.step(1)  # conv2: 1 tile -> 1 left; fc1 needs 2 (400 x 120 -> 2 row blocks)
    assert list(env.action_masks()) == [True, False]
    _, reward, _, _, info = env.step(1)
    assert info["invalid_action"] and reward == pytest.approx(-0.1)
    assert env.mapping[2] == False  # noqa: E712  carried out as digital
    assert list(env.action_masks()) == [True, True]  # fc2 fits in the last tile


def test_bad_input_is_reported(env):
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be 0"):
        env.step(2)
    with pytest.raises(ValueError, match="unknown network"):
        env.reset(options={"network": "alexnet"})
    with pytest.raises(ValueError, match="threshold_range"):
        LayerMappingEnv(list(env.tasks.values()), threshold_range=(0.0, 1.0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), actions=st.lists(st.integers(0, 1), min_size=30, max_size=30),
       shaping=st.booleans())
def test_random_action_fuzz(tasks, seed, actions, shaping):
    env = LayerMappingEnv(tasks, shaping=shaping, t_range_s=(1.0, 3e8), threshold_range=(0.1, 10.0))
    obs, _ = env.reset(seed=seed)
    length = len(env.task)
    assert env.observation_space.contains(obs)
    for step, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs), (step, obs)
        assert np.isfinite(reward) and not truncated
        if terminated:
            break
    assert step + 1 == length
    assert info["tiles_used"] <= env.task.cost.tile_capacity


@pytest.mark.parametrize("name", zoo_names())
def test_an_episode_runs_on_every_zoo_network(name):
    task = build_task(name, progress=False, allow_build=False)
    env = LayerMappingEnv([task])
    obs, info = env.reset(seed=1)
    steps = 0
    terminated = False
    while not terminated:
        action = 1 if info["action_mask"][1] else 0
        obs, reward, terminated, _, info = env.step(action)
        assert env.observation_space.contains(obs)
        steps += 1
    assert steps == len(task) and np.isfinite(reward)
    assert info["tiles_used"] <= task.cost.tile_capacity
