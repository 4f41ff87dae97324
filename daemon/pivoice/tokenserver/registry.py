"""Device store and mint counters, on SQLite (default) or PostgreSQL, behind one class.

Every request reads its device row from the DB (no cross-request cache), so a revoke or
rotate from the CLI takes effect at once on every worker and every host sharing the DB.
Counters are updated in one transaction holding a lock (SQLite `BEGIN IMMEDIATE`, the
database write lock; PostgreSQL `SELECT ... FOR UPDATE` on the device's row), so concurrent
workers cannot both spend the last token.

Thread-safe: request handlers call it from the ASGI thread pool; a small pool of
connections bounds DB connections per worker process.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from pivoice.tokenserver.fleet_store import FLEET_SCHEMA
from pivoice.tokenserver.limits import LimitDecision, LimitState, decide

SQLITE_BUSY_TIMEOUT_S = 10.0
POOL_WAIT_S = 10.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS devices (
        name TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        rotated_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION,
        policy TEXT NOT NULL DEFAULT '{}')""",
    """CREATE TABLE IF NOT EXISTS mint_limits (
        device TEXT PRIMARY KEY REFERENCES devices(name) ON DELETE CASCADE,
        bucket_tokens DOUBLE PRECISION NOT NULL,
        bucket_at DOUBLE PRECISION NOT NULL,
        day TEXT NOT NULL,
        day_count BIGINT NOT NULL)""",
) + FLEET_SCHEMA   # the fleet's tables (fleet_store.py)


class RegistryError(RuntimeError):
    """The database cannot be opened or answered with an error."""


def db_errors() -> tuple[type[BaseException], ...]:
    """Exception types meaning "the database failed", for either backend."""
    errors: tuple[type[BaseException], ...] = (sqlite3.Error, RegistryError)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a server dependency
        return errors
    return errors + (psycopg.Error,)


@dataclass(frozen=True)
class Device:
    name: str
    secret_hash: str
    created_at: float
    rotated_at: float | None
    revoked_at: float | None
    policy: dict

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class _Dialect:
    """What differs between the two databases: connecting, locking, placeholders, errors."""

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite:///")
        if self.is_sqlite:
            self.path = url[len("sqlite:///"):]
            self.begin_write = "BEGIN IMMEDIATE"
            self.lock_row = ""
            self.integrity_errors: tuple = (sqlite3.IntegrityError,)
            self.broken_errors: tuple = ()
        else:
            import psycopg  # only hosts using PostgreSQL need it importable
            self._psycopg = psycopg
            self.begin_write = "BEGIN"
            self.lock_row = " FOR UPDATE"
            self.integrity_errors = (psycopg.errors.IntegrityError,)
            self.broken_errors = (psycopg.OperationalError, psycopg.InterfaceError)

    def connect(self) -> Any:
        if self.is_sqlite:
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryError(f"cannot create the directory of {self.path}: {exc.strerror}") from None
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, so the lock mode is ours.
            conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            return conn
        return self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def sql(self, text: str) -> str:
        return text if self.is_sqlite else text.replace("?", "%s")


class Registry:
    def __init__(self, database_url: str, pool_size: int = 4):
        self._d = _Dialect(database_url)
        self._idle: list[Any] = []
        self._idle_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)

    @property
    def backend(self) -> str:
        return "sqlite" if self._d.is_sqlite else "postgresql"

    @contextlib.contextmanager
    def _conn(self) -> Iterator[Any]:
        if not self._slots.acquire(timeout=POOL_WAIT_S):
            raise RegistryError("no free database connection")
        conn = None
        try:
            conn = self._checkout()
            yield conn
        except self._d.broken_errors:
            # A dropped PostgreSQL connection: do not hand it to the next request.
            with contextlib.suppress(Exception):
                conn.close()
            conn = None
            raise
        finally:
            if conn is not None:
                with self._idle_lock:
                    self._idle.append(conn)
            self._slots.release()

    def _checkout(self) -> Any:
        """An idle connection that still works, else a new one.

        After a PostgreSQL restart every pooled connection is dead but does not know it yet; without
        this check each one would fail one request with 503 while the database is healthy again.
        """
        with self._idle_lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None and not self._d.is_sqlite:
            try:
                conn.execute("SELECT 1")
            except self._d.broken_errors:
                with self._idle_lock:   # its siblings died with it: drop them all
                    stale, self._idle = [conn] + self._idle, []
                for dead in stale:
                    with contextlib.suppress(Exception):
                        dead.close()
                conn = None
        return conn if conn is not None else self._d.connect()

    @contextlib.contextmanager
    def _write(self) -> Iterator[Callable[..., Any]]:
        """A write transaction; yields `run(sql, *params) -> cursor`."""
        with self._conn() as conn:
            conn.execute(self._d.begin_write)
            try:
                yield lambda sql, *params: conn.execute(self._d.sql(sql), params)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _read(self, sql: str, *params: Any) -> list[tuple]:
        with self._conn() as conn:
            return list(conn.execute(self._d.sql(sql), params).fetchall())

    # The fleet store (fleet_store.py) runs its SQL through these, on the same pool and dialect.
    def transaction(self):
        return self._write()

    def query(self, sql: str, *params: Any) -> list[tuple]:
        return self._read(sql, *params)

    @property
    def lock_row_sql(self) -> str:
        return self._d.lock_row

    def init_schema(self) -> None:
        with self._write() as run:
            for statement in _SCHEMA:
                run(statement)

    def ping(self) -> None:
        self._read("SELECT 1")

    def close(self) -> None:
        with self._idle_lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()

    # --- devices -------------------------------------------------------------------------
    _COLUMNS = "name, secret_hash, created_at, rotated_at, revoked_at, policy"

    @staticmethod
    def _device(row: tuple) -> Device:
        return Device(row[0], row[1], row[2], row[3], row[4], json.loads(row[5] or "{}"))

    def add_device(self, name: str, secret_hash: str, now_s: float) -> bool:
        """False if a device of that name exists already."""
        try:
            with self._write() as run:
                run("INSERT INTO devices (name, secret_hash, created_at) VALUES (?, ?, ?)",
                    name, secret_hash, now_s)
        except self._d.integrity_errors:
            return False
        return True

    def get_device(self, name: str) -> Device | None:
        rows = self._read(f"SELECT {self._COLUMNS} FROM devices WHERE name = ?", name)
        return self._device(rows[0]) if rows else None

    def list_devices(self) -> list[Device]:
        return [self._device(r) for r in self._read(f"SELECT {self._COLUMNS} FROM devices ORDER BY name")]

    def revoke(self, name: str, now_s: float) -> bool:
        with self._write() as run:
            return run("UPDATE devices SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                       now_s, name).rowcount == 1

    def rotate(self, name: str, secret_hash: str, now_s: float) -> bool:
        """New secret (the old one stops working at once); also re-enables a revoked device."""
        with self._write() as run:
            return run("UPDATE devices SET secret_hash = ?, rotated_at = ?, revoked_at = NULL "
                       "WHERE name = ?", secret_hash, now_s, name).rowcount == 1

    def set_policy(self, name: str, overrides: dict) -> bool:
        with self._write() as run:
            return run("UPDATE devices SET policy = ? WHERE name = ?",
                       json.dumps(overrides, sort_keys=True), name).rowcount == 1

    # --- limits --------------------------------------------------------------------------
    def take_mint(self, name: str, now_s: float, rate_per_min: int, daily_budget: int) -> LimitDecision:
        """Atomically decide and record one mint attempt for an existing device."""
        with self._write() as run:
            run("INSERT INTO mint_limits (device, bucket_tokens, bucket_at, day, day_count) "
                "VALUES (?, ?, ?, '', 0) ON CONFLICT (device) DO NOTHING",
                name, float(rate_per_min), now_s)
            row = run("SELECT bucket_tokens, bucket_at, day, day_count FROM mint_limits "
                      f"WHERE device = ?{self._d.lock_row}", name).fetchone()
            state = LimitState(float(row[0]), float(row[1]), row[2], int(row[3]))
            decision, new = decide(state, now_s, rate_per_min, daily_budget)
            run("UPDATE mint_limits SET bucket_tokens = ?, bucket_at = ?, day = ?, day_count = ? "
                "WHERE device = ?", new.bucket_tokens, new.bucket_at_s, new.day, new.day_count, name)
        return decision

    def mint_counts(self, name: str) -> tuple[str, int] | None:
        """(UTC day, mints that day) as last recorded, for `devices list`."""
        rows = self._read("SELECT day, day_count FROM mint_limits WHERE device = ?", name)
        return (rows[0][0], int(rows[0][1])) if rows else None
