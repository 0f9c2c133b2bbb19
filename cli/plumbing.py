"""Shared command-line plumbing: hydra-style ``key=value`` overrides and clean errors.

Small tools (layer table, cost report) compose a config from ``conf/`` with the same override
syntax as ``train.py`` without creating a run directory. Errors a user can fix (a bad override,
an unknown network, a missing file, a value out of range) are printed as one line, ``error:
...``, with exit code 2 and no traceback; train.py and evaluate.py use the same path
(:func:`precheck_overrides`, :func:`usage_errors`).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from common.paths import CONF_DIR

USAGE_EXIT_CODE = 2


class UsageError(RuntimeError):
    """Bad input from the user; printed without a traceback, exit code 2."""


def compose_or_exit(config_name: str, argv: list[str] | None = None) -> Any:
    """Compose ``conf/<config_name>.yaml`` with overrides from ``argv`` (default: sys.argv[1:])."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(sys.argv[1:] if argv is None else argv)
    if any(arg in ("-h", "--help") for arg in overrides):
        print(f"usage: key=value overrides of conf/{config_name}.yaml, e.g. network=resnet20")
        raise SystemExit(0)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        _fail(str(error))


def run_main(main: Callable[[], int], known_errors: tuple[type[BaseException], ...]) -> int:
    """Call ``main``; print errors of ``known_errors`` types as one line and return exit code 2."""
    try:
        return main()
    except known_errors as error:
        _fail(str(error))
    return USAGE_EXIT_CODE  # unreachable, keeps type checkers content


def precheck_overrides(config_name: str, argv: list[str] | None = None) -> None:
    """Before hydra runs a single job: compose ``conf/<config_name>.yaml`` with the command line's
    overrides and exit 2 with hydra's message if it cannot (an unknown preset, a bad override),
    instead of hydra's own exit 1. Multirun, --help and other hydra flags are left to hydra."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    arguments = list(sys.argv[1:] if argv is None else argv)
    if any(arg.startswith("-") for arg in arguments):
        return
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=arguments, return_hydra_config=True)
        run_dir = Path(str(cfg.hydra.run.dir))
    except (HydraException, OmegaConfBaseException, ValueError) as error:
        _fail(str(error))
    _check_can_create(run_dir)


def _check_can_create(folder: Path) -> None:
    """The run folder (not made yet) can be made: its nearest existing ancestor takes a file."""
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".write-check-", dir=existing)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        _fail(f"hydra.run.dir: cannot create {folder} ({error.strerror or error}); choose a writable folder")


def usage_error_types() -> tuple[type[BaseException], ...]:
    """Every error type that means "the input is wrong", not "the program is wrong"."""
    from accuracy.noise import NoiseConfigError
    from accuracy.oracle import MappingError
    from agents.policy_file import PolicyFileError
    from cli.checks import ConfigError
    from common.presets import PresetError
    from hw_model.system import HardwareConfigError
    from reporting.evaluation import EvaluationInputError
    from workloads.datasets import DatasetError
    from workloads.registry import NetworkError

    return (ConfigError, EvaluationInputError, NetworkError, MappingError, DatasetError, HardwareConfigError,
            NoiseConfigError, PresetError, PolicyFileError, UsageError)


@contextlib.contextmanager
def usage_errors() -> Iterator[None]:
    """Turn input errors raised inside into one line on stderr and exit code 2."""
    known = usage_error_types()
    try:
        yield
    except known as error:
        _fail(str(error))


def _fail(message: str) -> None:
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"error: {one_line}", file=sys.stderr)
    raise SystemExit(USAGE_EXIT_CODE)
