"""The mapping environment; ``AIMCMapping-v0`` is registered here and only here."""

from gymnasium.envs.registration import register

from envs.mapping_env import LayerMappingEnv

ENV_ID = "AIMCMapping-v0"

register(id=ENV_ID, entry_point="envs.mapping_env:LayerMappingEnv")

__all__ = ["ENV_ID", "LayerMappingEnv"]
