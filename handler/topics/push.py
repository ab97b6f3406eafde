"""Push topics: Huawei SMN (``smn://urn:smn:…``) and an HTTP endpoint (``https://…``).

Nothing consumes a push topic through this interface: SMN pushes each message to the topic's
subscribers (the poll function's SMN trigger, or the webhook's ``POST /smn``), and an HTTP
topic POSTs each message, a structured CloudEvent, to its URL. ``receive``, ``ack`` and the
other consumer calls raise ``TopicError``.

Neither SMN nor an HTTP endpoint can deliver later, and the poll function's continuations must
wait. A delayed message is therefore held in a delay topic (``ECS_DETACH_DELAY_TOPIC``: any
topic URL with delays, the embedded SQLite file by default) and sent when it is due by a
forwarder (``forward``, run by the worker). Without a delay topic, a delayed publish raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import httpx

from handler.cloud import ApiError, SmnClient, TransportError
from handler.core.backoff import RetryPolicy, retryable
from handler.support.log import redact_text, redact_url

from ._base import Delivery, Topic, TopicError

_CONSUMED_BY_SUBSCRIBERS = "a push topic is consumed by its subscribers, not through receive/ack"


class PushTopic:
    """Publish-only; ``send`` delivers one message now, ``outbox`` holds delayed ones."""

    def __init__(
        self,
        name: str,
        send: Callable[[str], None],
        outbox: Topic | None,
        *,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._name = name
        self._send = send
        self.outbox = outbox
        self._on_close = on_close

    @property
    def name(self) -> str:
        return self._name

    def publish(self, body: str, *, delay: float = 0.0) -> str:
        if delay <= 0:
            self._send(body)
            return ""
        if self.outbox is None:
            raise TopicError(f"push topic {self._name!r} cannot delay a message: set ECS_DETACH_DELAY_TOPIC")
        return self.outbox.publish(body, delay=delay)

    def forward(self, delivery: Delivery) -> str:
        """Send one due message of the outbox, then settle it (the worker's handler)."""
        assert self.outbox is not None
        self._send(delivery.body)
        self.outbox.ack(delivery)
        return "forwarded"

    def pending(self) -> int:
        return self.outbox.pending() if self.outbox is not None else 0

    def receive(self, max_messages: int = 1, *, wait: float = 0.0) -> list[Delivery]:
        raise TopicError(_CONSUMED_BY_SUBSCRIBERS)

    def ack(self, delivery: Delivery) -> None:
        raise TopicError(_CONSUMED_BY_SUBSCRIBERS)

    def nack(self, delivery: Delivery, *, delay: float = 0.0, reason: str = "") -> None:
        raise TopicError(_CONSUMED_BY_SUBSCRIBERS)

    def requeue(self, delivery: Delivery, body: str, *, delay: float) -> None:
        raise TopicError(_CONSUMED_BY_SUBSCRIBERS)

    def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        raise TopicError(_CONSUMED_BY_SUBSCRIBERS)

    def close(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
        if self._on_close is not None:
            self._on_close()


def smn_sender(smn: SmnClient, topic_urn: str) -> Callable[[str], None]:
    """Publish through the SMN API (signed like every call; the client retries where safe)."""

    def send(body: str) -> None:
        try:
            smn.publish(topic_urn, message=body, subject="ecs-detach")
        except (ApiError, TransportError) as error:
            raise TopicError(f"SMN publish to {topic_urn} failed: {redact_text(str(error))}") from error

    return send


class HttpSender:
    """POST each CloudEvent (structured mode) to ``url``, trying again on 429, 5xx and no answer."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self._url = url
        self._safe_url = redact_url(url)
        try:  # userinfo, as httpx may quote it unencoded
            self._secrets = tuple(filter(None, (unquote(urlsplit(url).password or ""),)))
        except ValueError:
            self._secrets = ()
        self._policy = RetryPolicy()
        self._client = httpx.Client(timeout=timeout, headers={"Content-Type": "application/cloudevents+json"})

    def __call__(self, body: str) -> None:
        attempt = 0
        while True:
            try:
                response = self._client.post(self._url, content=body.encode())
                status: int | None = response.status_code
            except httpx.HTTPError as error:  # its text may quote a proxy URL: redacted
                status, reason = None, redact_text(f"{type(error).__name__}: {error}", *self._secrets)
            else:
                if response.status_code < 300:
                    return
                reason = f"HTTP {response.status_code}"
            delay = self._policy.delay(attempt, None) if retryable(status, None) else None
            if delay is None:
                raise TopicError(f"push to {self._safe_url} failed: {reason}")
            time.sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._client.close()
