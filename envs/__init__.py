"""The mapping environment; ``AIMCMapping-v0`` is registered here and only here.

Importing this package registers the id with Gymnasium (``gym.make("AIMCMapping-v0")`` then
works with no arguments: the training networks of ``conf/train.yaml`` on its default hardware
and noise presets). The environment class itself, which needs torch to build its tasks, is
imported on first use.
"""

from gymnasium.envs.registration import register, registry

ENV_ID = "AIMCMapping-v0"

if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="envs.mapping_env:LayerMappingEnv")


def __getattr__(name: str):
    if name == "LayerMappingEnv":
        from envs.mapping_env import LayerMappingEnv

        return LayerMappingEnv
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


__all__ = ["ENV_ID", "LayerMappingEnv"]
