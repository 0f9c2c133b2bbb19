import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from accuracy.cache import ResultCache, digest


def test_miss_then_hit(tmp_path):
    with ResultCache(tmp_path / "c.sqlite") as cache:
        key = {"mapping": [0, 1, 1], "t_s": 3600.0, "seeds": [0, 1]}
        assert cache.get("accuracy", key) is None
        cache.put("accuracy", key, {"mean": 91.5, "per_seed": [91.0, 92.0]})
        assert cache.get("accuracy", key) == {"mean": 91.5, "per_seed": [91.0, 92.0]}
        assert (cache.hits, cache.misses) == (1, 1)
        assert cache.get("accuracy", {**key, "t_s": 3601.0}) is None  # any key field changes the key
        assert cache.get("profile", key) is None  # so does the kind


def test_persists_across_connections(tmp_path):
    with ResultCache(tmp_path / "c.sqlite") as cache:
        cache.put("k", [1, 2], {"v": 1})
    with ResultCache(tmp_path / "c.sqlite") as cache:
        assert cache.get("k", [1, 2]) == {"v": 1}
        assert len(cache) == 1


def test_damaged_row_is_rejected_and_recomputed(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        cache.put("k", "a", {"v": 1})
    raw = sqlite3.connect(path)
    raw.execute("UPDATE results SET payload = '{\"v\":2}'")  # payload no longer matches its checksum
    raw.commit()
    raw.close()
    with ResultCache(path) as cache:
        assert cache.get("k", "a") is None and cache.rejected == 1
        assert cache.get_or_compute("k", "a", lambda: {"v": 1}) == {"v": 1}
        assert cache.get("k", "a") == {"v": 1}


def test_row_under_the_wrong_key_is_rejected(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        cache.put("k", "a", {"v": 1})
    raw = sqlite3.connect(path)
    raw.execute("UPDATE results SET key_json = '{\"key\":\"b\",\"kind\":\"k\"}'")
    raw.commit()
    raw.close()
    with ResultCache(path) as cache:
        assert cache.get("k", "a") is None


def test_corrupt_file_is_moved_aside(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.warns(RuntimeWarning, match="moved it to"):
        cache = ResultCache(path)
    assert cache.get("k", "a") is None
    cache.put("k", "a", 1)
    assert cache.get("k", "a") == 1
    assert list(tmp_path.glob("c.sqlite.corrupt-*"))
    cache.close()


def _filled_cache(path, rows=300):
    """A closed (checkpointed, single-file) cache of several dozen pages."""
    with ResultCache(path) as cache:
        for i in range(rows):
            cache.put("k", i, {"i": i, "pad": "x" * 200})
    assert not Path(f"{path}-wal").exists()


def _damage_pages(path):
    """Zero the cell pointers of the last page: SQLite opens the file, and only quick_check sees it."""
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    last = len(data) - page_size
    data[last + 8:last + 24] = bytes(16)
    path.write_bytes(bytes(data))


def _damage_header(path):
    with open(path, "r+b") as file:
        file.write(b"not sqlite at all")


def _recorded(function, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = function(*args, **kwargs)
    return result, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _damaged_with_companions(path):
    """A damaged database whose -wal and -shm stay, held by a plain sqlite3 connection (no lock)."""
    _filled_cache(path)
    raw = sqlite3.connect(path)
    raw.execute("SELECT COUNT(*) FROM results").fetchone()
    _damage_header(path)
    assert Path(f"{path}-wal").exists() and Path(f"{path}-shm").exists()
    return raw


def test_corrupt_file_and_its_companions_are_moved_aside_together(tmp_path):
    path = tmp_path / "c.sqlite"
    raw = _damaged_with_companions(path)
    damaged = path.read_bytes()
    cache, messages = _recorded(ResultCache, path)
    (aside,) = tmp_path.glob("c.sqlite.corrupt-*[0-9]")
    assert messages == [f"result cache {path} is corrupt (file is not a database); moved it to {aside} "
                        "(with its -wal, -shm files) and started an empty cache"]
    assert cache.mode == "read-write" and aside.read_bytes() == damaged
    assert Path(f"{aside}-wal").exists() and Path(f"{aside}-shm").exists()
    cache.put("k", "a", 1)
    assert cache.get("k", "a") == 1
    cache.close()
    raw.close()


def test_quick_check_failure_is_corruption(tmp_path):
    path = tmp_path / "c.sqlite"
    _filled_cache(path)
    _damage_pages(path)
    raw = sqlite3.connect(path)  # precondition: the file opens, quick_check answers but not "ok"
    assert raw.execute("PRAGMA quick_check").fetchall() != [("ok",)]
    raw.close()
    with pytest.warns(RuntimeWarning, match="quick_check.*moved it to"):
        cache = ResultCache(path)
    assert cache.mode == "read-write" and len(cache) == 0
    assert list(tmp_path.glob("c.sqlite.corrupt-*"))
    cache.put("k", "a", 1)
    assert cache.get("k", "a") == 1
    cache.close()


@pytest.mark.parametrize("damage", [_damage_header, _damage_pages])
def test_corrupt_database_open_in_another_cache_is_not_moved(tmp_path, damage):
    path = tmp_path / "c.sqlite"
    _filled_cache(path)
    holder = ResultCache(path)  # holds the shared lock, as a live worker would
    damage(path)
    damaged = path.read_bytes()
    with pytest.warns(RuntimeWarning, match="is corrupt .* another process has it open, so it was left in place; "
                                            "running uncached"):
        cache = ResultCache(path)
    assert cache.mode == "uncached"
    assert path.read_bytes() == damaged and not list(tmp_path.glob("c.sqlite.corrupt-*"))
    assert cache.get_or_compute("k", 0, lambda: "computed") == "computed" and len(cache) == 0
    cache.close()
    holder.close()
    with pytest.warns(RuntimeWarning, match="moved it to"):  # nobody holds it now: it is replaced
        ResultCache(path).close()


def _open_second_cache(path):
    cache, messages = _recorded(ResultCache, path)
    result = (getattr(cache, "mode", None), cache.get("k", 7), messages)
    cache.close()
    return result


def test_deleted_wal_under_a_live_cache_does_not_move_the_database(tmp_path):
    path = tmp_path / "c.sqlite"
    first = ResultCache(path)
    for i in range(20):
        first.put("k", i, {"i": i})
    Path(f"{path}-wal").unlink()  # the rows live in the WAL that `first` still holds open
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        mode, value, messages = pool.apply(_open_second_cache, (str(path),))
    assert path.exists() and not list(tmp_path.glob("c.sqlite.corrupt-*"))
    assert mode in {"read-write", "read-only", "uncached"}
    if mode != "read-write":
        assert len(messages) == 1 and ("running uncached" in messages[0] or "read-only" in messages[0])
    assert value in (None, {"i": 7})
    assert first.get("k", 7) == {"i": 7} and len(first) == 20
    first.close()
    with ResultCache(path) as fresh:
        assert fresh.mode == "read-write" and len(fresh) == 20 and fresh.get("k", 7) == {"i": 7}


def test_read_only_cache_answers_hits_and_stores_nothing(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        cache.put("k", "a", {"v": 1})
    before = path.read_bytes()
    cache, messages = _recorded(ResultCache, path, read_only=True)
    assert messages == [] and cache.mode == "read-only"
    assert cache.get("k", "a") == {"v": 1} and cache.hits == 1
    cache.put("k", "b", 2)
    assert cache.get("k", "b") is None
    assert cache.get_or_compute("k", "c", lambda: 3) == 3 and len(cache) == 1
    cache.close()
    assert path.read_bytes() == before and not list(tmp_path.glob("c.sqlite.corrupt-*"))


def test_read_only_cache_leaves_a_corrupt_file_in_place(tmp_path):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.warns(RuntimeWarning, match="is corrupt .* left in place .* running uncached"):
        cache = ResultCache(path, read_only=True)
    assert cache.mode == "uncached" and cache.get("k", "a") is None
    assert path.read_bytes() == b"this is not a database" * 100 and not list(tmp_path.glob("c.sqlite.corrupt-*"))
    cache.close()


def test_unopenable_location_runs_uncached(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.warns(RuntimeWarning, match="cannot be opened .* running uncached: results will not be stored"):
        cache = ResultCache(blocker / "c.sqlite")
    assert cache.mode == "uncached"
    assert cache.get("k", "a") is None
    cache.put("k", "a", 1)
    assert cache.get("k", "a") is None and len(cache) == 0
    assert cache.get_or_compute("k", "a", lambda: 5) == 5
    cache.close()
    assert blocker.read_text() == "not a folder"


def test_write_failure_mid_run_degrades_to_read_only(tmp_path):
    path = tmp_path / "c.sqlite"
    with ResultCache(path) as cache:
        cache.put("k", "a", 1)
    cache = ResultCache(path, timeout_s=0.05)
    assert cache.mode == "read-write"
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer keeps the write lock: "database is locked"
    with pytest.warns(RuntimeWarning, match="cannot be written .*locked.* using it read-only"):
        cache.put("k", "b", 2)
    assert cache.mode == "read-only" and cache.get("k", "a") == 1
    cache.put("k", "c", 3)  # skipped, silently
    blocker.rollback()
    blocker.close()
    cache.close()
    assert not list(tmp_path.glob("c.sqlite.corrupt-*"))
    with ResultCache(path) as cache:
        assert len(cache) == 1


@pytest.mark.parametrize("refused", ["", "-wal", "-shm"])
def test_failed_move_runs_uncached_and_does_not_claim_a_move(tmp_path, monkeypatch, refused):
    path = tmp_path / "c.sqlite"
    raw = _damaged_with_companions(path)
    before = {name: (tmp_path / name).read_bytes() for name in ("c.sqlite", "c.sqlite-wal")}
    real_replace = os.replace

    def replace(source, target):
        if str(source) == f"{path}{refused}":
            raise PermissionError(13, "Permission denied", str(source))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    cache, messages = _recorded(ResultCache, path)
    monkeypatch.undo()
    assert cache.mode == "uncached"
    assert len(messages) == 1 and "could not be moved aside (" in messages[0] and "moved it to" not in messages[0]
    assert messages[0].endswith("so it was left in place; running uncached: results will not be stored or reused")
    # all or nothing: what had moved is put back
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert Path(f"{path}-shm").exists() and not list(tmp_path.glob("c.sqlite.corrupt-*"))
    assert cache.get_or_compute("k", "a", lambda: 1) == 1 and cache.get("k", "a") is None
    cache.close()
    raw.close()


_ON_READ_ONLY_MOUNT = """
import json, sys, warnings
from accuracy.cache import ResultCache
stage, folder = sys.argv[1], sys.argv[2]
if stage == "fill":
    with ResultCache(folder + "/c.sqlite") as cache:
        cache.put("k", "a", {"v": 1})
    open(folder + "/garbage.sqlite", "wb").write(b"this is not a database" * 100)
    sys.exit(0)
report = {}
for name in ("c.sqlite", "garbage.sqlite", "new/c.sqlite"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = ResultCache(folder + "/" + name)
        value = cache.get("k", "a")
        cache.put("k", "b", 2)
        report[name] = [cache.mode, value, cache.get("k", "b"), [str(w.message) for w in caught]]
        cache.close()
print(json.dumps(report))
"""


def test_read_only_mount(tmp_path):
    """A real read-only file system: a tmpfs remounted read-only in a private user+mount namespace."""
    folder = tmp_path / "mount"
    folder.mkdir()
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "mount", "-t", "tmpfs", "none", str(folder)], capture_output=True).returncode:
        pytest.skip("no unprivileged mount namespace (unshare -rm) here")
    script = tmp_path / "on_mount.py"
    script.write_text(_ON_READ_ONLY_MOUNT)
    run = (f'mount -t tmpfs none "$1" && "$2" "$3" fill "$1" && mount -o remount,ro "$1" && "$2" "$3" check "$1"')
    done = subprocess.run(["unshare", "-rm", "sh", "-c", run, "sh", str(folder), sys.executable, str(script)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    mode, value, stored, messages = report["c.sqlite"]
    assert (mode, value, stored) == ("read-only", {"v": 1}, None)
    assert len(messages) == 1 and "cannot be written" in messages[0] and "using it read-only" in messages[0]
    mode, value, stored, messages = report["garbage.sqlite"]
    assert (mode, value, stored) == ("uncached", None, None)
    assert len(messages) == 1 and "left in place; running uncached" in messages[0] and "moved it to" not in messages[0]
    mode, value, stored, messages = report["new/c.sqlite"]
    assert (mode, value, stored) == ("uncached", None, None)
    assert len(messages) == 1 and "cannot be opened" in messages[0]


def _writer(args):
    path, worker = args
    with ResultCache(path) as cache:
        for i in range(50):
            cache.put("k", [worker, i], {"w": worker, "i": i})
    return worker


def test_parallel_writers_share_the_file(tmp_path):
    path = tmp_path / "c.sqlite"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        assert sorted(pool.map(_writer, [(path, 0), (path, 1)])) == [0, 1]
    with ResultCache(path) as cache:
        assert len(cache) == 100
        assert cache.get("k", [1, 49]) == {"w": 1, "i": 49}


def test_digest_is_order_independent():
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    assert digest({"a": 1}) != digest({"a": 1.5})
