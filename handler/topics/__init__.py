"""Topics: durable queues with at-least-once delivery, opened by URL.

The broker backends import their client library only when a URL asks for them, so each needs
only its own extra installed (``redis``, ``nats``, ``rabbitmq``).
"""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qs, parse_qsl, unquote, urlencode, urlsplit

from handler.support.log import redact_url as _redact

from ._base import Browsable, Browsed, Browser, Delivery, StaleDelivery, Topic, TopicConfigError, TopicError
from .sqlite import SqliteTopic

if TYPE_CHECKING:
    from handler.cloud import SmnClient

__all__ = [
    "Browsable",
    "Browsed",
    "Browser",
    "Delivery",
    "SqliteTopic",
    "StaleDelivery",
    "Topic",
    "TopicConfigError",
    "TopicError",
    "open_topic",
    "topic_url",
]

SUPPORTED_SCHEMES = ("sqlite", "redis", "rediss", "nats", "tls", "amqp", "amqps", "smn", "https", "http")


def topic_url(base: str, name: str) -> str:
    """``base`` (a broker or database URL) naming the topic ``name``: ``…?topic=name``, or
    ``…?topic=PREFIX-name`` when ``base`` already names a topic ``PREFIX`` (one namespace per
    environment on a shared broker). The rest of ``base`` is kept to the letter."""
    location, _, query = base.partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    prefix = next((v for k, v in pairs if k == "topic" and v), None)
    rest = [(k, v) for k, v in pairs if k != "topic"]
    topic = f"{prefix}-{name}" if prefix else name
    return f"{location}?{urlencode([*rest, ('topic', topic)])}"


def open_topic(
    url: str,
    *,
    default_name: str,
    visibility_timeout: float = 60.0,
    max_deliveries: int = 5,
    smn: SmnClient | None = None,
    delay_url: str | None = None,
) -> Topic:
    """Open the topic ``url`` names; ``?topic=NAME`` picks it, else ``default_name``.

    * ``sqlite:///relative/path.db`` (relative to the current directory) or
      ``sqlite:////absolute/path.db``
    * ``redis://[[user]:password@]host[:port][/db]``, ``rediss://…`` (TLS)
    * ``nats://[user:password@]host[:port]``, ``tls://…`` (TLS)
    * ``amqp://[user:password@]host[:port][/vhost]``, ``amqps://…`` (TLS)

    * ``smn://urn:smn:{region}:{project}:{topic}`` (needs ``smn``, a client for that region) and
      ``https://…`` / ``http://…`` (an endpoint receiving each CloudEvent): push topics, see
      ``push.py``; delayed messages wait in ``delay_url``'s topic ``{name}-delayed``

    The TLS forms take ``&ca=/path/ca.pem``; the broker modules describe their other options.
    Credentials never appear in messages: URLs are echoed as ``redact_url`` shows them.
    """
    if url.startswith(("smn://", "http://", "https://")):
        return _push_topic(url, default_name, smn, delay_url)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise TopicConfigError(f"malformed topic URL {_redact(url)}") from None
    if parts.scheme in _BROKERS:
        # Each broker module needs its own extra (redis, nats, rabbitmq): imported only when asked.
        module, class_name = _BROKERS[parts.scheme]
        backend = getattr(import_module(f"{__name__}.{module}"), class_name)
        topic: Topic = backend.from_url(
            url,
            parts,
            default_name=default_name,
            visibility_timeout=visibility_timeout,
            max_deliveries=max_deliveries,
        )
        return topic
    if parts.scheme != "sqlite":
        scheme = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise TopicConfigError(
            f"topic URL {_redact(url)} has {scheme}; supported: "
            + ", ".join(f"{supported}://" for supported in SUPPORTED_SCHEMES)
        )
    path, name = _sqlite_location(url, parts, default_name)
    return SqliteTopic(path, name, visibility_timeout=visibility_timeout, max_deliveries=max_deliveries)


_BROKERS = {
    "redis": ("redis", "RedisTopic"),
    "rediss": ("redis", "RedisTopic"),
    "nats": ("nats", "NatsTopic"),
    "tls": ("nats", "NatsTopic"),
    "amqp": ("amqp", "AmqpTopic"),
    "amqps": ("amqp", "AmqpTopic"),
}
_SMN_URN = re.compile(r"^urn:smn:[a-z0-9-]+:[0-9a-f]{32}:([A-Za-z0-9_-]{1,255})$")


def _push_topic(url: str, default_name: str, smn: SmnClient | None, delay_url: str | None) -> Topic:
    from .push import HttpSender, PushTopic, smn_sender  # noqa: PLC0415 (only push deployments)

    if url.startswith("smn://"):
        urn = url.removeprefix("smn://")
        match = _SMN_URN.match(urn)
        if match is None:
            raise TopicConfigError(
                f"malformed SMN topic URL {_redact(url)}: use smn://urn:smn:REGION:PROJECT_ID:TOPIC"
            )
        if smn is None:
            raise TopicConfigError(
                f"SMN topic {urn} needs cloud credentials and a region (or an SMN endpoint)"
            )
        name = match.group(1)
        outbox = _outbox(delay_url, name)
        return PushTopic(name, smn_sender(smn, urn), outbox)
    sender = HttpSender(url)
    return PushTopic(default_name, sender, _outbox(delay_url, default_name), on_close=sender.close)


def _outbox(delay_url: str | None, name: str) -> Topic | None:
    if delay_url is None:
        return None
    return open_topic(topic_url(delay_url, f"{name}-delayed"), default_name=f"{name}-delayed")


def _sqlite_location(url: str, parts: SplitResult, default_name: str) -> tuple[Path, str]:
    usage = "use sqlite:///relative/path.db or sqlite:////absolute/path.db[?topic=NAME]"
    if parts.netloc or not parts.path.startswith("/") or parts.path == "/" or parts.fragment:
        raise TopicConfigError(f"malformed sqlite topic URL {_redact(url)}: {usage}")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise TopicConfigError(f"malformed query in sqlite topic URL {_redact(url)}: {usage}") from None
    unknown = sorted(set(query) - {"topic"})
    if unknown:
        raise TopicConfigError(
            f"unknown parameter {', '.join(unknown)} in sqlite topic URL {_redact(url)}: {usage}"
        )
    names = query.get("topic", [default_name])
    if len(names) != 1 or not names[0]:
        raise TopicConfigError(f"sqlite topic URL {_redact(url)} needs one non-empty topic name: {usage}")
    return Path(unquote(parts.path[1:])), names[0]
