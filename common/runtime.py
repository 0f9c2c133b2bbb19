"""Process set-up shared by the entry points.

glibc's malloc page-faults heavily on the large, short-lived tensors of torch CPU forward
passes; on the project machines jemalloc (or larger glibc mmap/trim thresholds) made the same
forward pass 2-5x faster. An allocator can only be chosen at process start, so entry points
call :func:`use_fast_malloc` first thing: it re-executes the same command once with
``LD_PRELOAD=libjemalloc.so.2`` (or the glibc tunables when jemalloc is absent).
Set ``AIMC_NO_REEXEC=1`` to opt out.
"""

from __future__ import annotations

import glob
import os
import secrets
import sys

_MARKER = "AIMC_MALLOC_SET"
GLIBC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"


def jemalloc_path() -> str | None:
    candidates = sorted(glob.glob("/usr/lib/*/libjemalloc.so.2") + glob.glob("/usr/lib/libjemalloc.so.2"))
    return candidates[0] if candidates else None


def fast_malloc_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``environ`` with the fast allocator configured (idempotent)."""
    env = dict(os.environ if environ is None else environ)
    library = jemalloc_path()
    if library and library not in env.get("LD_PRELOAD", ""):
        env["LD_PRELOAD"] = ":".join(filter(None, [library, env.get("LD_PRELOAD")]))
    elif not library and "glibc.malloc" not in env.get("GLIBC_TUNABLES", ""):
        env["GLIBC_TUNABLES"] = ":".join(filter(None, [env.get("GLIBC_TUNABLES"), GLIBC_TUNABLES]))
    env[_MARKER] = "1"
    return env


def use_fast_malloc() -> None:
    """Re-execute this command once with the fast allocator, unless already done or opted out."""
    if os.environ.get(_MARKER) or os.environ.get("AIMC_NO_REEXEC"):
        return
    env = fast_malloc_env()
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:
        return  # keep running with the default allocator rather than fail


def _run_suffix() -> str:
    return f"{os.getpid()}-{secrets.token_hex(2)}"


def register_resolvers() -> None:
    """The config resolvers the entry points' run folders use: ``${run_suffix:}`` is unique per
    process (process id and a random tag), so runs started in the same second never share a
    folder. Resolved once per config (``use_cache``)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_suffix"):
        OmegaConf.register_new_resolver("run_suffix", _run_suffix, use_cache=True)
