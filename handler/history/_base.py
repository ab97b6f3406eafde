"""The history's table and the SQL both adapters run (SQLite, PostgreSQL): append, query, prune.

One table, ``ecs_detach_history``, one row per step, only ever inserted; rows leave it only by
retention (``prune``, in bounded batches). Each adapter supplies its connection, transactions,
and how it stores a time and a JSON object; the statements are written once, with ``?``
placeholders (``%s`` on PostgreSQL).
"""

# ruff: noqa: S608 -- statements are built from this module's constants only; every value is a
# bound parameter.
from __future__ import annotations

import json
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from handler.core.errors import EcsDetachError
from handler.history.models import JOINABLE_STATUSES, Step, Trail

if TYPE_CHECKING:
    from handler.history.query import Query

TABLE = "ecs_detach_history"
# The columns every adapter creates (types differ: times and JSON), in insert order.
COLUMNS = (
    "trail",
    "opens",
    "at",
    "event",
    "status",
    "idempotency_key",
    "job_id",
    "server_id",
    "volume_id",
    "fields",
)
INDEXES = (
    f"CREATE INDEX IF NOT EXISTS {TABLE}_opens ON {TABLE} (at) WHERE opens = 1",
    # A trail is opened once: a second opening (a result event recorded twice at once) fails.
    f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_one_opening ON {TABLE} (trail) WHERE opens = 1",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_trail ON {TABLE} (trail, seq)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_job ON {TABLE} (job_id) WHERE job_id IS NOT NULL",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_key ON {TABLE} (idempotency_key, seq)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_server ON {TABLE} (server_id)",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_at ON {TABLE} (at)",
)

# The columns a text search looks in (``Query.text``).
_SEARCHED = ("server_id", "volume_id", "idempotency_key", "job_id")
_INSERT = f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"


class HistoryError(EcsDetachError):
    """The history cannot be used: its URL is wrong, or its database is down or refuses."""


class HistoryRefused(HistoryError):
    """The database answered, and refused what was written (a constraint, a value it cannot
    hold): writing the same again fails again, unlike a database that is down."""


REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")
# How json.dumps (ASCII) writes a surrogate (either half of a pair too: those need no cleaning,
# and are cleaned unchanged) and the NUL character.
_ESCAPED_SURROGATE = re.compile(r"\\ud[89a-f]")
_ESCAPED_NUL = "\\u0000"


def clean(value: Any, *, nul: bool) -> Any:
    """``value`` with every text fit for the database: a lone surrogate (JSON can carry one,
    no UTF-8 text can), and with ``nul`` the NUL character (PostgreSQL's text and JSONB hold
    none), become U+FFFD. Everything else is kept as sent."""
    if isinstance(value, str):
        value = _SURROGATE.sub(REPLACEMENT, value)
        return value.replace("\x00", REPLACEMENT) if nul else value
    if isinstance(value, Mapping):
        return {clean(str(key), nul=nul): clean(item, nul=nul) for key, item in value.items()}
    if isinstance(value, list):
        return [clean(item, nul=nul) for item in value]
    return value


class Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class HistoryStore(ABC):
    """Where the steps are kept. Not shared between threads: the recorder's writer has one, a
    reader (the CLI) another."""

    holds_nul = True  # whether its text columns can hold the NUL character

    def __init__(self, shown_url: str) -> None:
        self.url = shown_url  # redacted: fit for a message

    # -- what an adapter supplies ---------------------------------------------------------------

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Cursor]:
        """A cursor in one transaction, committed at the end (rolled back on error); errors of
        the database raise ``HistoryError``, ``HistoryRefused`` when it refused the data."""

    @abstractmethod
    def _sql(self, statement: str) -> str:
        """``statement`` in the adapter's placeholder style."""

    @abstractmethod
    def _time_in(self, at: datetime) -> Any: ...

    @abstractmethod
    def _time_out(self, value: Any) -> datetime: ...

    @abstractmethod
    def _fields_in(self, fields: str) -> Any:
        """The JSON text of a step's fields as the column takes it."""

    @abstractmethod
    def _fields_out(self, value: Any) -> dict[str, Any]: ...

    @abstractmethod
    def close(self) -> None: ...

    # -- the history ------------------------------------------------------------------------------

    def append(self, steps: Sequence[Step]) -> None:
        """Write ``steps`` in one transaction, each joined to its trail (``models`` says how)."""
        with self._transaction() as cursor:
            for step in steps:
                self._insert(cursor, step, *self._trail_of(cursor, step))

    def append_new(self, steps: Sequence[Step]) -> int:
        """Write the steps of each trail ``steps`` name (every step names its trail) unless
        that trail is kept already: how many trails were new. For records that may come twice
        (result events delivered again)."""
        trails: dict[str, list[Step]] = {}
        for step in steps:
            if step.trail is None:
                raise ValueError(f"{step.event} names no trail")
            trails.setdefault(step.trail, []).append(step)
        new = 0
        with self._transaction() as cursor:
            for trail, its_steps in trails.items():
                cursor.execute(self._sql(f"SELECT 1 FROM {TABLE} WHERE trail = ? LIMIT 1"), (trail,))
                if cursor.fetchone() is not None:
                    continue
                for step in its_steps:
                    self._insert(cursor, step, trail, step.opens)
                new += 1
        return new

    def _insert(self, cursor: Cursor, step: Step, trail: str, opens: bool) -> None:
        nul = not self.holds_nul
        columns = (step.event, step.status, step.idempotency_key, step.job_id, step.server_id, step.volume_id)
        fields = json.dumps(dict(step.fields), default=str)  # JSON values only, in ASCII
        # What ``clean`` replaces can only be in the text escaped: read it back and clean it
        # then only (it walks every value: most of a step's cost when done for each one).
        if _ESCAPED_SURROGATE.search(fields) or (nul and _ESCAPED_NUL in fields):
            fields = json.dumps(clean(json.loads(fields), nul=nul))
        text = "".join([column for column in columns if column])  # the same, for the columns
        if _SURROGATE.search(text) or (nul and "\x00" in text):
            columns = tuple(clean(column, nul=nul) for column in columns)
        cursor.execute(
            self._sql(_INSERT),
            (trail, 1 if opens else 0, self._time_in(step.at), *columns, self._fields_in(fields)),
        )

    def _trail_of(self, cursor: Cursor, step: Step) -> tuple[str, bool]:
        """The step's trail and whether it opens it: its own, else its job's, else its key's."""
        if step.trail is not None:
            return step.trail, step.opens
        found = None
        if step.job_id is not None:
            cursor.execute(
                self._sql(
                    f"SELECT trail FROM {TABLE} WHERE job_id = ? AND event = 'detach.accepted' "
                    "ORDER BY seq DESC LIMIT 1"
                ),
                (step.job_id,),
            )
            found = cursor.fetchone()
        if found is None and step.idempotency_key is not None:
            statuses = ", ".join(f"'{status}'" for status in JOINABLE_STATUSES)
            cursor.execute(
                self._sql(
                    f"SELECT trail FROM {TABLE} WHERE idempotency_key = ? AND status IN ({statuses}) "
                    "ORDER BY seq DESC LIMIT 1"
                ),
                (step.idempotency_key,),
            )
            found = cursor.fetchone()
        return (str(found[0]), False) if found is not None else (uuid.uuid4().hex, True)

    def query(self, query: Query) -> list[Trail]:
        """The requests ``query`` selects, newest first, each with all its steps."""
        where, params = ["s.opens = 1"], []
        if query.since is not None:
            where.append("s.at >= ?")
            params.append(self._time_in(query.since))
        if query.server_id is not None:
            where.append(f"s.trail IN (SELECT trail FROM {TABLE} WHERE server_id = ?)")
            params.append(query.server_id)
        if query.key is not None:
            where.append(f"s.trail IN (SELECT trail FROM {TABLE} WHERE idempotency_key = ?)")
            params.append(query.key)
        if query.job_id is not None:
            where.append(
                f"s.trail IN (SELECT trail FROM {TABLE} WHERE job_id = ? AND event = 'detach.accepted')"
            )
            params.append(query.job_id)
        if query.trail is not None:
            where.append("s.trail = ?")
            params.append(query.trail)
        if query.text:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", query.text) + "%"
            named = " OR ".join(f"{column} LIKE ? ESCAPE '\\'" for column in _SEARCHED)
            where.append(f"(s.trail = ? OR s.trail IN (SELECT trail FROM {TABLE} WHERE {named}))")
            params += [query.text, *(pattern for _ in _SEARCHED)]
        if query.outcome is not None:
            # The trail's latest step that has a status has this one.
            where.append(
                f"s.trail IN (SELECT o.trail FROM {TABLE} o WHERE o.status = ? AND o.seq = "
                f"(SELECT MAX(l.seq) FROM {TABLE} l WHERE l.trail = o.trail AND l.status IS NOT NULL))"
            )
            params.append(query.outcome)
        listing = self._sql(
            f"SELECT s.trail FROM {TABLE} s WHERE {' AND '.join(where)} "
            "ORDER BY s.at DESC, s.seq DESC LIMIT ? OFFSET ?"
        )
        # What is searched for is made fit as what was written was (a search for text the
        # database cannot hold finds what that text became, and is no error of the database).
        params = [clean(value, nul=not self.holds_nul) for value in params]
        with self._transaction() as cursor:
            cursor.execute(listing, (*params, query.limit, query.offset))
            trails = [str(row[0]) for row in cursor.fetchall()]
            if not trails:
                return []
            marks = ", ".join("?" for _ in trails)
            cursor.execute(
                self._sql(
                    f"SELECT seq, trail, opens, at, event, status, fields FROM {TABLE} "
                    f"WHERE trail IN ({marks}) ORDER BY at, seq"
                ),
                trails,
            )
            rows = cursor.fetchall()
        steps: dict[str, list[Step]] = {trail: [] for trail in trails}
        for seq, trail, opens, at, event, status, fields in rows:
            steps[trail].append(
                Step(
                    at=self._time_out(at),
                    event=event,
                    fields=self._fields_out(fields),
                    status=status,
                    trail=trail,
                    opens=bool(opens),
                    seq=int(seq),
                )
            )
        return [Trail(trail, tuple(steps[trail])) for trail in trails if steps[trail]]

    def prune(self, before: datetime, limit: int) -> int:
        """Delete at most ``limit`` steps older than ``before`` (oldest first); how many went.
        Bounded so that it never holds the table long: call it again for more."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    f"DELETE FROM {TABLE} WHERE seq IN "
                    f"(SELECT seq FROM {TABLE} WHERE at < ? ORDER BY at LIMIT ?)"
                ),
                (self._time_in(before), limit),
            )
            return int(getattr(cursor, "rowcount", 0) or 0)

    def count(self) -> int:
        """How many steps are kept (all requests)."""
        with self._transaction() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM {TABLE}")
            return int(cursor.fetchone()[0])
