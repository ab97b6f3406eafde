"""The store in one SQLite file, shared by the threads and processes of one machine.

Each operation is one ``BEGIN IMMEDIATE`` transaction, so operations on one file are serialised
across connections, threads and processes (WAL journal, 30 s busy timeout). Times are the
injected clock's. A row whose ``expires_at`` has passed counts as absent; such rows are deleted
by a write at most once a minute per instance.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from handler.support.sqlite import MEMORY, SYNCED, UNSYNCED, connect, immediate

from ._base import (
    DEFAULT_KEEP_ABANDONED_S,
    Acquired,
    Claim,
    ClaimLost,
    ClaimState,
    StoreError,
    Taken,
    check_acquire_all,
    check_age,
    check_keep,
    check_key,
    check_limit,
    check_ttl,
)

SCHEMA_VERSION = 3  # PRAGMA user_version of a file this code created (1: no outbox, 2: no resume)
APPLICATION_ID = 0x45444953  # PRAGMA application_id ("EDIS") marks a store file
_PURGE_INTERVAL = 60.0  # s between deletions of expired rows by one instance
# A new file's pages: its rows are small (a claim with its request, a lock), and every commit
# writes each page it changed whole to the WAL and syncs it: 2 KB pages halve the bytes of a
# synced transaction, about 8 % of its CPU here (4 KB: SQLite's default; 8 KB cost more).
PAGE_SIZE = 2048

_OUTBOX_INDEX = "CREATE INDEX claims_outbox ON claims (outbox_at) WHERE outbox_at IS NOT NULL"
_RESUME_INDEX = "CREATE INDEX claims_resume ON claims (claim_until) WHERE resume = 1"
# Version 1 → 2: the outbox column (NULL: not in the outbox) and its index.
_MIGRATE_1 = ("ALTER TABLE claims ADD COLUMN outbox_at REAL", _OUTBOX_INDEX)
# Version 2 → 3: the resume flag (1: resumed by take_outbox once the claim lapses) and its index.
_MIGRATE_2 = ("ALTER TABLE claims ADD COLUMN resume INTEGER NOT NULL DEFAULT 0", _RESUME_INDEX)

_SCHEMA = (
    """
    CREATE TABLE claims (
        key TEXT PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        done INTEGER NOT NULL,            -- 0 in progress, 1 completed
        claim_until REAL,                 -- in progress: when the owner's claim lapses
        expires_at REAL NOT NULL,         -- the row counts as absent from then on
        attempt INTEGER NOT NULL,         -- how many times the key was claimed
        progress TEXT NOT NULL,           -- JSON object noted while in progress
        record TEXT,                      -- JSON object: the completed record
        outbox_at REAL,                   -- in the outbox since (or last taken from it at)
        resume INTEGER NOT NULL DEFAULT 0 -- 1: taken by take_outbox once its claim lapses
    )
    """,
    "CREATE INDEX claims_expiry ON claims (expires_at)",
    _OUTBOX_INDEX,
    _RESUME_INDEX,
    "CREATE TABLE locks (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX locks_expiry ON locks (expires_at)",
)


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    with immediate(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        (application,) = conn.execute("PRAGMA application_id").fetchone()
        (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if version == 0 and application == 0 and tables == 0:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif application != APPLICATION_ID:
            raise StoreError(f"{path} is not an ecs-detach store file")
        elif version in (1, 2):
            for statement in (*_MIGRATE_1, *_MIGRATE_2) if version == 1 else _MIGRATE_2:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise StoreError(f"{path} has store schema version {version}; this code knows {SCHEMA_VERSION}")


def _connect(path: Path) -> sqlite3.Connection:
    """Open ``path``, creating its directory and schema if missing."""
    return connect(path, _prepare, StoreError, "store file", page_size=PAGE_SIZE)


def _merged_progress(
    conn: sqlite3.Connection, now: float, key: str, data: dict[str, Any], doing: str
) -> tuple[str, float | None]:
    """The progress of in-progress ``key`` with ``data`` merged in (top-level keys replace), as
    JSON, and its outbox time; ``ClaimLost`` naming what the caller was ``doing`` otherwise."""
    row = conn.execute(
        "SELECT progress, outbox_at FROM claims WHERE key = ? AND done = 0 AND expires_at > ?", (key, now)
    ).fetchone()
    if row is None:
        raise ClaimLost(f"no in-progress record of idempotency key {key!r} to {doing}")
    progress = json.loads(row[0])
    progress.update(data)
    return json.dumps(progress), row[1]


def _free_for(conn: sqlite3.Connection, name: str, owner: str, now: float) -> bool:
    """Whether lock ``name`` is free, expired or ``owner``'s."""
    row = conn.execute("SELECT owner FROM locks WHERE name = ? AND expires_at > ?", (name, now)).fetchone()
    return row is None or row[0] == owner


class SqliteStore:
    """The store in the SQLite file ``path``; safe to share between threads (it serialises its
    calls). Several instances, threads and processes may use the same file at once. ``":memory:"``
    keeps the records in this instance only (``Guard.in_memory``)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        keep_abandoned_s: float = DEFAULT_KEEP_ABANDONED_S,
    ) -> None:
        check_keep(keep_abandoned_s)
        self._path = Path(path) if str(path) == MEMORY else Path(path).resolve()
        self._clock = clock
        self._keep_abandoned_s = float(keep_abandoned_s)
        self._next_purge = -float("inf")
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _connect(self._path)

    @property
    def path(self) -> Path:
        """The absolute path of the file."""
        return self._path

    def __repr__(self) -> str:
        return f"SqliteStore({str(self._path)!r})"

    @contextmanager
    def _read(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        """The open connection under this instance's lock, and the time; SQLite errors become
        ``StoreError``. A statement run on it alone reads without the write lock (in WAL mode
        readers never wait)."""
        with self._lock:
            if self._conn is None:
                raise StoreError(f"store {self._path} is closed")
            try:
                yield self._conn, self._clock()
            except sqlite3.Error as exc:
                raise StoreError(f"store {self._path}: {exc}") from exc

    @contextmanager
    def _transaction(self, *, synced: bool = True) -> Iterator[tuple[sqlite3.Connection, float]]:
        """The connection in a write transaction, and the time; expired rows purged if due.
        Under this instance's lock, SQLite errors become ``StoreError``, as ``_read`` (written
        out, not nested: one generator fewer for every write). ``synced=False`` commits it
        without a sync (``Store.complete``); the connection syncs every commit again after."""
        with self._lock:
            conn = self._conn
            if conn is None:
                raise StoreError(f"store {self._path} is closed")
            try:
                if not synced:
                    conn.execute(UNSYNCED)
                try:
                    with immediate(conn):
                        now = self._clock()  # with the write lock held
                        purge = now >= self._next_purge
                        if purge:
                            conn.execute("DELETE FROM claims WHERE expires_at <= ?", (now,))
                            conn.execute("DELETE FROM locks WHERE expires_at <= ?", (now,))
                        yield conn, now
                finally:
                    if not synced:
                        conn.execute(SYNCED)  # as ``connect`` left it
            except sqlite3.Error as exc:
                raise StoreError(f"store {self._path}: {exc}") from exc
            if purge:
                self._next_purge = now + _PURGE_INTERVAL

    def begin(
        self,
        key: str,
        fingerprint: str,
        *,
        in_progress_ttl_s: float,
        resume: dict[str, Any] | None = None,
    ) -> Claim:
        check_key("key", key)
        check_key("fingerprint", fingerprint)
        check_ttl("in_progress_ttl_s", in_progress_ttl_s)
        with self._transaction() as (conn, now):
            row = conn.execute(
                "SELECT fingerprint, done, claim_until, attempt, progress, record, outbox_at, resume"
                " FROM claims WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
            attempt, progress, outbox_at, resumable = 1, "{}", None, 0
            if row is not None:
                stored_fingerprint, done, claim_until, attempt, progress, record, outbox_at, resumable = row
                if stored_fingerprint != fingerprint:
                    return Claim(ClaimState.CONFLICT)
                if done:
                    return Claim(ClaimState.DONE, record=json.loads(record))
                if claim_until > now:
                    return Claim(
                        ClaimState.IN_PROGRESS,
                        progress=json.loads(progress),
                        attempt=attempt,
                        expires_in_s=claim_until - now,
                    )
                attempt += 1
            claim_until = now + in_progress_ttl_s
            found = json.loads(progress)
            noted = progress
            if resume is not None and not found:  # noted with the claim (``Store.begin``)
                noted, resumable = json.dumps(resume), 1
            conn.execute(
                "INSERT OR REPLACE INTO claims (key, fingerprint, done, claim_until, expires_at,"
                " attempt, progress, record, outbox_at, resume) VALUES (?, ?, 0, ?, ?, ?, ?, NULL, ?, ?)",
                (
                    key,
                    fingerprint,
                    claim_until,
                    claim_until + self._keep_abandoned_s,
                    attempt,
                    noted,
                    outbox_at,
                    resumable,
                ),
            )
            return Claim(ClaimState.NEW, progress=found, attempt=attempt)

    def note(self, key: str, data: dict[str, Any], *, outbox: bool = False, resume: bool = False) -> None:
        check_key("key", key)
        with self._transaction() as (conn, now):
            progress, outbox_at = _merged_progress(conn, now, key, data, "note progress on")
            conn.execute(
                "UPDATE claims SET progress = ?, outbox_at = ?, resume = max(resume, ?) WHERE key = ?",
                (progress, now if outbox else outbox_at, int(resume), key),
            )

    def take_outbox(self, *, older_than_s: float, in_progress_ttl_s: float, limit: int) -> list[Taken]:
        check_age("older_than_s", older_than_s)
        check_ttl("in_progress_ttl_s", in_progress_ttl_s)
        check_limit(limit)
        with self._transaction() as (conn, now):
            rows = conn.execute(
                "SELECT key, attempt, progress FROM claims WHERE done = 0 AND expires_at > ?"
                " AND (outbox_at <= ? OR (resume = 1 AND claim_until <= ?))"
                " ORDER BY coalesce(outbox_at, claim_until) LIMIT ?",
                (now, now - older_than_s, now, limit),
            ).fetchall()
            claim_until = now + in_progress_ttl_s
            conn.executemany(
                "UPDATE claims SET claim_until = ?, expires_at = ?, attempt = attempt + 1,"
                " outbox_at = CASE WHEN outbox_at IS NULL THEN NULL ELSE ? END WHERE key = ?",
                [(claim_until, claim_until + self._keep_abandoned_s, now, key) for key, _, _ in rows],
            )
        return [Taken(key, json.loads(progress), attempt + 1) for key, attempt, progress in rows]

    def complete(self, key: str, record: dict[str, Any], *, ttl_s: float, synced: bool = True) -> None:
        check_key("key", key)
        check_ttl("ttl_s", ttl_s)
        text = json.dumps(record)
        with self._transaction(synced=synced) as (conn, now):
            updated = conn.execute(
                "UPDATE claims SET done = 1, claim_until = NULL, expires_at = ?, progress = '{}',"
                " record = ?, outbox_at = NULL, resume = 0 WHERE key = ? AND expires_at > ?",
                (now + ttl_s, text, key, now),
            ).rowcount
            if not updated:
                raise ClaimLost(f"no record of idempotency key {key!r} to complete")

    def release(self, key: str) -> None:
        check_key("key", key)
        with self._transaction() as (conn, _):
            conn.execute("DELETE FROM claims WHERE key = ? AND done = 0", (key,))

    def park(self, key: str, data: dict[str, Any]) -> None:
        check_key("key", key)
        with self._transaction() as (conn, now):
            progress, _ = _merged_progress(conn, now, key, data, "park")
            conn.execute(
                "UPDATE claims SET progress = ?, claim_until = ?, expires_at = ?, resume = 0 WHERE key = ?",
                (progress, now, now + self._keep_abandoned_s, key),
            )

    def peek(self, key: str) -> Claim | None:
        check_key("key", key)
        with self._read() as (conn, now):
            row = conn.execute(
                "SELECT done, claim_until, attempt, progress, record FROM claims"
                " WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
        if row is None:
            return None
        done, claim_until, attempt, progress, record = row
        if done:
            return Claim(ClaimState.DONE, record=json.loads(record))
        return Claim(
            ClaimState.IN_PROGRESS,
            progress=json.loads(progress),
            attempt=attempt,
            expires_in_s=max(claim_until - now, 0.0),
        )

    def acquire(self, name: str, owner: str, *, ttl_s: float) -> bool:
        check_key("lock name", name)
        check_key("owner", owner)
        check_ttl("ttl_s", ttl_s)
        with self._transaction() as (conn, now):
            row = conn.execute(
                "SELECT owner FROM locks WHERE name = ? AND expires_at > ?", (name, now)
            ).fetchone()
            if row is not None and row[0] != owner:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO locks (name, owner, expires_at) VALUES (?, ?, ?)",
                (name, owner, now + ttl_s),
            )
            return True

    def acquire_all(
        self,
        names: Sequence[str],
        owner: str,
        *,
        ttl_s: float,
        slots: Iterable[str] | None = None,
        slot_ttl_s: float = 0.0,
    ) -> Acquired:
        check_acquire_all(names, owner, ttl_s, slots, slot_ttl_s)
        with self._transaction() as (conn, now):
            if not all(_free_for(conn, name, owner, now) for name in names):
                return Acquired.LOCKED  # nothing written: the transaction holds no change
            taking = [(name, owner, now + ttl_s) for name in names]
            if slots is not None:
                for slot in slots:  # the first free one: the others are not looked at
                    check_key("lock name", slot)
                    if _free_for(conn, slot, owner, now):
                        taking.append((slot, owner, now + slot_ttl_s))
                        break
                else:
                    return Acquired.NO_SLOT
            conn.executemany(
                "INSERT OR REPLACE INTO locks (name, owner, expires_at) VALUES (?, ?, ?)", taking
            )
            return Acquired.TAKEN

    def release_lock(self, name: str, owner: str) -> bool:
        check_key("lock name", name)
        check_key("owner", owner)
        with self._transaction() as (conn, now):
            deleted = conn.execute(
                "DELETE FROM locks WHERE name = ? AND owner = ? AND expires_at > ?", (name, owner, now)
            ).rowcount
            return deleted > 0

    def holder(self, name: str) -> str | None:
        check_key("lock name", name)
        with self._read() as (conn, now):
            row = conn.execute(
                "SELECT owner FROM locks WHERE name = ? AND expires_at > ?", (name, now)
            ).fetchone()
            return None if row is None else str(row[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
