"""A persistent result cache in SQLite, shared by parallel workers (WAL mode).

A result is stored under the SHA-256 of the canonical JSON of everything that changes it
(checkpoint hash, mapping, drift time, seeds, image count, device-configuration hash, oracle
version...). Each row also keeps that canonical key and a checksum of its payload, so a row that
does not match its key or whose payload was damaged is detected, deleted and recomputed, never
answered.

A cache problem never stops the caller. Two kinds of failure are told apart:

* corruption: SQLite says the file is not a database, is malformed or is encrypted, or
  ``PRAGMA quick_check`` reports anything but "ok". The file (with its ``-wal``/``-shm``/
  ``-journal`` companions) is moved aside and an empty cache started, but only when no other
  process has it open: every open cache holds a shared ``flock`` on the sidecar ``<db>.lock``, and
  the move needs that lock exclusively. Otherwise the file is left alone and this cache runs
  uncached.
* anything else (disk I/O error, database locked, unable to open, read-only file system,
  permission, ``OSError``): retried a few times, then the cache degrades to ``mode``
  "read-only" (stored results are answered, new ones are not stored) or, if even reading fails,
  "uncached" (every ``get`` misses, ``put`` does nothing).

Each degradation is reported once, as a one-line ``RuntimeWarning``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
import time
import urllib.parse
import warnings
from pathlib import Path
from typing import Any, Callable

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no advisory lock, so a corrupt file is never moved
    fcntl = None  # type: ignore[assignment]

SCHEMA_VERSION = 1

RETRY_ATTEMPTS = 3  # tries of an open, get or put that failed for a reason other than corruption
RETRY_BACKOFF_S = 0.05  # sleep before the 2nd try; doubled before each later one
LOCK_POLL_S = 0.01  # poll interval while waiting for the shared lock (held exclusively only during a move)
COMPANIONS = ("-wal", "-shm", "-journal")  # files SQLite keeps next to a database

READ_WRITE, READ_ONLY, UNCACHED = "read-write", "read-only", "uncached"
_CORRUPTION_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_CORRUPTION_WORDS = ("not a database", "malformed", "encrypted")
_UNCACHED_TAIL = "running uncached: results will not be stored or reused"


class CorruptDatabase(sqlite3.DatabaseError):
    """``PRAGMA quick_check`` did not answer "ok"."""


class _MoveFailed(Exception):
    def __init__(self, error: OSError, stranded: str) -> None:
        super().__init__(error, stranded)
        self.error, self.stranded = error, stranded


class _Unusable(Exception):
    """Readable, but holds nothing this version can reuse."""


def canonical(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats in repr form."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical(value).encode()).hexdigest()


def is_corruption(error: BaseException) -> bool:
    """True for an error that says the file itself is damaged (not busy, not unreadable)."""
    if isinstance(error, CorruptDatabase):
        return True
    if not isinstance(error, sqlite3.DatabaseError):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _CORRUPTION_CODES:
        return True
    message = str(error).lower()
    return any(word in message for word in _CORRUPTION_WORDS)


def _check_integrity(connection: sqlite3.Connection) -> None:
    rows = connection.execute("PRAGMA quick_check").fetchall()
    if rows != [("ok",)]:
        problems = [line.strip() for row in rows for line in str(row[0]).splitlines()
                    if line.strip() and not line.startswith("*** in database")]
        more = f" and {len(problems) - 2} more" if len(problems) > 2 else ""
        raise CorruptDatabase(f"quick_check: {'; '.join(problems[:2]) or rows}{more}")


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _stacklevel() -> int:
    """The stack level of the first caller outside this module, for ``warnings.warn``."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename == __file__:
        frame, level = frame.f_back, level + 1
    return level


class ResultCache:
    """``get``/``put`` JSON-able results by a JSON-able key, persisted in one SQLite file.

    ``mode`` is "read-write", "read-only" (hits answered, ``put`` skipped: asked for with
    ``read_only=True`` or fallen back to) or "uncached" (nothing answered or stored).
    """

    def __init__(self, path: str | Path, timeout_s: float = 60.0, read_only: bool = False) -> None:
        self.path = Path(path)
        self.lock_path = Path(f"{self.path}.lock")
        self.timeout_s = timeout_s
        self.read_only = read_only
        self.hits = self.misses = self.rejected = 0
        self.mode = UNCACHED
        self._connection: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._lock_error: BaseException | None = None
        self._lock_shared()
        if read_only:
            self._degrade(None)
            return
        error = self._open_with_retries()
        if error is None:
            return
        if is_corruption(error):
            self._recover_from_corruption(error)
        else:
            self._degrade(error)

    # ----------------------------------------------------------------------------- opening

    def _open_read_write(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            _check_integrity(connection)
            connection.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            row = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if row is not None and row[0] != str(SCHEMA_VERSION):
                connection.execute("DROP TABLE IF EXISTS results")  # written by another version: recompute
            connection.execute(
                "CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                "key_json TEXT NOT NULL, payload TEXT NOT NULL, checksum TEXT NOT NULL, created REAL NOT NULL)")
            if row is None or row[0] != str(SCHEMA_VERSION):  # written only when needed: no write lock per open
                connection.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        except BaseException:
            connection.close()
            raise
        return connection

    def _open_with_retries(self) -> BaseException | None:
        """Open read-write (``mode`` "read-write"); None on success, else the last error."""
        error: BaseException | None = None
        for attempt in range(RETRY_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
            try:
                self._connection = self._open_read_write()
            except (sqlite3.Error, OSError) as failure:
                error = failure
                if is_corruption(failure):
                    return failure
                continue
            self.mode = READ_WRITE
            return None
        return error

    def _open_read_only(self) -> sqlite3.Connection:
        target = urllib.parse.quote(str(self.path.absolute()))
        options = ["mode=ro"]
        if not os.access(self.path.parent, os.W_OK):  # read-only mount: -shm cannot be made, so no locking
            options.append("mode=ro&immutable=1")
        error: BaseException | None = None
        for option in options:
            try:
                connection = sqlite3.connect(f"file:{target}?{option}", uri=True, timeout=self.timeout_s,
                                             isolation_level=None)
            except sqlite3.Error as failure:
                error = failure
                continue
            try:
                _check_integrity(connection)
                row = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
                if row is None or row[0] != str(SCHEMA_VERSION):
                    raise _Unusable(f"written by schema version {row[0] if row else 'unknown'}, "
                                    f"this is {SCHEMA_VERSION}")
                connection.execute("SELECT key_json, payload, checksum FROM results WHERE key = ''").fetchone()
                return connection
            except (sqlite3.Error, OSError, _Unusable) as failure:
                connection.close()
                if is_corruption(failure):
                    raise
                error = failure
        assert error is not None
        raise error

    def _degrade(self, error: BaseException | None) -> None:
        """Fall back to read-only, else uncached; ``error`` is why read-write failed (None: asked for)."""
        self._close_connection()
        try:
            self._connection = self._open_read_only()
        except (sqlite3.Error, OSError, _Unusable) as failure:
            if is_corruption(failure):
                reason = f"is corrupt ({failure}); left in place since it is open read-only"
            elif error is None:
                reason = f"cannot be opened read-only ({failure})"
            else:
                reason = f"cannot be opened ({error}; read-only: {failure})"
            self._go_uncached(f"result cache {self.path} {reason}; {_UNCACHED_TAIL}")
            return
        self.mode = READ_ONLY
        if error is not None:
            self._warn(f"result cache {self.path} cannot be written ({error}); using it read-only: "
                       "stored results are reused, new results will not be stored")

    def _go_uncached(self, message: str) -> None:
        self._close_connection()
        self._unlock()
        self.mode = UNCACHED
        self._warn(message)

    # ---------------------------------------------------------------------------- corruption

    def _recover_from_corruption(self, error: BaseException) -> None:
        """Move the corrupt file aside and start empty, unless another process has it open."""
        self._close_connection()
        head = f"result cache {self.path} is corrupt ({error})"
        if self._lock_fd is None:
            self._go_uncached(f"{head} but its lock file {self.lock_path} is unavailable ({self._lock_error}), "
                              f"so it was left in place; {_UNCACHED_TAIL}")
            return
        seen = _identity(self.path)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._go_uncached(f"{head} but another process has it open, so it was left in place; {_UNCACHED_TAIL}")
            return
        try:
            if _identity(self.path) != seen:  # replaced by another process meanwhile: open the new one
                self._lock_shared_again()
                failure = self._open_with_retries()
                if failure is not None:
                    self._go_uncached(f"result cache {self.path} cannot be opened ({failure}); {_UNCACHED_TAIL}")
                return
            try:
                aside, moved = self._move_aside()
            except _MoveFailed as failed:
                where = (f"parts of it are stranded ({failed.stranded})" if failed.stranded
                         else "so it was left in place")
                self._go_uncached(f"{head} and could not be moved aside ({failed.error}), {where}; {_UNCACHED_TAIL}")
                return
            failure = self._open_with_retries()
        finally:
            if self._lock_fd is not None:
                self._lock_shared_again()
        what = f"moved it to {aside}" + (f" (with its {', '.join(moved)} files)" if moved else "")
        if failure is None:
            self._warn(f"{head}; {what} and started an empty cache")
        else:
            self._go_uncached(f"{head}; {what}, but a new cache cannot be created ({failure}); {_UNCACHED_TAIL}")

    def _move_aside(self) -> tuple[Path, list[str]]:
        """Rename the database and its companions to ``<db>.corrupt-<time>``; all or nothing."""
        stem = f"{self.path.name}.corrupt-{int(time.time())}"
        aside, n = self.path.with_name(stem), 1
        while any(os.path.lexists(f"{aside}{suffix}") for suffix in ("", *COMPANIONS)):
            aside, n = self.path.with_name(f"{stem}-{n}"), n + 1
        done: list[tuple[str, str]] = []
        try:
            for suffix in ("", *COMPANIONS):
                source = f"{self.path}{suffix}"
                if suffix and not os.path.lexists(source):
                    continue
                os.replace(source, f"{aside}{suffix}")
                done.append((source, f"{aside}{suffix}"))
        except OSError as error:
            stranded = []
            for source, target in reversed(done):  # put back what moved, so nothing is half-moved
                try:
                    os.replace(target, source)
                except OSError as undo_error:
                    stranded.append(f"{source} is at {target}: {undo_error}")
            raise _MoveFailed(error, "; ".join(stranded)) from error
        return aside, [source[len(str(self.path)):] for source, _ in done[1:]]

    # ------------------------------------------------------------------------------ locking

    def _lock_shared(self) -> None:
        """Hold a shared lock on ``<db>.lock`` while open: no other process moves the file meanwhile."""
        if fcntl is None:
            self._lock_error = RuntimeError("no fcntl on this platform")
            return
        if not self.read_only:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            try:
                fd = os.open(self.lock_path, os.O_RDONLY)  # exists but is not writable: still lockable
            except OSError:
                self._lock_error = error
                return
        deadline = time.monotonic() + self.timeout_s
        while True:  # the exclusive lock is held only while a corrupt file is moved aside
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except BlockingIOError as error:
                if time.monotonic() > deadline:
                    os.close(fd)
                    self._lock_error = error
                    return
                time.sleep(LOCK_POLL_S)
            except OSError as error:
                os.close(fd)
                self._lock_error = error
                return
        self._lock_fd = fd

    def _lock_shared_again(self) -> None:
        assert self._lock_fd is not None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)
        except OSError as error:
            self._unlock()
            self._lock_error = error

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing releases the flock

    # --------------------------------------------------------------------------- failures

    def _warn(self, message: str) -> None:
        one_line = " ".join(message.split())
        warnings.warn(one_line, RuntimeWarning, stacklevel=_stacklevel())

    def _close_connection(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.close()
            except sqlite3.Error:
                pass

    def _fail(self, error: BaseException) -> None:
        """A statement failed mid-run: recover from corruption, else degrade. Never raises."""
        if is_corruption(error) and self.mode == READ_WRITE:
            self._recover_from_corruption(error)
        elif self.mode == READ_WRITE:
            self._degrade(error)
        else:
            self._go_uncached(f"result cache {self.path} cannot be read ({error}); {_UNCACHED_TAIL}")

    def _retry(self, error: BaseException, sql: str, parameters: tuple) -> list | None:
        """Slow path after a statement failed: retry it, then degrade; its rows, or None."""
        for attempt in range(1, RETRY_ATTEMPTS):
            if is_corruption(error) or self._connection is None:
                break
            time.sleep(RETRY_BACKOFF_S * 2 ** (attempt - 1))
            try:
                return self._connection.execute(sql, parameters).fetchall()
            except (sqlite3.Error, OSError) as failure:
                error = failure
        self._fail(error)
        return None

    # ---------------------------------------------------------------------------- interface

    def close(self) -> None:
        self._close_connection()
        self._unlock()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> "ResultCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    _SELECT = "SELECT key_json, payload, checksum FROM results WHERE key = ?"

    def get(self, kind: str, key: Any) -> Any | None:
        """The stored result, or None when absent, when the stored row fails its checks, or uncached."""
        key_json = canonical({"kind": kind, "key": key})
        key_hash = hashlib.sha256(key_json.encode()).hexdigest()
        connection = self._connection
        if connection is None:
            self.misses += 1
            return None
        try:
            row = connection.execute(self._SELECT, (key_hash,)).fetchone()
        except (sqlite3.Error, OSError) as error:
            rows = self._retry(error, self._SELECT, (key_hash,))
            row = rows[0] if rows else None
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
            if self.mode == READ_WRITE and self._connection is not None:
                self._execute("DELETE FROM results WHERE key = ?", (key_hash,))
            return None
        self.hits += 1
        return value

    def _execute(self, sql: str, parameters: tuple) -> None:
        try:
            self._connection.execute(sql, parameters)  # type: ignore[union-attr]
        except (sqlite3.Error, OSError) as error:
            self._retry(error, sql, parameters)

    def put(self, kind: str, key: Any, value: Any) -> None:
        """Store ``value`` under ``key`` (read-write mode only; otherwise nothing is stored)."""
        key_json = canonical({"kind": kind, "key": key})
        payload = canonical(value)
        if self.mode != READ_WRITE or self._connection is None:
            return
        self._execute(
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
        if self._connection is None:
            return 0
        sql = "SELECT COUNT(*) FROM results"
        try:
            return int(self._connection.execute(sql).fetchone()[0])
        except (sqlite3.Error, OSError) as error:
            rows = self._retry(error, sql, ())
            return int(rows[0][0]) if rows else 0
