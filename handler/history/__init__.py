"""The audit history: every request, every step of it, and what became of it, kept durably.

``open_history(url)`` opens the store a URL names (``sqlite:///…``, the default, or
``postgresql://…``); ``HistoryRecorder`` takes the steps ``log_event`` hands it and writes them
from a thread of its own; ``models`` says which events are steps and how they form trails.
docs/history.md is the user's view: what is kept, where, for how long, and what a crash loses.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from handler.errors import ConfigError
from handler.history.models import OUTCOMES, SUMMARY_FIELDS, Step, Trail
from handler.support.lazy import lazy_names
from handler.support.log import redact_url

if TYPE_CHECKING:
    from collections.abc import Callable

    from handler.history._base import HistoryError, HistoryRefused, HistoryStore
    from handler.history.query import Query

# Only the history's readers (the CLI, the console) list requests: a function's cold start
# does not build ``Query``; its stores, and their base, are loaded by the writer's thread when
# it opens one, after the first event (``recorder``).
__getattr__ = lazy_names(
    __name__,
    {"Query": "query", "HistoryError": "_base", "HistoryRefused": "_base", "HistoryStore": "_base"},
)

__all__ = [
    "OFF",
    "OUTCOMES",
    "SUMMARY_FIELDS",
    "HistoryError",
    "HistoryRefused",
    "HistoryStore",
    "Query",
    "Step",
    "Trail",
    "check_url",
    "open_history",
]

OFF = "off"  # ECS_DETACH_HISTORY=off: no history is kept
_SQLITE_USAGE = "use sqlite:///relative/path.db or sqlite:////absolute/path.db"
_POSTGRES = ("postgresql", "postgres")


def check_url(url: str) -> Callable[[], HistoryStore]:
    """What opens the history ``url`` names, checked now (without connecting): a URL that can
    never work raises ``ConfigError`` naming ``ECS_DETACH_HISTORY``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"ECS_DETACH_HISTORY: malformed URL {redact_url(url)}") from None
    if parts.scheme in _POSTGRES:
        try:
            from handler.history.postgres import PostgresHistory  # noqa: PLC0415 (the postgres extra)
        except ImportError:
            raise ConfigError(
                f"ECS_DETACH_HISTORY {redact_url(url)} needs the postgres extra (psycopg): "
                "pip install 'ecs-detach[postgres]'"
            ) from None
        return lambda: PostgresHistory(url)
    if parts.scheme == "sqlite":
        path = parts.path
        if parts.netloc or parts.query or parts.fragment or not path.startswith("/") or path.endswith("/"):
            raise ConfigError(f"ECS_DETACH_HISTORY: malformed sqlite URL {redact_url(url)}: {_SQLITE_USAGE}")
        return functools.partial(_open_sqlite, unquote(path[1:]))
    scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
    raise ConfigError(
        f"ECS_DETACH_HISTORY {redact_url(url)} has {scheme}; supported: sqlite://, postgresql://, "
        f"or {OFF!r} to keep no history"
    )


def _open_sqlite(path: str) -> HistoryStore:
    # Imported by the opener: the recorder's writer opens the history after a cold start's first
    # event (``handler.history.recorder``), and so imports its module then.
    from handler.history.sqlite import SqliteHistory  # noqa: PLC0415

    return SqliteHistory(path)


def open_history(url: str) -> HistoryStore:
    """Open the history ``url`` names (``ConfigError`` for a bad URL, ``HistoryError`` when the
    database cannot be reached)."""
    return check_url(url)()
