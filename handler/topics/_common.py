"""What the backends share: argument checks, names and errors (every backend), and
``BrokerTopic``, the base of the broker backends."""

from __future__ import annotations

import math
from typing import ClassVar, TypeVar
from urllib.parse import SplitResult

from handler.support.log import redact_text

from ._base import StaleDelivery, TopicError
from ._url import BrokerAddress, broker_target

_Topic = TypeVar("_Topic", bound="BrokerTopic")

DEAD_SUFFIX = ".dead"


def check_seconds(what: str, value: float) -> None:
    if not 0 <= value < math.inf:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")


def check_topic(name: str, visibility_timeout: float, max_deliveries: int) -> None:
    """The constructor arguments every backend takes."""
    if not name:
        raise ValueError("topic name must not be empty")
    if not 0 < visibility_timeout < math.inf:
        raise ValueError(
            f"visibility_timeout must be a finite number of seconds > 0, got {visibility_timeout!r}"
        )
    if max_deliveries < 1:
        raise ValueError(f"max_deliveries must be at least 1, got {max_deliveries!r}")


def check_receive(max_messages: int, wait: float) -> None:
    if max_messages < 1:
        raise ValueError(f"max_messages must be at least 1, got {max_messages!r}")
    check_seconds("wait", wait)


def is_dead_letter_topic(name: str) -> bool:
    """Dead-letter topics keep their messages however often delivered and have none of their own."""
    return name.endswith(DEAD_SUFFIX)


def no_dead_letter_topic(name: str) -> TopicError:
    return TopicError(f"{name!r} is a dead-letter topic and has none of its own")


def broker_error(kind: str, name: str, address: BrokerAddress, exc: BaseException) -> TopicError:
    """``TopicError`` for a broker client's exception, its text redacted (``redact_text``: URLs,
    and the URL's password or token). The cause is kept only when its text held no secret."""
    detail = describe(exc)
    safe = redact_text(detail, *address.secrets)
    error = TopicError(f"{kind} topic {name!r} at {address.safe_url}: {safe}")
    error.__cause__ = exc if safe == detail else None
    error.__suppress_context__ = True
    return error


def stale(name: str, message_id: str) -> StaleDelivery:
    return StaleDelivery(
        f"the lease on message {message_id} of topic {name!r} has expired"
        " or was settled; the message may be with another consumer"
    )


def describe(exc: BaseException) -> str:
    """``Type: message`` of a broker error (just the type when it has no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class BrokerTopic:
    """A topic on a broker: its address, name and delivery settings, opened from a URL. A
    subclass names its broker (``KIND``, ``PORT``, ``TLS_SCHEME``, ``USAGE``), and its ``_start``
    checks what only that broker refuses and connects."""

    KIND: ClassVar[str]
    PORT: ClassVar[int]
    TLS_SCHEME: ClassVar[str]
    USAGE: ClassVar[str]

    def __init__(
        self,
        address: BrokerAddress,
        name: str,
        *,
        ca_file: str | None = None,
        visibility_timeout: float = 60.0,
        max_deliveries: int = 5,
    ) -> None:
        check_topic(name, visibility_timeout, max_deliveries)
        self._address = address
        self._ca_file = ca_file
        self._name = name
        self._visibility_timeout = float(visibility_timeout)
        self._max_deliveries = max_deliveries
        self._start()

    def _start(self) -> None:
        """The broker's own checks and its connection (raise to refuse the topic)."""
        raise NotImplementedError

    @classmethod
    def from_url(
        cls: type[_Topic],
        url: str,
        parts: SplitResult,
        *,
        default_name: str,
        visibility_timeout: float,
        max_deliveries: int,
    ) -> _Topic:
        address, name, ca_file = broker_target(
            url,
            parts,
            kind=cls.KIND,
            port=cls.PORT,
            tls_scheme=cls.TLS_SCHEME,
            default_name=default_name,
            usage=cls.USAGE,
        )
        return cls(
            address,
            name,
            ca_file=ca_file,
            visibility_timeout=visibility_timeout,
            max_deliveries=max_deliveries,
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._address.safe_url!r}, name={self._name!r})"
