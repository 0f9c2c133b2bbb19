"""Shared command-line plumbing: hydra-style ``key=value`` overrides and clean errors.

Small tools (layer table, cost report) compose a config from ``conf/`` with the same override
syntax as ``train.py`` without creating a run directory. Errors a user can fix (a bad override,
an unknown network, a missing file) are printed as one clear message with exit code 2.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

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


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(USAGE_EXIT_CODE)
