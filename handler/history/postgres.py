"""The history in PostgreSQL (``postgresql://…``): one history shared by several instances
(FunctionGraph functions in a VPC, workers on several machines; Huawei Cloud RDS for
PostgreSQL in production). Needs the ``postgres`` extra (psycopg 3).

Each store holds one connection, reopened after the database was lost; every statement runs
under a statement timeout, so a stuck database fails a write instead of holding it. The table
is created on first use, under an advisory lock so that instances starting together do not
race on it; ``?options=-csearch_path%3Dschema`` in the URL puts it in a schema of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg.types.json import Jsonb

from handler.history._base import INDEXES, TABLE, Cursor, HistoryError, HistoryRefused, HistoryStore
from handler.support.log import redact_text, redact_url

if TYPE_CHECKING:
    from psycopg import Connection

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    trail TEXT NOT NULL,
    opens SMALLINT NOT NULL,
    at TIMESTAMPTZ NOT NULL,
    event TEXT NOT NULL,
    status TEXT,
    idempotency_key TEXT,
    job_id TEXT,
    server_id TEXT,
    volume_id TEXT,
    fields JSONB NOT NULL
)
"""
_SCHEMA_LOCK = 0x6563_7364_6869_7374  # "ecsdhist": one advisory lock for creating the table


class PostgresHistory(HistoryStore):
    holds_nul = False  # neither TEXT nor JSONB can hold U+0000

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0, statement_timeout_s: float = 5.0) -> None:
        super().__init__(redact_url(url))
        self._dsn = url
        self._connect_timeout_s = connect_timeout_s
        self._statement_timeout_ms = int(statement_timeout_s * 1000)
        self._conn: Connection[Any] | None = None
        self._connection()

    def _connection(self) -> Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self._dsn,
                autocommit=True,
                connect_timeout=max(int(self._connect_timeout_s), 1),
                application_name="ecs-detach-history",
            )
            conn.execute(f"SET statement_timeout = {self._statement_timeout_ms}")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                conn.execute(_SCHEMA)
                for index in INDEXES:
                    conn.execute(index)
        except psycopg.Error as error:
            raise HistoryError(f"cannot open the history {self.url}: {self._safe(error)}") from None
        self._conn = conn
        return conn

    def _safe(self, error: psycopg.Error) -> str:
        return redact_text(" ".join(str(error).split()) or type(error).__name__, self._password())

    def _password(self) -> str | None:
        password = urlsplit(self._dsn).password
        return unquote(password) if password else None

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        conn = self._connection()
        try:
            with conn.transaction(), conn.cursor() as cursor:
                yield cursor
        except psycopg.Error as error:
            if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)) or conn.closed:
                conn.close()  # reopened by the next call
                self._conn = None
                raise HistoryError(f"the history {self.url} failed: {self._safe(error)}") from None
            raise HistoryRefused(f"the history {self.url} refused a step: {self._safe(error)}") from None
        except UnicodeError as error:
            raise HistoryRefused(f"the history {self.url} refused a step: {error}") from None

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def _time_in(self, at: datetime) -> datetime:
        return at

    def _time_out(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise HistoryError(f"the history {self.url} holds a time that is not one: {value!r}")
        return value

    def _fields_in(self, fields: str) -> Jsonb:
        return Jsonb(fields, dumps=str)

    def _fields_out(self, value: Any) -> dict[str, Any]:
        return dict(value)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
