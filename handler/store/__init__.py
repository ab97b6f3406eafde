"""Idempotency records and per-server/per-volume locks, in SQLite or Redis, opened by URL.

``RedisStore`` imports redis-py only when used, so the SQLite store needs no extra installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from handler.errors import ConfigError
from handler.support.log import redact_url

from ._base import (
    DEFAULT_KEEP_ABANDONED_S,
    DEFAULT_RECORD_TTL_S,
    Acquired,
    Claim,
    ClaimLost,
    ClaimState,
    Store,
    StoreError,
    Taken,
)
from .sqlite import SqliteStore

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = [
    "DEFAULT_KEEP_ABANDONED_S",
    "DEFAULT_RECORD_TTL_S",
    "Acquired",
    "Claim",
    "ClaimLost",
    "ClaimState",
    "RedisStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "Taken",
    "open_store",
]

SUPPORTED_SCHEMES = ("sqlite", "redis", "rediss")
_SQLITE_USAGE = "use sqlite:///relative/path.db or sqlite:////absolute/path.db"


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from .redis import RedisStore  # noqa: PLC0415 (needs the redis extra)

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(url: str) -> Store:
    """Open the store ``url`` names.

    * ``sqlite:///relative/path.db`` (relative to the current directory) or
      ``sqlite:////absolute/path.db``; the file must be the store's own (not a topics file)
    * ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS, ``?ca=/path/ca.pem``);
      ``?prefix=NAME`` keeps the keys under ``NAME:`` (default ``ecs-detach:``)

    Raises ``ConfigError`` (a ``ValueError``) for a URL it cannot use; URLs are echoed as
    ``redact_url`` shows them.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigError(f"malformed store URL {redact_url(url)}") from None
    if parts.scheme in ("redis", "rediss"):
        from .redis import RedisStore  # noqa: PLC0415 (needs the redis extra)

        return RedisStore(url)
    if parts.scheme != "sqlite":
        scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise ConfigError(
            f"store URL {redact_url(url)} has {scheme}; supported: "
            + ", ".join(f"{supported}://" for supported in SUPPORTED_SCHEMES)
        )
    path = parts.path
    if parts.netloc or parts.query or parts.fragment or not path.startswith("/") or path.endswith("/"):
        raise ConfigError(f"malformed sqlite store URL {redact_url(url)}: {_SQLITE_USAGE}")
    return SqliteStore(unquote(path[1:]))
