"""MaskablePPO (sb3-contrib) on LayerMappingEnv: building, vectorising, and proposing mappings."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sb3_contrib import MaskablePPO
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from agents.methods import Proposal
from envs.mapping_env import LayerMappingEnv
from envs.tasks import MappingTask


def make_vec_env(tasks: Sequence[MappingTask], env_kwargs: dict[str, Any], n_envs: int, seed: int,
                 kind: str = "dummy") -> VecEnv:
    """``n_envs`` monitored environments; worker k is seeded ``seed + k``."""
    if kind not in ("dummy", "subproc"):
        raise ValueError(f"vec_env must be 'dummy' or 'subproc', got {kind!r}")
    tasks = list(tasks)

    def factory(rank: int):
        def make() -> Monitor:
            env = LayerMappingEnv(tasks, **env_kwargs)
            env.reset(seed=seed + rank)
            return Monitor(env)
        return make

    factories = [factory(k) for k in range(n_envs)]
    venv = SubprocVecEnv(factories) if kind == "subproc" and n_envs > 1 else DummyVecEnv(factories)
    venv.seed(seed)
    return venv


def build_model(venv: VecEnv, agent: dict[str, Any], seed: int, tensorboard_log: str | None) -> MaskablePPO:
    """MaskablePPO from a plain agent config (``conf/agent/*.yaml`` after ``to_container``)."""
    agent = dict(agent)
    agent.pop("_target_", None)
    policy = agent.pop("policy", "MlpPolicy")
    if not isinstance(agent.get("policy_kwargs", {}), dict):
        raise TypeError("agent.policy_kwargs must be a plain dict (convert with OmegaConf.to_container)")
    return MaskablePPO(policy, venv, seed=seed, tensorboard_log=tensorboard_log, verbose=0, device="cpu", **agent)


class PolicyMapper:
    """A trained policy as a mapping method: one deterministic masked rollout, no exact evaluation."""

    name = "ppo"

    def __init__(self, model: MaskablePPO, env_kwargs: dict[str, Any] | None = None) -> None:
        self.model = model
        self.env_kwargs = env_kwargs or {}

    def rollout(self, task: MappingTask, t_s: float, threshold: float) -> dict[str, Any]:
        env = LayerMappingEnv([task], **self.env_kwargs)
        obs, _ = env.reset(seed=0, options={"t_s": t_s, "threshold": threshold})
        while True:
            action, _ = self.model.predict(obs, action_masks=env.action_masks(), deterministic=True)
            obs, _, terminated, _, info = env.step(int(action))
            if terminated:
                return info

    def propose(self, task: MappingTask, t_s: float, threshold: float) -> Proposal:
        info = self.rollout(task, t_s, threshold)
        return Proposal(self.name, np.array(info["mapping"], bool), 0)
