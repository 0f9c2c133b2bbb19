import os
import subprocess
import sys

import pytest

from common.runtime import GLIBC_TUNABLES, fast_malloc_env, jemalloc_path

PROBE = "from common.runtime import use_fast_malloc; use_fast_malloc(); import os; print(os.environ.get('LD_PRELOAD', ''), os.environ.get('GLIBC_TUNABLES', ''))"


def clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "AIMC_MALLOC_SET", "AIMC_NO_REEXEC")}
    env["PYTHONPATH"] = os.getcwd()
    return env


def test_entry_point_reexecutes_with_the_fast_allocator():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=clean_env(),
                         timeout=60, check=True).stdout
    library = jemalloc_path()
    if library:
        assert library in out
    else:
        assert GLIBC_TUNABLES in out


def test_opt_out():
    env = {**clean_env(), "AIMC_NO_REEXEC": "1"}
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                         timeout=60, check=True).stdout
    assert "jemalloc" not in out


@pytest.mark.skipif(jemalloc_path() is None, reason="jemalloc not installed")
def test_environment_is_idempotent():
    once = fast_malloc_env({"LD_PRELOAD": ""})
    twice = fast_malloc_env(once)
    assert once["LD_PRELOAD"] == twice["LD_PRELOAD"] == jemalloc_path()
