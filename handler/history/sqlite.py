"""The history in an SQLite file of its own (the default): one machine, any number of processes.

WAL mode and a busy timeout let several processes (``up``, workers, the CLI) write and read the
same file; every commit is synced (``handler.support.sqlite``), so a step whose write returned
survives a crash or a power loss.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from handler.history._base import INDEXES, TABLE, Cursor, HistoryError, HistoryRefused, HistoryStore
from handler.support.sqlite import BUSY_TIMEOUT_S, connect, immediate

_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # fixed width, UTC: sorts as text in time order
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    trail TEXT NOT NULL,
    opens INTEGER NOT NULL,
    at TEXT NOT NULL,
    event TEXT NOT NULL,
    status TEXT,
    idempotency_key TEXT,
    job_id TEXT,
    server_id TEXT,
    volume_id TEXT,
    fields TEXT NOT NULL
)
"""


def _prepare(conn: sqlite3.Connection, _path: Path) -> None:
    with immediate(conn):
        conn.execute(_SCHEMA)
        for index in INDEXES:
            conn.execute(index)


def _busy(error: HistoryError) -> bool:
    """Whether opening failed only because another connection held the file for a moment."""
    cause = error.__cause__
    return isinstance(cause, sqlite3.OperationalError) and "database is locked" in str(cause)


class SqliteHistory(HistoryStore):
    def __init__(self, path: str | Path) -> None:
        super().__init__(f"sqlite:///{path}")
        # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at once
        # instead of waiting (two processes opening a new history together): try again.
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._conn = connect(Path(path), _prepare, HistoryError, "the history")
                return
            except HistoryError as error:
                if not _busy(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(0.05)

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        try:
            with immediate(self._conn):
                yield self._conn.cursor()
        except sqlite3.OperationalError as error:  # locked too long, disk full or gone
            raise HistoryError(f"the history {self.url} failed: {error}") from error
        except (sqlite3.Error, UnicodeError) as error:  # a constraint, a value it cannot hold
            raise HistoryRefused(f"the history {self.url} refused a step: {error}") from error

    def _sql(self, statement: str) -> str:
        return statement

    def _time_in(self, at: datetime) -> str:
        return at.astimezone(timezone.utc).strftime(_TIME)

    def _time_out(self, value: Any) -> datetime:
        return datetime.strptime(str(value), _TIME).replace(tzinfo=timezone.utc)

    def _fields_in(self, fields: str) -> str:
        return fields

    def _fields_out(self, value: Any) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(value)
        return loaded

    def close(self) -> None:
        self._conn.close()
