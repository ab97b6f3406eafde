"""Topics: durable queues with at-least-once delivery, opened by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from ._base import Delivery, StaleDelivery, Topic, TopicError
from .sqlite import SqliteTopic

__all__ = ["Delivery", "SqliteTopic", "StaleDelivery", "Topic", "TopicError", "open_topic"]

SUPPORTED_SCHEMES = ("sqlite",)


def open_topic(
    url: str,
    *,
    default_name: str,
    visibility_timeout: float = 60.0,
    max_deliveries: int = 5,
) -> Topic:
    """Open the topic ``url`` names; ``?topic=NAME`` picks it, else ``default_name``.

    ``sqlite:///relative/path.db`` (relative to the current directory) or
    ``sqlite:////absolute/path.db``.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise TopicError(f"malformed topic URL {_redact(url)}") from None
    if parts.scheme not in SUPPORTED_SCHEMES:
        scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise TopicError(
            f"topic URL {_redact(url)} has {scheme}; supported: "
            + ", ".join(f"{supported}://" for supported in SUPPORTED_SCHEMES)
        )
    path, name = _sqlite_location(url, parts, default_name)
    return SqliteTopic(path, name, visibility_timeout=visibility_timeout, max_deliveries=max_deliveries)


def _sqlite_location(url: str, parts: SplitResult, default_name: str) -> tuple[Path, str]:
    usage = "use sqlite:///relative/path.db or sqlite:////absolute/path.db[?topic=NAME]"
    if parts.netloc or not parts.path.startswith("/") or parts.path == "/" or parts.fragment:
        raise TopicError(f"malformed sqlite topic URL {_redact(url)}: {usage}")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise TopicError(f"malformed query in sqlite topic URL {_redact(url)}: {usage}") from None
    unknown = sorted(set(query) - {"topic"})
    if unknown:
        raise TopicError(
            f"unknown parameter {', '.join(unknown)} in sqlite topic URL {_redact(url)}: {usage}"
        )
    names = query.get("topic", [default_name])
    if len(names) != 1 or not names[0]:
        raise TopicError(f"sqlite topic URL {_redact(url)} needs one non-empty topic name: {usage}")
    return Path(unquote(parts.path[1:])), names[0]


def _redact(url: str) -> str:
    """``url`` without userinfo, query and fragment: safe to show in a message or a log.

    Works on malformed URLs too, erring towards cutting too much.
    """
    head, separator, rest = url.partition("://")
    if not separator:
        head, rest = "", url
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    for mark in "?#":
        rest = rest.partition(mark)[0]
    return head + separator + rest
