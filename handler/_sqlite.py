"""Opening an SQLite file the way the embedded topic and the store both need it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

BUSY_TIMEOUT_S = 30.0  # how long a connection waits for another one's write lock (thread or process)


def connect(
    path: Path,
    prepare: Callable[[sqlite3.Connection, Path], None],
    error: type[Exception],
    what: str,
) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode (callers run explicit transactions), creating its
    directory, then ``prepare`` it (schema, pragmas); failures raise ``error`` naming ``what``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except (OSError, sqlite3.Error) as exc:
        raise error(f"cannot open {what} {path}: {exc}") from exc
    try:
        prepare(conn, path)
    except sqlite3.Error as exc:
        conn.close()
        raise error(f"cannot open {what} {path}: {exc}") from exc
    except BaseException:
        conn.close()
        raise
    return conn
