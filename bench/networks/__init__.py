"""Bring-your-own networks: models of families absent from the zoo (``workloads/zoo``), used only
to test whether a mapping policy transfers to an unseen family. Not part of the zoo: load them
through their descriptions with ``AIMC_TRUSTED_PACKAGES=bench.networks`` (see README.md)."""
