"""The one interface every topic backend implements.

A topic carries CloudEvents (structured-mode JSON text) with at-least-once delivery:
a received message is leased for the visibility timeout and comes back if it is not
acknowledged in time (the consumer crashed). Each failed delivery counts; after
``max_deliveries`` the message moves to the dead-letter topic ``{name}.dead`` instead of
being delivered again.

Some backends can also be read without taking anything away from the topic's consumers
(``Browsable``): ``ecs-detach results`` shows the results topic that way.
"""

from typing import NamedTuple, Protocol, runtime_checkable

from handler.errors import ConfigError, EcsDetachError


class TopicError(EcsDetachError):
    """A topic operation failed (broker unreachable, bad URL, …)."""


class TopicConfigError(TopicError, ConfigError):
    """A topic URL (or the topic name in it) that cannot be used; the message says why."""


class StaleDelivery(TopicError):
    """The lease on a delivery expired and the message may already be with another consumer.

    Raised by ``ack``/``nack``/``requeue``; the caller must not assume its outcome was recorded.
    """


class Delivery(NamedTuple):
    """One received message, leased to the receiver until acked, nacked or requeued."""

    message_id: str
    body: str
    deliveries: int  # how many times this message has been handed out, this time included
    receipt: str  # opaque lease token; only the current holder can settle the message


class Topic(Protocol):
    """Publish, consume with ack/nack, delay, dead-letter."""

    @property
    def name(self) -> str: ...

    def publish(self, body: str, *, delay: float = 0.0) -> str:
        """Store ``body`` durably and return its message id; deliverable after ``delay`` s."""
        ...

    def receive(self, max_messages: int = 1, *, wait: float = 0.0) -> list[Delivery]:
        """Lease up to ``max_messages`` due messages, waiting up to ``wait`` s for the first."""
        ...

    def ack(self, delivery: Delivery) -> None:
        """The work the message stands for is done: remove it."""
        ...

    def nack(self, delivery: Delivery, *, delay: float = 0.0, reason: str = "") -> None:
        """This delivery failed: deliver again after ``delay`` s (counts towards dead-letter)."""
        ...

    def requeue(self, delivery: Delivery, body: str, *, delay: float) -> None:
        """Atomically replace the message with ``body``, due after ``delay`` s.

        A continuation, not a failure: the delivery count starts again. The poll function
        uses it to come back later without sleeping.
        """
        ...

    def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        """This message can never be processed (e.g. not a valid event): move it to the
        dead-letter topic now, unchanged, with ``reason``, instead of retrying it."""
        ...

    def pending(self) -> int:
        """Messages published and not yet acked, in flight or not (brokers may approximate)."""
        ...

    def close(self) -> None: ...


class Browsed(NamedTuple):
    """One message seen by a ``Browser``: not leased, nothing to settle."""

    message_id: str
    body: str
    published_at: float  # Unix time the broker (or file) has for it


class Browser(Protocol):
    """A read-only cursor on a topic: each message once, in publish order."""

    def next(self, wait: float = 0.0) -> list[Browsed]:
        """The messages published since the last call (at first: those ``browse`` asked for),
        waiting up to ``wait`` s for one."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Browsable(Protocol):
    """A topic that can be read without leasing, acking or hiding a message from its consumers.

    What a browser can see is what the broker still holds: messages that a consumer has
    already acked are gone from the SQLite, Redis and NATS topics (they keep no history), so a
    browser sees the backlog and, while it runs, every message published.
    """

    def browse(self, *, since: float | None = None) -> Browser:
        """A browser starting with the messages still in the topic that were published at or
        after ``since`` (Unix time; None: all of them)."""
        ...
