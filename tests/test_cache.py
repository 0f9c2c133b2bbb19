import multiprocessing
import sqlite3

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
