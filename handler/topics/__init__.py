"""Topics: durable queues with at-least-once delivery, opened by URL.

The broker backends import their client library only when a URL asks for them, so each needs
only its own extra installed (``redis``, ``nats``, ``rabbitmq``).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import SplitResult, parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ._base import Delivery, StaleDelivery, Topic, TopicError
from ._url import redact as _redact
from .sqlite import SqliteTopic

__all__ = ["Delivery", "SqliteTopic", "StaleDelivery", "Topic", "TopicError", "open_topic", "topic_url"]

SUPPORTED_SCHEMES = ("sqlite", "redis", "rediss", "nats", "tls", "amqp", "amqps")


def topic_url(base: str, name: str) -> str:
    """``base`` (a broker or database URL) naming the topic ``name``: ``…?topic=name``, or
    ``…?topic=PREFIX-name`` when ``base`` already names a topic ``PREFIX`` (one namespace per
    environment on a shared broker)."""
    parts = urlsplit(base)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in pairs if k == "topic" and v), None)
    query = [(k, v) for k, v in pairs if k != "topic"]
    topic = f"{prefix}-{name}" if prefix else name
    return urlunsplit(parts._replace(query=urlencode([*query, ("topic", topic)])))


def open_topic(
    url: str,
    *,
    default_name: str,
    visibility_timeout: float = 60.0,
    max_deliveries: int = 5,
) -> Topic:
    """Open the topic ``url`` names; ``?topic=NAME`` picks it, else ``default_name``.

    * ``sqlite:///relative/path.db`` (relative to the current directory) or
      ``sqlite:////absolute/path.db``
    * ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS)
    * ``nats://[user:password@]host[:port]``, ``tls://…`` (TLS)
    * ``amqp://[user:password@]host[:port][/vhost]``, ``amqps://…`` (TLS)

    The TLS forms take ``&ca=/path/ca.pem``; the broker modules describe their other options.
    Credentials never appear in messages: URLs are echoed without userinfo and query.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        raise TopicError(f"malformed topic URL {_redact(url)}") from None
    if parts.scheme in ("redis", "rediss"):
        from .redis import RedisTopic  # noqa: PLC0415 (needs the redis extra)

        return RedisTopic.from_url(
            url,
            parts,
            default_name=default_name,
            visibility_timeout=visibility_timeout,
            max_deliveries=max_deliveries,
        )
    if parts.scheme in ("nats", "tls"):
        from .nats import NatsTopic  # noqa: PLC0415 (needs the nats extra)

        return NatsTopic.from_url(
            url,
            parts,
            default_name=default_name,
            visibility_timeout=visibility_timeout,
            max_deliveries=max_deliveries,
        )
    if parts.scheme in ("amqp", "amqps"):
        from .amqp import AmqpTopic  # noqa: PLC0415 (needs the rabbitmq extra)

        return AmqpTopic.from_url(
            url,
            parts,
            default_name=default_name,
            visibility_timeout=visibility_timeout,
            max_deliveries=max_deliveries,
        )
    if parts.scheme != "sqlite":
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
