"""A durable topic in one SQLite file, shared by the threads and processes of one machine.

All topics of a file live in one table, told apart by the ``topic`` column, so jobs, results
and their dead-letter topics can share one file. A message is due when
``available_at <= now``; receiving it leases it by moving ``available_at`` to the end of the
lease, so a lease that is not settled in time simply makes the message due again.

A topic whose name ends in ``.dead`` is a dead-letter topic: its messages stay until acked,
however often they are delivered.
"""

from __future__ import annotations

import math
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from handler.support.sqlite import connect, immediate

from ._base import Browsed, Delivery, TopicError
from ._common import (
    DEAD_SUFFIX,
    check_receive,
    check_seconds,
    check_topic,
    is_dead_letter_topic,
    no_dead_letter_topic,
    stale,
)

SCHEMA_VERSION = 1  # PRAGMA user_version of a file this code created
_POLL_INTERVAL = 0.05  # s a waiting receiver goes at most without looking at the file again
_CLOCK_SKEW = 1.0  # s a publisher's clock may lag another's: browsers look back this far

_SCHEMA = (
    """
    CREATE TABLE messages (
        seq INTEGER PRIMARY KEY,          -- publish order: breaks ties between due times
        id TEXT NOT NULL UNIQUE,
        topic TEXT NOT NULL,
        body TEXT NOT NULL,
        available_at REAL NOT NULL,       -- due time; while leased, the end of the lease
        deliveries INTEGER NOT NULL DEFAULT 0,
        receipt TEXT,                     -- token of the current lease, NULL if none
        last_error TEXT,                  -- reason given by the last nack
        published_at REAL NOT NULL
    )
    """,
    "CREATE INDEX messages_due ON messages (topic, available_at, seq)",
)

# The last four parameters of each settling statement name the lease the caller must hold.
_ACK = "DELETE FROM messages WHERE id = ? AND topic = ? AND receipt = ? AND available_at > ?"
_NACK = (
    "UPDATE messages SET available_at = ?, last_error = ?, receipt = NULL"
    " WHERE id = ? AND topic = ? AND receipt = ? AND available_at > ?"
)
_REQUEUE = (
    "UPDATE messages SET body = ?, available_at = ?, deliveries = 0, last_error = NULL,"
    " receipt = NULL WHERE id = ? AND topic = ? AND receipt = ? AND available_at > ?"
)
_DEAD_LETTER = (
    "UPDATE messages SET topic = ?, available_at = ?, last_error = ?, receipt = NULL"
    " WHERE id = ? AND topic = ? AND receipt = ? AND available_at > ?"
)


class _Wakeup:
    """Wakes the receivers of this process waiting on one topic of one file when a message
    is due now (a delayed one is found by the receivers' own look every ``_POLL_INTERVAL``)."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._generation = 0

    def generation(self) -> int:
        with self._condition:
            return self._generation

    def notify(self) -> None:
        with self._condition:
            self._generation += 1
            self._condition.notify_all()

    def wait(self, seen: int, timeout: float) -> None:
        """Sleep up to ``timeout`` s unless notified since ``generation()`` returned ``seen``."""
        with self._condition:
            self._condition.wait_for(lambda: self._generation != seen, timeout)


_wakeups: dict[tuple[Path, str], _Wakeup] = {}
_wakeups_lock = threading.Lock()


def _wakeup_for(path: Path, topic: str) -> _Wakeup:
    with _wakeups_lock:
        wakeup = _wakeups.get((path, topic))
        if wakeup is None:
            wakeup = _wakeups[path, topic] = _Wakeup()
        return wakeup


def _prepare(conn: sqlite3.Connection, path: Path) -> None:
    with immediate(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == 0:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise TopicError(f"{path} has topic schema version {version}; this code knows {SCHEMA_VERSION}")


def _connect(path: Path) -> sqlite3.Connection:
    """Open ``path``, creating its directory and schema if missing."""
    return connect(path, _prepare, TopicError, "topic file")


class SqliteTopic:
    """One topic in a SQLite file; safe to share between threads (it serialises its calls).

    Several instances, threads and processes may use the same file at once.
    """

    def __init__(
        self,
        path: str | Path,
        name: str,
        *,
        visibility_timeout: float = 60.0,
        max_deliveries: int = 5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_topic(name, visibility_timeout, max_deliveries)
        self._path = Path(path).resolve()
        self._name = name
        self._visibility_timeout = float(visibility_timeout)
        self._max_deliveries = max_deliveries
        self._clock = clock
        self._dead_name = None if is_dead_letter_topic(name) else name + DEAD_SUFFIX
        self._wakeup = _wakeup_for(self._path, self._name)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = _connect(self._path)

    @property
    def name(self) -> str:
        return self._name

    @property
    def path(self) -> Path:
        """The absolute path of the file."""
        return self._path

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise TopicError(f"topic {self._name!r} in {self._path} is closed")
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise TopicError(f"topic {self._name!r} in {self._path}: {exc}") from exc

    def publish(self, body: str, *, delay: float = 0.0) -> str:
        """Store ``body`` (on disk when this returns); deliverable after ``delay`` s."""
        check_seconds("delay", delay)
        message_id = uuid.uuid4().hex
        now = self._clock()
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO messages (id, topic, body, available_at, published_at) VALUES (?, ?, ?, ?, ?)",
                (message_id, self._name, body, now + delay, now),
            )
        if delay == 0:
            self._wakeup.notify()
        return message_id

    def receive(self, max_messages: int = 1, *, wait: float = 0.0) -> list[Delivery]:
        """Lease up to ``max_messages`` due messages, oldest due first.

        With ``wait`` > 0, wait up to that long for the first one: publishers in this process
        wake the receiver at once, others are seen within ``_POLL_INTERVAL``.
        """
        check_receive(max_messages, wait)
        deadline = time.monotonic() + wait
        while True:
            seen = self._wakeup.generation()
            leased, next_due = self._lease(max_messages)
            remaining = deadline - time.monotonic()
            if leased or remaining <= 0:
                return leased
            pause = min(remaining, _POLL_INTERVAL)
            if next_due is not None:
                pause = min(pause, max(next_due - self._clock(), 0.0))
            self._wakeup.wait(seen, pause)

    def _lease(self, max_messages: int) -> tuple[list[Delivery], float | None]:
        """Lease due messages (dead-lettering the exhausted ones among them), else say when the
        next is due. Only the rows at the head of the queue are read, so a receive costs the
        same with ten messages waiting or ten thousand."""
        now = self._clock()
        leased: list[Delivery] = []
        with self._connection() as conn, immediate(conn):
            rows = conn.execute(
                "SELECT seq, id, body, deliveries FROM messages"
                " WHERE topic = ? AND available_at <= ? ORDER BY available_at, seq LIMIT ?",
                (self._name, now, max_messages),
            ).fetchall()
            for seq, message_id, body, deliveries in rows:
                if self._dead_name is not None and deliveries >= self._max_deliveries:
                    conn.execute(
                        "UPDATE messages SET topic = ?, available_at = ?, receipt = NULL WHERE seq = ?",
                        (self._dead_name, now, seq),
                    )
                    continue
                receipt = secrets.token_urlsafe(16)
                conn.execute(
                    "UPDATE messages SET available_at = ?, deliveries = ?, receipt = ? WHERE seq = ?",
                    (now + self._visibility_timeout, deliveries + 1, receipt, seq),
                )
                leased.append(Delivery(message_id, body, deliveries + 1, receipt))
            if leased or rows:  # rows but no lease: exhausted ones went to the dead letters
                return leased, None if leased else now
            (next_due,) = conn.execute(
                "SELECT MIN(available_at) FROM messages WHERE topic = ?", (self._name,)
            ).fetchone()
        return leased, next_due

    def _settle(self, delivery: Delivery, statement: str, values: tuple[object, ...]) -> None:
        lease = (delivery.message_id, self._name, delivery.receipt, self._clock())
        with self._connection() as conn:
            changed = conn.execute(statement, (*values, *lease)).rowcount
        if not changed:
            raise stale(self._name, delivery.message_id)

    def ack(self, delivery: Delivery) -> None:
        """Remove the message; raises ``StaleDelivery`` unless the lease is still ours."""
        self._settle(delivery, _ACK, ())

    def nack(self, delivery: Delivery, *, delay: float = 0.0, reason: str = "") -> None:
        """Make the message due after ``delay`` s, recording ``reason``; the count stays."""
        check_seconds("delay", delay)
        self._settle(delivery, _NACK, (self._clock() + delay, reason))
        if delay == 0:
            self._wakeup.notify()

    def requeue(self, delivery: Delivery, body: str, *, delay: float) -> None:
        """Replace the body, make it due after ``delay`` s and restart the delivery count."""
        check_seconds("delay", delay)
        self._settle(delivery, _REQUEUE, (body, self._clock() + delay))
        if delay == 0:
            self._wakeup.notify()

    def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        """Move the message to ``{name}.dead`` now, body unchanged, with ``reason``."""
        if self._dead_name is None:
            raise no_dead_letter_topic(self._name)
        self._settle(delivery, _DEAD_LETTER, (self._dead_name, self._clock(), reason))

    def pending(self) -> int:
        """Messages of this topic not yet acked, leased or not (exhausted ones included
        until a receive moves them to the dead-letter topic)."""
        with self._connection() as conn:
            (count,) = conn.execute("SELECT COUNT(*) FROM messages WHERE topic = ?", (self._name,)).fetchone()
        return int(count)

    def browse(self, *, since: float | None = None) -> _SqliteBrowser:
        """Read the rows of this topic without leasing them (see ``Browsable``)."""
        return _SqliteBrowser(self, since)

    def _rows_from(self, since: float, limit: int) -> list[tuple[str, str, float]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, body, published_at FROM messages WHERE topic = ? AND published_at >= ?"
                " ORDER BY published_at, seq LIMIT ?",
                (self._name, since, limit),
            ).fetchall()
        return [(str(i), str(body), float(at)) for i, body, at in rows]

    def dead_letter_topic(self) -> SqliteTopic:
        """The ``{name}.dead`` topic in the same file, as a new instance the caller closes."""
        if self._dead_name is None:
            raise ValueError(f"{self._name!r} is a dead-letter topic and has none of its own")
        return SqliteTopic(
            self._path,
            self._dead_name,
            visibility_timeout=self._visibility_timeout,
            max_deliveries=self._max_deliveries,
            clock=self._clock,
        )

    def close(self) -> None:
        """Close this instance's connection; later calls raise ``TopicError``."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class _SqliteBrowser:
    """Rows by publish time; ``seq`` cannot be the cursor (SQLite reuses the highest one once
    its row is deleted). Rows of the last ``_CLOCK_SKEW`` s are read again, and skipped by id."""

    def __init__(self, topic: SqliteTopic, since: float | None) -> None:
        self._topic = topic
        self._from = -math.inf if since is None else since
        self._seen: dict[str, float] = {}

    def next(self, wait: float = 0.0) -> list[Browsed]:
        check_seconds("wait", wait)
        deadline = time.monotonic() + wait
        wakeup = self._topic._wakeup
        while True:
            seen = wakeup.generation()
            found = [
                Browsed(message_id, body, at)
                for message_id, body, at in self._topic._rows_from(self._from, len(self._seen) + 500)
                if message_id not in self._seen
            ]
            if found:
                newest = max(item.published_at for item in found)
                self._seen.update((item.message_id, item.published_at) for item in found)
                self._from = max(self._from, newest - _CLOCK_SKEW)
                self._seen = {i: at for i, at in self._seen.items() if at >= self._from}
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            wakeup.wait(seen, min(remaining, _POLL_INTERVAL))

    def close(self) -> None:
        """Nothing to release: the topic's connection is the topic's."""
