"""Argument checks and names the broker backends share (the SQLite backend has its own)."""

from __future__ import annotations

import math

from ._base import StaleDelivery, TopicError

DEAD_SUFFIX = ".dead"


def check_seconds(what: str, value: float) -> None:
    if not 0 <= value < math.inf:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")


def check_topic(name: str, visibility_timeout: float, max_deliveries: int) -> None:
    """The constructor arguments every backend takes, as ``SqliteTopic`` checks them."""
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


def stale(name: str, message_id: str) -> StaleDelivery:
    return StaleDelivery(
        f"the lease on message {message_id} of topic {name!r} has expired"
        " or was settled; the message may be with another consumer"
    )


def describe(exc: BaseException) -> str:
    """``Type: message`` of a broker error (just the type when it has no message)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
