"""Topics on NATS JetStream (nats-server 2.9 or later).

URL: ``nats://[user:password@|token@]host[:port][?topic=NAME]``, ``tls://…`` for TLS
(``&ca=/path/ca.pem`` adds a CA bundle). Topic names are letters, digits, ``-`` and ``_``,
with ``.dead`` for a dead-letter topic.

* Topic ``jobs`` and its dead letters ``jobs.dead`` share the stream ``ecs-detach-jobs``
  (subjects ``ecs-detach.jobs`` and ``ecs-detach.jobs.dead``; file storage, work-queue
  retention: an acked message is gone). Each topic has one durable pull consumer (``jobs``,
  ``jobs-dead``) shared by all its instances: explicit acks, ``ack_wait`` = the visibility
  timeout, no server-side delivery limit and no limit on unacked messages (delayed messages
  wait as unacked). Stream and consumer are created if missing; opening a topic with another
  visibility timeout updates the consumer's ``ack_wait`` for all of them.
* The consumer keeps its state in memory (``mem_storage``), the stream on disk. A server that
  restarts, ``kill -9`` included, forgets the consumer; every instance declares it again when
  it reconnects, and the new consumer delivers every message the stream still holds: all of
  them, at least once. (A file-backed consumer survived a ``kill -9`` of nats-server 2.9 with a
  state newer than its stream's: messages acked and removed came back to the stream below the
  consumer's ack floor, never delivered again, counted forever.) The price of a restart:
  messages in flight, and any acked ones the stream brings back, are delivered once more, and
  the server's delivery counts start again (a poison message gets more deliveries); leases held
  when the consumer is replaced end (``StaleDelivery``). A consumer made by an earlier version
  (file storage) is replaced by the first instance that connects.
* ``pending()`` is what the consumer will still deliver: not yet handed out, or handed out and
  not acked (leased or delayed).
* A message carries headers: ``Ecs-Detach-Id`` (stable across requeues),
  ``Ecs-Detach-Failures`` (failed deliveries of the message before this copy),
  ``Ecs-Detach-Delay`` (s after its stream timestamp before it is due) and, in the dead-letter
  subject, ``Ecs-Detach-Reason``. Deliveries = failures + the server's count for the copy.
* JetStream cannot delay a publish. A delayed copy that is fetched early is nak'ed with the
  remaining delay; once due it is republished without the delay and acked, never handed out.
  So early fetches never count: a copy handed out is counted by the server from its first
  delivery on. Due times compare this host's clock with the server's stream timestamp.
* ``nack`` naks with the delay, so the server keeps the count; only the reason of the last
  allowed delivery survives, as that ``nack`` moves the message to the dead letters itself.
  A lease that expires too often moves it there on the next fetch.
* ``requeue``, ``dead_letter`` and those moves publish the successor, then ack the old copy:
  not atomic. A crash in between leaves the old copy to be redelivered; its successor is
  published again with the same ``Nats-Msg-Id`` (derived from the old copy's sequence), which
  the stream drops as a duplicate within its duplicate window (2 minutes by default), so a
  duplicate continuation needs the crash plus a redelivery later than that.
* JetStream accepts the ack of an expired lease without complaint, so leases are kept here:
  a delivery settles only until its visibility timeout (less a margin) has passed since it
  arrived, else ``StaleDelivery`` and nothing is sent. Each fetch uses its own reply inbox and
  waits for the server's end-of-request status, so a message is never left in a closed inbox.
* ``browse`` creates no consumer (a work-queue stream refuses a second one on a subject): it
  reads the messages still in the stream by sequence (the stream's message get API) and
  subscribes to the subject on core NATS, which receives each publish as it is stored.
* nats-py reconnects by itself (forever, once a second); acks and naks work across reconnects
  to the same server process. After a reconnect, the next call declares the consumer again.
  It upgrades to TLS only if the server's INFO asks for it: with ``tls://`` a server that does
  not is refused, before any credential is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api

from handler.support.log import log_event

from . import _loop
from ._base import Browsed, Delivery, TopicConfigError, TopicError
from ._common import (
    BrokerTopic,
    broker_error,
    check_receive,
    check_seconds,
    is_dead_letter_topic,
    no_dead_letter_topic,
    stale,
)

T = TypeVar("T")

ID = "Ecs-Detach-Id"
FAILURES = "Ecs-Detach-Failures"
DELAY = "Ecs-Detach-Delay"
REASON = "Ecs-Detach-Reason"
_NAME = re.compile(r"[A-Za-z0-9_-]+(\.dead)?")
_USAGE = "use nats://[user:password@]host[:port][?topic=NAME] or tls://…[&ca=/path/ca.pem]"
_TIMEOUT = 10.0  # s for one broker operation
_GRACE = 2.0  # s past a fetch's expiry to wait for the server's end-of-request status
_LEASE_EXPIRED = "not settled within the visibility timeout"


@dataclass
class _Lease:
    msg: Msg
    deadline: float  # time.monotonic() after which the lease may be with another consumer


class NatsTopic(BrokerTopic):
    """One topic on NATS JetStream; safe to share between threads (all work runs on one loop)."""

    KIND = "nats"
    PORT = 4222
    TLS_SCHEME = "tls"
    USAGE = _USAGE

    def _start(self) -> None:
        name, address, visibility_timeout = self._name, self._address, self._visibility_timeout
        if not _NAME.fullmatch(name):
            raise TopicConfigError(f"NATS topic names are letters, digits, - and _ (and .dead), got {name!r}")
        if address.path:
            raise TopicConfigError(f"nats topic URL {address.safe_url} has a path: {_USAGE}")
        self._lease_span = visibility_timeout - min(1.0, visibility_timeout / 10)
        base = name.removesuffix(".dead")
        self._stream = f"ecs-detach-{base}"
        self._stream_subjects = [f"ecs-detach.{base}", f"ecs-detach.{base}.dead"]
        self._subject = f"ecs-detach.{name}"
        self._dead_subject = None if is_dead_letter_topic(name) else f"ecs-detach.{name}.dead"
        self._durable = name.replace(".", "-")
        self._next = f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self._durable}"
        self._client: Client | None = None
        self._declared = False  # stream and consumer declared on the current connection
        self._consumer_created: object = None  # when the consumer our leases belong to was created
        self._connecting = asyncio.Lock()  # binds to the shared loop at first use
        self._leases: dict[str, _Lease] = {}
        self._closed = False
        self._call(self._connection())  # fail at open if the broker or the URL is wrong

    # --- plumbing ---------------------------------------------------------------------------

    def _call(self, coroutine: Coroutine[Any, Any, T], timeout: float = _TIMEOUT) -> T:
        """Run ``coroutine`` on the shared loop; broker errors become ``TopicError``."""
        if self._closed:
            coroutine.close()
            raise TopicError(f"topic {self._name!r} at {self._address.safe_url} is closed")
        try:
            return _loop.run(coroutine, timeout)
        except (nats.errors.Error, OSError, asyncio.TimeoutError, TimeoutError) as exc:
            raise broker_error("nats", self._name, self._address, exc)  # noqa: B904 (cause set there)

    async def _connection(self) -> Client:
        """The connected client, connecting if needed, with stream and consumer declared since
        the last (re)connect: a restarted server has lost the consumer (memory storage)."""
        client = self._client
        if client is not None and not client.is_closed and self._declared:
            return client
        async with self._connecting:
            if self._client is None or self._client.is_closed:
                self._declared = False
                self._client = await self._connect()
            if not self._declared:
                await self._declare(self._client)
                self._declared = True
            return self._client

    async def _connect(self) -> Client:
        address = self._address
        host = f"[{address.host}]" if ":" in address.host else address.host
        token = address.username if address.password is None else None
        user = None if token else address.username
        client = Client()
        tls = address.scheme == "tls"
        try:
            # The first connect fails at once: nats-py would retry it like a reconnect, and with
            # no bound on the attempts its server pool never runs dry, so it looped until the
            # timeout (10 s to say a broker is down). Two tries, no wait; once connected, the
            # client reconnects forever, a second apart.
            await asyncio.wait_for(
                client.connect(
                    servers=[f"{address.scheme}://{host}:{address.port}"],
                    user=self._over_tls(client, user) if tls and user else user,
                    password=self._over_tls(client, address.password) if tls else address.password,
                    token=self._over_tls(client, token) if tls and token else token,
                    tls=ssl.create_default_context(cafile=self._ca_file) if tls else None,
                    name="ecs-detach",
                    connect_timeout=5,
                    allow_reconnect=False,
                    reconnect_time_wait=0,
                    max_reconnect_attempts=1,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                ),
                _TIMEOUT,
            )
            if tls:
                self._over_tls(client, "")()
            client.options.update(allow_reconnect=True, reconnect_time_wait=1, max_reconnect_attempts=-1)
        except BaseException:
            with contextlib.suppress(Exception):  # closing a half-open client can hang
                await asyncio.wait_for(client.close(), 1.0)
            raise
        return client

    def _over_tls(self, client: Client, secret: str | None) -> Callable[[], str]:
        """``secret``, handed to nats-py only once the connection is TLS.

        nats-py upgrades to TLS only when the server's INFO asks for it, and would otherwise
        go on in clear: a ``tls://`` URL refuses that, before any credential is sent.
        """

        def checked() -> str:
            if not client._server_info.get("tls_required"):
                raise TopicError(f"{self._address.safe_url}: the server does not offer TLS")
            return secret or ""

        return checked

    async def _declare(self, client: Client) -> None:
        """Create the stream if missing, and the consumer, or replace one of another kind.

        The consumer keeps its state in memory: a server that restarts (or is killed) forgets
        it, and the next (re)connect creates it anew, which delivers every message the stream
        still holds. With file storage, a killed nats-server 2.9 can come back with a consumer
        state newer than its stream's: acked messages that the work queue had removed reappear
        below the ack floor, never delivered again and counted forever. A fresh consumer hands
        them out once more instead (at least once); the leases held here end with the old one.
        """
        js = client.jetstream()
        try:
            await js.stream_info(self._stream)
        except nats.js.errors.NotFoundError:
            await js.add_stream(
                name=self._stream,
                subjects=self._stream_subjects,
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
            )
        config = api.ConsumerConfig(
            durable_name=self._durable,
            filter_subject=self._subject,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._visibility_timeout,
            max_deliver=-1,
            max_ack_pending=-1,
            mem_storage=True,
        )
        try:
            existing = await js.consumer_info(self._stream, self._durable)
        except nats.js.errors.NotFoundError:
            existing = None
        if existing is not None and not existing.config.mem_storage:  # made by an earlier version
            await js.delete_consumer(self._stream, self._durable)
            log_event("topic.consumer_replaced", topic=self._name, broker=self._address.safe_url)
        info = await js.add_consumer(self._stream, config)
        if info.created != self._consumer_created:
            self._leases.clear()
            self._consumer_created = info.created

    async def _on_error(self, exc: Exception) -> None:
        """Connection errors reach callers as ``TopicError``; this only keeps nats-py quiet."""

    async def _on_disconnected(self) -> None:
        log_event(
            "topic.disconnected", level=logging.WARNING, topic=self._name, broker=self._address.safe_url
        )

    async def _on_reconnected(self) -> None:
        self._declared = False  # the server may have restarted and lost the consumer
        log_event("topic.reconnected", topic=self._name, broker=self._address.safe_url)

    async def _reply(self, msg: Msg, payload: bytes) -> None:
        """Ack or nak ``msg`` and wait until the server has it."""
        client = await self._connection()
        await client.request(msg.reply, payload, timeout=_TIMEOUT)

    async def _publish(
        self,
        subject: str,
        body: bytes,
        *,
        message_id: str,
        dedup_id: str,
        failures: int = 0,
        delay: float = 0.0,
        reason: str = "",
    ) -> None:
        headers = {ID: message_id, FAILURES: str(failures), "Nats-Msg-Id": dedup_id}
        if delay > 0:
            headers[DELAY] = repr(delay)
        if reason:
            headers[REASON] = reason
        client = await self._connection()
        await client.jetstream().publish(subject, body, headers=headers, timeout=_TIMEOUT)

    async def _replace(
        self,
        msg: Msg,
        subject: str,
        op: str,
        *,
        body: bytes | None = None,
        failures: int = 0,
        delay: float = 0.0,
        reason: str = "",
    ) -> None:
        """Publish the successor of ``msg`` (deduplicated per old copy), then ack ``msg``."""
        message_id = _message_id(msg)
        await self._publish(
            subject,
            msg.data if body is None else body,
            message_id=message_id,
            dedup_id=f"{message_id}.{op}.{msg.metadata.sequence.stream}",
            failures=failures,
            delay=delay,
            reason=reason,
        )
        await self._reply(msg, b"+ACK")

    # --- the Topic interface ----------------------------------------------------------------

    def publish(self, body: str, *, delay: float = 0.0) -> str:
        """Publish ``body`` (stored when this returns); due after ``delay`` s."""
        check_seconds("delay", delay)
        message_id = uuid.uuid4().hex
        coroutine = self._publish(
            self._subject, body.encode(), message_id=message_id, dedup_id=message_id, delay=delay
        )
        self._call(coroutine)
        return message_id

    def receive(self, max_messages: int = 1, *, wait: float = 0.0) -> list[Delivery]:
        """Lease up to ``max_messages`` due messages, waiting up to ``wait`` s for the first."""
        check_receive(max_messages, wait)
        return self._call(self._receive(max_messages, wait), wait + _GRACE + _TIMEOUT)

    async def _receive(self, max_messages: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + wait
        self._forget_expired_leases()
        lingering = False
        while True:
            client = await self._connection()
            remaining = deadline - time.monotonic()
            # First take what is there at once; only then wait, for one message.
            if lingering and remaining > 0:
                msgs = await self._fetch(client, 1, remaining)
            else:
                msgs = await self._fetch(client, max_messages, 0.0)
            deliveries: list[Delivery] = []
            moved = False
            for msg in msgs:
                delivery = await self._accept(msg)
                if delivery is None:
                    moved = True
                else:
                    deliveries.append(delivery)
            if deliveries:
                return deliveries
            if not moved:
                if (lingering and time.monotonic() >= deadline) or wait <= 0:
                    return []
                lingering = True

    async def _fetch(self, client: Client, batch: int, wait: float) -> list[Msg]:
        """One pull request: at most ``batch`` messages, waiting up to ``wait`` s for them."""
        inbox = client.new_inbox()
        subscription = await client.subscribe(inbox)
        request: dict[str, Any] = {"batch": batch}
        if wait > 0:
            request["expires"] = int(wait * 1e9)
        else:
            request["no_wait"] = True
        try:
            await client.publish(self._next, json.dumps(request).encode(), reply=inbox)
            msgs: list[Msg] = []
            end = time.monotonic() + wait + _GRACE
            while len(msgs) < batch:
                try:
                    msg = await subscription.next_msg(timeout=max(end - time.monotonic(), 0.001))
                except nats.errors.TimeoutError:
                    break  # no end-of-request status: the connection dropped meanwhile
                status = (msg.headers or {}).get("Status")
                if status is None:
                    msgs.append(msg)
                elif status in ("404", "408"):
                    break  # no (more) messages, or the request expired
                elif status == "503":  # no consumer: a restarted server forgot it
                    self._declared = False
                    raise TopicError(f"nats consumer {self._durable!r} is gone; it is created again")
                elif status != "100":
                    description = (msg.headers or {}).get("Description", "")
                    raise TopicError(f"nats consumer {self._durable!r}: {status} {description}")
            return msgs
        finally:
            await subscription.unsubscribe()

    async def _accept(self, msg: Msg) -> Delivery | None:
        """A delivery for ``msg``, or None after deferring, promoting or dead-lettering it."""
        headers = msg.headers or {}
        if DELAY in headers:
            due = msg.metadata.timestamp.timestamp() + float(headers[DELAY])
            remaining = due - time.time()
            if remaining > 0:
                await self._reply(msg, b'-NAK {"delay": %d}' % int(remaining * 1e9))
            else:
                failures = int(headers.get(FAILURES, "0"))
                await self._replace(msg, self._subject, "due", failures=failures)
            return None
        deliveries = int(headers.get(FAILURES, "0")) + msg.metadata.num_delivered
        if self._dead_subject is not None and deliveries > self._max_deliveries:
            await self._replace(
                msg, self._dead_subject, "dead", failures=deliveries - 1, reason=_LEASE_EXPIRED
            )
            return None
        receipt = secrets.token_urlsafe(12)
        self._leases[receipt] = _Lease(msg, time.monotonic() + self._lease_span)
        return Delivery(_message_id(msg), msg.data.decode(), deliveries, receipt)

    def _forget_expired_leases(self) -> None:
        now = time.monotonic()
        for receipt in [r for r, lease in self._leases.items() if lease.deadline <= now]:
            del self._leases[receipt]

    def _take(self, delivery: Delivery) -> Msg:
        """The message of ``delivery`` if its lease is still ours (it ends the lease)."""
        lease = self._leases.pop(delivery.receipt, None)
        if lease is None or time.monotonic() >= lease.deadline:
            raise stale(self._name, delivery.message_id)
        return lease.msg

    async def _ack(self, delivery: Delivery) -> None:
        await self._reply(self._take(delivery), b"+ACK")

    def ack(self, delivery: Delivery) -> None:
        """Remove the message; raises ``StaleDelivery`` unless the lease is still ours."""
        self._call(self._ack(delivery))

    async def _nack(self, delivery: Delivery, delay: float, reason: str) -> None:
        msg = self._take(delivery)
        if self._dead_subject is not None and delivery.deliveries >= self._max_deliveries:
            await self._replace(msg, self._dead_subject, "dead", failures=delivery.deliveries, reason=reason)
        else:
            await self._reply(msg, b'-NAK {"delay": %d}' % int(delay * 1e9))

    def nack(self, delivery: Delivery, *, delay: float = 0.0, reason: str = "") -> None:
        """Deliver again after ``delay`` s, counting this failure (the last one dead-letters)."""
        check_seconds("delay", delay)
        self._call(self._nack(delivery, delay, reason))

    async def _requeue(self, delivery: Delivery, body: str, delay: float) -> None:
        msg = self._take(delivery)
        await self._replace(msg, self._subject, "requeue", body=body.encode(), delay=delay)

    def requeue(self, delivery: Delivery, body: str, *, delay: float) -> None:
        """Replace the message by ``body``, due after ``delay`` s, count restarted."""
        check_seconds("delay", delay)
        self._call(self._requeue(delivery, body, delay))

    async def _dead_letter(self, delivery: Delivery, reason: str, subject: str) -> None:
        msg = self._take(delivery)
        await self._replace(msg, subject, "dead", failures=delivery.deliveries, reason=reason)

    def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        """Move the message to ``{name}.dead`` now, body unchanged, with ``reason``."""
        if self._dead_subject is None:
            raise no_dead_letter_topic(self._name)
        self._call(self._dead_letter(delivery, reason, self._dead_subject))

    async def _pending(self) -> int:
        client = await self._connection()
        info = await client.jetstream().consumer_info(self._stream, self._durable)
        return (info.num_pending or 0) + (info.num_ack_pending or 0)

    def pending(self) -> int:
        """What the consumer will still deliver: messages not yet handed out, and those handed
        out and not acked (delayed or leased)."""
        return self._call(self._pending())

    def browse(self, *, since: float | None = None) -> _NatsBrowser:
        """Read the stream without a consumer (see ``Browsable``)."""
        browser = _NatsBrowser(self, since)
        self._call(browser.start())
        return browser

    def dead_letter_topic(self) -> NatsTopic:
        """The ``{name}.dead`` topic on the same server, as a new instance the caller closes."""
        if self._dead_subject is None:
            raise ValueError(f"{self._name!r} is a dead-letter topic and has none of its own")
        return NatsTopic(
            self._address,
            self._name + ".dead",
            ca_file=self._ca_file,
            visibility_timeout=self._visibility_timeout,
            max_deliveries=self._max_deliveries,
        )

    async def _close(self) -> None:
        client, self._client = self._client, None
        self._leases.clear()
        if client is not None:
            await client.close()

    def close(self) -> None:
        """Close the connection; unsettled deliveries come back after the visibility timeout."""
        if not self._closed:
            self._call(self._close())
            self._closed = True


def _message_id(msg: Msg) -> str:
    return (msg.headers or {}).get(ID) or f"seq-{msg.metadata.sequence.stream}"


class _NatsBrowser:
    """First the stream's messages of the subject (by sequence, from ``since``), then what the
    core subscription, opened before that read, received; each message id is shown once."""

    def __init__(self, topic: NatsTopic, since: float | None) -> None:
        self._topic = topic
        self._since = since
        self._live: asyncio.Queue[Msg] = asyncio.Queue()
        self._subscription: Any = None
        self._backlog: list[Browsed] = []
        self._seen: dict[str, None] = {}

    async def start(self) -> None:
        topic = self._topic
        client = await topic._connection()

        async def arrived(msg: Msg) -> None:
            await self._live.put(msg)

        self._subscription = await client.subscribe(topic._subject, cb=arrived)
        js = client.jetstream()
        sequence = 1
        while True:
            try:
                raw = await js.get_msg(topic._stream, seq=sequence, subject=topic._subject, next=True)
            except nats.js.errors.NotFoundError:
                break
            sequence = (raw.seq or sequence) + 1
            at = raw.time.timestamp() if raw.time is not None else time.time()
            headers = raw.headers or {}
            if (self._since is None or at >= self._since) and DELAY not in headers:
                self._backlog.append(self._browsed(headers, raw.data or b"", at, f"seq-{raw.seq}"))

    def _browsed(self, headers: dict[str, str], data: bytes, at: float, fallback: str) -> Browsed:
        return Browsed(headers.get(ID) or fallback, data.decode(), at)

    def _fresh(self, items: list[Browsed]) -> list[Browsed]:
        found = []
        for item in items:
            if item.message_id not in self._seen:
                self._seen[item.message_id] = None
                found.append(item)
        while len(self._seen) > 10_000:
            del self._seen[next(iter(self._seen))]
        return found

    def _arrived(self, msg: Msg) -> list[Browsed]:
        headers = msg.headers or {}
        if DELAY in headers:  # a continuation held for later: not due yet
            return []
        fallback = f"live-{uuid.uuid4().hex}"  # every ecs-detach publish has its id header
        return self._fresh([self._browsed(headers, msg.data, time.time(), fallback)])

    async def _next(self, wait: float) -> list[Browsed]:
        backlog, self._backlog = self._backlog, []
        found = self._fresh(backlog)
        deadline = time.monotonic() + wait
        while True:
            while not self._live.empty():
                found += self._arrived(self._live.get_nowait())
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            try:
                msg = await asyncio.wait_for(self._live.get(), min(remaining, 1.0))
            except asyncio.TimeoutError:
                continue
            found += self._arrived(msg)

    def next(self, wait: float = 0.0) -> list[Browsed]:
        check_seconds("wait", wait)
        return self._topic._call(self._next(wait), wait + _TIMEOUT)

    async def _close(self) -> None:
        if self._subscription is not None:
            await self._subscription.unsubscribe()

    def close(self) -> None:
        self._topic._call(self._close())
