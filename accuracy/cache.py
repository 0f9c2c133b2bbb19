"""A persistent result cache in SQLite, shared by parallel workers (WAL mode).

A result is stored under the SHA-256 of the canonical JSON of everything that changes it
(checkpoint hash, mapping, drift time, seeds, image count, device-configuration hash, oracle
version...). Each row also keeps that canonical key and a checksum of its payload, so a row that
does not match its key or whose payload was damaged is detected, deleted and recomputed, never
answered. A file that is not a readable SQLite database is moved aside and replaced.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import warnings
from pathlib import Path
from typing import Any, Callable

SCHEMA_VERSION = 1


def canonical(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats in repr form."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


class ResultCache:
    """``get``/``put`` JSON-able results by a JSON-able key, persisted in one SQLite file."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.hits = self.misses = self.rejected = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._connection = self._open()
        except sqlite3.DatabaseError as error:
            self._connection = self._replace_corrupt_file(error)

    def _open(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is not None and row[0] != str(SCHEMA_VERSION):
            connection.execute("DROP TABLE IF EXISTS results")  # written by another version: recompute
        connection.execute(
            "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
            "key_json TEXT NOT NULL, payload TEXT NOT NULL, checksum TEXT NOT NULL, created REAL NOT NULL)")
        connection.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        connection.execute("PRAGMA quick_check").fetchone()
        return connection

    def _replace_corrupt_file(self, error: Exception) -> sqlite3.Connection:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        warnings.warn(f"cache {self.path} is not a readable SQLite database ({error}); "
                      f"moved it to {aside} and started an empty cache", RuntimeWarning, stacklevel=3)
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                part.replace(Path(str(aside) + suffix))
        return self._open()

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> "ResultCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, kind: str, key: Any) -> Any | None:
        """The stored result, or None when absent or when the stored row fails its checks."""
        key_json = canonical({"kind": kind, "key": key})
        key_hash = hashlib.sha256(key_json.encode()).hexdigest()
        try:
            row = self._connection.execute(
                "SELECT key_json, payload, checksum FROM results WHERE key = ?", (key_hash,)).fetchone()
        except sqlite3.DatabaseError as error:
            self._connection = self._replace_corrupt_file(error)
            row = None
        if row is None:
            self.misses += 1
            return None
        stored_key, payload, checksum = row
        try:
            valid = (stored_key == key_json and hashlib.sha256(payload.encode()).hexdigest() == checksum)
            value = json.loads(payload) if valid else None
        except (ValueError, AttributeError):
            valid, value = False, None
        if not valid:
            self.rejected += 1
            self.misses += 1
            self._connection.execute("DELETE FROM results WHERE key = ?", (key_hash,))
            return None
        self.hits += 1
        return value

    def put(self, kind: str, key: Any, value: Any) -> None:
        key_json = canonical({"kind": kind, "key": key})
        payload = canonical(value)
        self._connection.execute(
            "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
            (hashlib.sha256(key_json.encode()).hexdigest(), kind, key_json, payload,
             hashlib.sha256(payload.encode()).hexdigest(), time.time()))

    def get_or_compute(self, kind: str, key: Any, compute: Callable[[], Any]) -> Any:
        value = self.get(kind, key)
        if value is None:
            value = compute()
            self.put(kind, key, value)
        return value

    def __len__(self) -> int:
        return int(self._connection.execute("SELECT COUNT(*) FROM results").fetchone()[0])
