"""What only the SQLite store does: its file, schema and purge."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from handler.store import ClaimLost, ClaimState, SqliteStore, StoreError
from handler.store import sqlite as store_module
from handler.store.sqlite import APPLICATION_ID, PAGE_SIZE, SCHEMA_VERSION
from tests.store.conftest import FakeClock


def _pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        (value,) = conn.execute(f"PRAGMA {name}").fetchone()
    finally:
        conn.close()
    return int(value)


def _rows(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    finally:
        conn.close()
    return int(count)


def test_creates_the_directory_and_a_versioned_wal_schema(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store.db"
    store = SqliteStore(path)
    store.close()

    assert _pragma(path, "user_version") == SCHEMA_VERSION
    assert _pragma(path, "application_id") == APPLICATION_ID
    assert _pragma(path, "page_size") == PAGE_SIZE
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_reopening_keeps_the_records(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    store.begin("k", "fp", in_progress_ttl_s=60)
    store.close()

    reopened = SqliteStore(tmp_path / "store.db")
    try:
        assert reopened.begin("k", "fp", in_progress_ttl_s=60).state is ClaimState.IN_PROGRESS
    finally:
        reopened.close()


def test_a_file_made_with_other_pages_keeps_them_and_its_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page size is chosen for new files: one made before (SQLite's 4 KB) is used as it is."""
    path = tmp_path / "store.db"
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "PAGE_SIZE", 4096)
        store = SqliteStore(path)
        store.begin("k", "fp", in_progress_ttl_s=60)
        store.close()

    reopened = SqliteStore(path)
    try:
        assert reopened.begin("k", "fp", in_progress_ttl_s=60).state is ClaimState.IN_PROGRESS
    finally:
        reopened.close()
    assert _pragma(path, "page_size") == 4096


def test_refuses_a_file_of_another_schema(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE messages (id TEXT)")
    conn.execute("PRAGMA user_version = 1")
    conn.close()

    with pytest.raises(StoreError, match="not an ecs-detach store file"):
        SqliteStore(path)


def test_refuses_a_newer_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        SqliteStore(path)


def test_cannot_open_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open store file"):
        SqliteStore(tmp_path)


def test_expired_rows_are_purged_by_a_later_write(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    clock = FakeClock()
    store = SqliteStore(path, clock=clock, keep_abandoned_s=10)
    try:
        store.begin("done", "fp", in_progress_ttl_s=10)
        store.complete("done", {"job_id": "job-1"}, ttl_s=10)
        store.begin("abandoned", "fp", in_progress_ttl_s=10)
        store.begin("running", "fp", in_progress_ttl_s=3600)
        store.acquire("expired", "o", ttl_s=10)
        store.acquire("held", "o", ttl_s=3600)
        clock.now += 59
        store.acquire("held", "o", ttl_s=3600)  # a write
        assert (_rows(path, "claims"), _rows(path, "locks")) == (3, 2)  # purged at most once a minute
        store.holder("held")  # a read purges nothing (and takes no write lock)

        clock.now += 2
        store.acquire("held", "o", ttl_s=3600)

        assert (_rows(path, "claims"), _rows(path, "locks")) == (1, 1)
        assert store.begin("running", "fp", in_progress_ttl_s=10).state is ClaimState.IN_PROGRESS
        assert store.holder("held") == "o"
    finally:
        store.close()


def test_an_unsynced_completion_commits_without_a_sync_and_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``complete(..., synced=False)`` commits in WAL mode with ``synchronous = NORMAL`` (no
    sync at its commit), then every later write is synced again, also after a completion
    that fails; the completion itself is kept like any other."""
    connections: list[sqlite3.Connection] = []
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(*args, **kwargs)
        conn.set_trace_callback(statements.append)
        connections.append(conn)
        return conn

    monkeypatch.setattr(sqlite3, "connect", traced)
    store = SqliteStore(tmp_path / "store.db")
    (conn,) = connections
    try:
        store.begin("k", "fp", in_progress_ttl_s=60)
        statements.clear()
        store.complete("k", {"outcome": "accepted"}, ttl_s=60, synced=False)
        assert statements[0] == "PRAGMA synchronous = NORMAL"
        assert statements[1] == "BEGIN IMMEDIATE"
        assert statements[-2:] == ["COMMIT", "PRAGMA synchronous = FULL"]
        assert conn.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL

        statements.clear()
        with pytest.raises(ClaimLost):
            store.complete("unknown", {"outcome": "accepted"}, ttl_s=60, synced=False)
        assert statements[-2:] == ["ROLLBACK", "PRAGMA synchronous = FULL"]

        statements.clear()
        store.begin("k2", "fp", in_progress_ttl_s=60)
        store.complete("k2", {"outcome": "rejected"}, ttl_s=60)
        assert not [s for s in statements if s.startswith("PRAGMA synchronous")]
    finally:
        store.close()
    assert _pragma(tmp_path / "store.db", "user_version") == SCHEMA_VERSION
    reopened = SqliteStore(tmp_path / "store.db")
    try:
        claim = reopened.begin("k", "fp", in_progress_ttl_s=60)
        assert (claim.state, claim.record) == (ClaimState.DONE, {"outcome": "accepted"})
    finally:
        reopened.close()


def test_repr_names_the_file(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.db")
    try:
        assert repr(store) == f"SqliteStore({str(tmp_path / 'store.db')!r})"
        assert store.path == tmp_path / "store.db"
    finally:
        store.close()


def test_keep_abandoned_must_be_finite(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_abandoned_s"):
        SqliteStore(tmp_path / "store.db", keep_abandoned_s=-1)


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_file_gains_the_outbox_and_resume_and_keeps_its_records(
    tmp_path: Path, version: int
) -> None:
    """A store file of the code before the outbox (1) or before resumable records (2) is
    upgraded in place, not refused."""
    path = tmp_path / "store.db"
    clock = FakeClock()
    SqliteStore(path, clock=clock).close()
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX claims_resume")
    conn.execute("ALTER TABLE claims DROP COLUMN resume")
    if version == 1:
        conn.execute("DROP INDEX claims_outbox")
        conn.execute("ALTER TABLE claims DROP COLUMN outbox_at")
    values = '?, ?, 1, \'{"job_id": "job-1"}\', NULL' + (", NULL" if version == 2 else "")
    conn.execute(f"INSERT INTO claims VALUES ('old', 'fp', 0, {values})", (clock.now + 60, clock.now + 3600))
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()

    store = SqliteStore(path, clock=clock)
    try:
        assert store.begin("old", "fp", in_progress_ttl_s=60).progress == {"job_id": "job-1"}
        store.begin("new", "fp", in_progress_ttl_s=60)
        store.note("new", {"job_id": "job-2"}, outbox=True)
        store.begin("resumed", "fp", in_progress_ttl_s=5)
        store.note("resumed", {"request": {}}, resume=True)
        clock.now += 10
        taken = store.take_outbox(older_than_s=5, in_progress_ttl_s=60, limit=5)
        assert sorted(t.key for t in taken) == ["new", "resumed"]
    finally:
        store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
    conn.close()
