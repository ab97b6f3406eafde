"""Opening an SQLite file the way the embedded topic and the store both need it, and the write
transaction they both run."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

BUSY_TIMEOUT_S = 30.0  # how long a connection waits for another one's write lock (thread or process)
MEMORY = ":memory:"  # the path of a database that lives in this connection only
# How a connection syncs its commits: every one (``connect`` leaves each connection so), or, in
# WAL mode, not the next ones until it is set back (the store's unsynced completion).
SYNCED = "PRAGMA synchronous = FULL"
UNSYNCED = "PRAGMA synchronous = NORMAL"


def connect(
    path: Path,
    prepare: Callable[[sqlite3.Connection, Path], None],
    error: type[Exception],
    what: str,
    *,
    page_size: int | None = None,
) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (callers run explicit transactions), creating its
    directory, in WAL mode with every commit synced, then ``prepare`` it (its schema); failures
    raise ``error`` naming ``what``. ``MEMORY`` opens a private in-memory database instead.
    ``page_size`` applies to a file this call creates; an existing file keeps its own."""
    in_memory = str(path) == MEMORY
    try:
        if not in_memory:
            path.parent.mkdir(parents=True, exist_ok=True)
        target = MEMORY if in_memory else path
        conn = sqlite3.connect(target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise error(f"cannot open {what} {path}: {exc}") from exc
    try:
        if not in_memory:
            if page_size is not None:  # before the switch to WAL, which writes the new file's header
                conn.execute(f"PRAGMA page_size = {int(page_size)}")
            _switch_to_wal(conn)
        # FULL, not NORMAL: with WAL, NORMAL does not sync the log at each commit, so a power
        # loss could drop a message (or a claim) whose write had already returned.
        conn.execute(SYNCED)
        prepare(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise error(f"cannot open {what} {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection) -> None:
    """``PRAGMA journal_mode = WAL``, retried for ``BUSY_TIMEOUT_S`` while another connection
    holds the file: SQLite can answer the switch "database is locked" at once, without waiting
    out the busy timeout, when several processes open a new file together."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class immediate:  # lower case: used like a function, ``with immediate(conn):``
    """A write transaction that holds the write lock from its start: committed when the block
    ends, rolled back when it raises (or its commit does). A class, not a generator: every write
    of the store, the topics and the history enters one."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        conn = self._conn
        if exc_type is None:
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        elif conn.in_transaction:
            conn.execute("ROLLBACK")
