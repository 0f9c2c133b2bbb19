"""Mapping methods and their registry, the PPO mapper, its training, exact verification and repair."""
