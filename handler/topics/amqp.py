"""Topics on RabbitMQ 3.10 or later (AMQP 0-9-1, no plugins).

URL: ``amqp://[user:password@]host[:port][/vhost][?topic=NAME]``, ``amqps://…`` for TLS
(``&ca=/path/ca.pem`` adds a CA bundle); the vhost is percent-encoded (``/%2F`` for ``/``).

What is guaranteed: a message whose ``publish`` (or ``requeue``, ``nack``, ``dead_letter``)
returned is delivered at least once, across a broker ``kill -9`` and restart included: to a
receiver of the topic or, once it has used up its deliveries, to ``{name}.dead``. It may be
delivered more than once (always with the same ``message_id``); it is never lost by the broker
while the broker's disk lives. This rests on three things RabbitMQ guarantees:

* every publish waits for the broker's publisher confirm (``mandatory``: an unroutable message
  is an error), which a durable queue sends once the persistent message is on disk;
* a successor copy is confirmed before the copy it replaces is acked, so a crash between the
  two leaves both (the old one comes back ``redelivered``), never neither;
* delayed messages wait in quorum queues that dead-letter *at least once*: the queue keeps an
  expired message until ``name`` has confirmed it (RabbitMQ's ``at-least-once``
  ``x-dead-letter-strategy``; classic-queue dead-lettering is at most once and lost messages
  due at the instant of a crash).

The layout:

* Topic ``jobs`` is the durable classic queue ``jobs``; its dead letters the queue ``jobs.dead``.
  Messages are persistent, ``content_type`` ``application/cloudevents+json`` (a successor keeps
  the type of the copy it replaces), published through the default exchange. A message carries
  its id (``message_id``), the headers ``ecs-detach-failures`` (failed deliveries before this
  copy) and, once dead, ``ecs-detach-reason``.
* Delays use no plugin: a delayed message goes to the quorum queue ``jobs.wait.<ms>`` whose
  ``x-message-ttl`` is the delay rounded up to two significant digits (at most 10 % late,
  never early), dead-lettering into ``jobs`` with ``x-dead-letter-strategy: at-least-once`` and
  ``x-overflow: reject-publish`` (which that strategy needs). These queues do not expire (a
  quorum queue's ``x-expires`` is not renewed by publishing, so it could delete messages): there
  is one per delay in use, and an empty one may be deleted at any time (it is declared again
  before each publish into it). On a cluster each is replicated like any quorum queue. A
  quorum queue created less than about a second before a broker crash comes back empty on
  RabbitMQ 3.10 (Ra registers its log lazily), so the publishes of an instance into a wait
  queue that did not exist when it first used it wait until 2 s after it declared it (once per
  delay and broker, as the queues stay). Another process that finds the queue already there
  does not wait: a crash within that second after the declaration may still lose what it
  published into it (at least one instance was waiting; the fault suite has not met this).
* A broker crash within that second can also leave the wait queue a *zombie* (RabbitMQ 3.10.8,
  seen in the fault suite): the queue is in the broker's schema, so declaring it succeeds, but
  its Raft member was never registered and never starts, so it has no leader and never
  confirms a publish (the broker logs ``leader call - leader not known`` for it). A publish
  into a wait queue that is not confirmed within ``_CONFIRM_S`` (5 s) therefore drops the
  connection (with the unconfirmed publish) and is made once more into the queue's next
  generation, ``{name}.wait.<ms>.1`` (then ``.2``…), declared and settled like a new queue;
  an instance starting to use a delay takes its newest generation on the broker. Nothing is
  deleted, so no process can delete a queue another one has just replaced and published
  into; a zombie holds nothing (its log was never registered) and stays in the schema until
  an operator deletes it (``rabbitmqctl delete_queue``, which force-deletes it after 5 s). A
  wait queue that was only slow is left too: it still dead-letters what it holds into ``name``.
* Upgrading from the classic delay queues ``jobs.delay.<ms>`` of earlier versions needs nothing:
  those drain into ``jobs`` and expire by themselves a minute after their last use. A queue
  ``jobs.wait.<ms>`` with other arguments is refused with a ``TopicConfigError`` that says how
  to replace it; so is a broker older than 3.10.
* Receiving is ``basic.get`` (a pull), polled with a back-off of 10 to 200 ms while waiting: a
  consumer holds exactly the messages it was handed, nothing is prefetched into a process that
  is not asking (the prefetch is the ``max_messages`` of each receive), and ``redelivered``
  means that a consumer lost its channel with the message.
* Deliveries = failures + 1: every copy is handed out once; a redelivered copy is replaced
  (its lost delivery counted) before anyone gets it. ``nack``, ``requeue``, ``dead_letter``,
  an expired lease and that replacement all publish a successor copy (with the count raised,
  unless a requeue), then ack the old one. Acks are committed (a transaction on the receiving
  channel holding only acks of one queue), so an ``ack`` has been applied when it returns.
  Past ``max_deliveries`` the successor goes to ``jobs.dead`` instead.
* RabbitMQ has no visibility timeout: this process starts a timer per delivery and, when it
  fires unsettled, replaces the copy as above; a later settle raises ``StaleDelivery``. If the
  process dies, the broker requeues at once when the connection closes (``redelivered``); a
  process that hangs entirely keeps its messages until RabbitMQ's ``consumer_timeout``.
* ``pending()`` counts the messages ready in ``jobs`` and in the delay queues this instance
  used, plus the deliveries this instance holds: messages held by other consumers and delayed
  by other processes are not seen (AMQP cannot list queues).
* Reconnects: a call that meets a dead connection drops it and runs once more on a new one;
  deliveries of the old connection are stale (the broker has requeued them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import re
import secrets
import ssl
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue
from aio_pika.connection import make_url
from pamqp.common import FieldTable

from handler.support.log import log_event

from . import _loop
from ._base import Delivery, TopicConfigError, TopicError
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

FAILURES = "ecs-detach-failures"
REASON = "ecs-detach-reason"
_USAGE = "use amqp[s]://[user:password@]host[:port][/vhost][?topic=NAME][&ca=/path/ca.pem]"
_TIMEOUT = 10.0  # s for one broker operation
_FIRST_PAUSE, _LONGEST_PAUSE = 0.01, 0.2  # s between two basic.get while waiting
_MAX_TTL_MS = 2**32 - 1
_SETTLE_S = 2.0  # s a new quorum queue needs before its registration survives a crash (< 1 s seen)
_CONFIRM_S = 5.0  # s a publish into a wait queue waits for its confirm before the queue is checked
_OLDEST = (3, 10)  # quorum queues with message TTL and at-least-once dead-lettering
CONTENT_TYPE = "application/cloudevents+json"
_LEASE_EXPIRED = "not settled within the visibility timeout"
_CONNECTION_LOST = "its consumer lost the connection before settling it"
_ERRORS = (
    aiormq.exceptions.AMQPError,
    RuntimeError,  # aio-pika's "connection closed", ChannelInvalidStateError included
    OSError,
    asyncio.TimeoutError,
    TimeoutError,
    # A call waiting on the connection when another thread's call closed it (a reconnect): aio-pika
    # cancels its future, which reaches the calling thread as this.
    concurrent.futures.CancelledError,
)


class _SilentWaitQueue(TopicError):
    """A publish into the wait queue ``queue`` was not confirmed within ``_CONFIRM_S``; the
    delay goes to ``successor`` from now on."""

    def __init__(self, queue: str, successor: str) -> None:
        super().__init__(f"no publisher confirm from the wait queue {queue!r} within {_CONFIRM_S:g} s")
        self.queue = queue
        self.successor = successor


@dataclass
class _Lease:
    message: AbstractIncomingMessage
    deliveries: int
    timer: asyncio.TimerHandle


def delay_bucket_ms(delay: float) -> int:
    """``delay`` s in ms, rounded up to two significant digits (0: no delay queue)."""
    ms = math.ceil(round(delay * 1000, 6))  # 0.3 s is 300 ms, not 300.00000000000006
    if ms > 99:
        step = 10 ** (len(str(ms)) - 2)
        ms = -(-ms // step) * step
    if ms > _MAX_TTL_MS:
        raise ValueError(f"delay must be at most {_MAX_TTL_MS // 1000} s on RabbitMQ, got {delay!r}")
    return ms


class AmqpTopic(BrokerTopic):
    """One topic on RabbitMQ; safe to share between threads (all work runs on one loop)."""

    KIND = "amqp"
    PORT = 5672
    TLS_SCHEME = "amqps"
    USAGE = _USAGE

    def _start(self) -> None:
        name = self._name
        if name.startswith("amq.") or len(name) > 200:
            raise TopicConfigError(f"RabbitMQ queue names cannot start with amq. or be this long: {name!r}")
        self._dead_queue = None if is_dead_letter_topic(name) else name + ".dead"
        self._connection: AbstractConnection | None = None
        self._publisher: AbstractChannel | None = None  # publisher confirms: every publish
        self._receiver: AbstractChannel | None = None  # transactional: basic.get and committed acks
        self._queue: AbstractQueue | None = None  # ``name`` on the receiving channel
        self._opening = asyncio.Lock()  # binds to the shared loop at first use
        self._settling = asyncio.Lock()
        self._leases: dict[str, _Lease] = {}
        self._wait: dict[int, str] = {}  # delay (ms) → the wait queue used for it now
        self._generations: dict[str, int] = {}  # wait queue → its generation
        self._used: dict[str, int] = {}  # every wait queue used here → its delay (ms)
        self._ready_at: dict[str, float] = {}  # wait queue → loop time from which to publish into it
        self._expiring: set[asyncio.Future[None]] = set()
        self._closed = False
        self._call(self._publishing_channel)  # fail at open if the broker or the URL is wrong

    # --- plumbing ---------------------------------------------------------------------------

    def _call(
        self, work: Callable[[], Coroutine[Any, Any, T]], timeout: float = _TIMEOUT, *, retry: bool = True
    ) -> T:
        """Run ``work()`` on the shared loop; broker errors become ``TopicError``.

        aio-pika may notice a dead connection only when it is used: after such an error the
        connection is dropped and ``work()`` runs once more on a new one (a settle then finds
        its lease gone: ``StaleDelivery``, as the broker has requeued the message).
        """
        if self._closed:
            raise TopicError(f"topic {self._name!r} at {self._address.safe_url} is closed")
        try:
            return _loop.run(work(), timeout)
        except _SilentWaitQueue as silent:
            with contextlib.suppress(Exception):  # the unconfirmed publish goes with the connection
                _loop.run(self._disconnect(grace=1.0), _TIMEOUT)
            log_event(
                "topic.wait_queue_silent",
                level=logging.WARNING,
                topic=self._name,
                queue=silent.queue,
                successor=silent.successor,
                broker=self._address.safe_url,
            )
            if not retry:
                raise broker_error("amqp", self._name, self._address, silent) from None
            return self._call(work, timeout, retry=False)
        except _ERRORS as exc:
            with contextlib.suppress(Exception):
                _loop.run(self._disconnect(grace=1.0), _TIMEOUT)
            if retry and not isinstance(exc, TimeoutError):
                return self._call(work, timeout, retry=False)
            raise broker_error("amqp", self._name, self._address, exc)  # noqa: B904 (cause set there)

    async def _open(self) -> AbstractConnection:
        if self._connection is None or self._connection.is_closed:
            address = self._address
            context = ssl.create_default_context(cafile=self._ca_file) if address.scheme == "amqps" else None
            url = make_url(
                host=address.host,
                port=address.port,
                login=address.username or "guest",
                password=address.password or "guest",
                virtualhost=address.path or "/",
                ssl=context is not None,
            )
            properties: FieldTable = {"connection_name": f"ecs-detach {self._name}"}
            connection = aio_pika.Connection(url, ssl_context=context, client_properties=properties)
            try:
                await connection.connect(timeout=_TIMEOUT / 2)
            except BaseException:
                with contextlib.suppress(*_ERRORS):
                    await connection.close()
                raise
            self._connection = connection
            _check_version(connection, address.safe_url)
        return self._connection

    async def _publishing_channel(self) -> AbstractChannel:
        async with self._opening:
            if self._publisher is None or self._publisher.is_closed:
                connection = await self._open()
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                for queue in (self._name, self._dead_queue):
                    if queue is not None:
                        await channel.declare_queue(queue, durable=True)
                self._publisher = channel
            return self._publisher

    async def _receiving_queue(self) -> AbstractQueue:
        """``name`` on the transactional channel; reopening it voids the leases of the old one."""
        async with self._opening:
            if self._receiver is None or self._receiver.is_closed or self._queue is None:
                self._drop_leases()
                connection = await self._open()
                channel = await connection.channel(publisher_confirms=False)
                await channel.transaction().select()
                self._queue = await channel.declare_queue(self._name, durable=True)
                self._receiver = channel
            return self._queue

    def _drop_leases(self) -> None:
        for lease in self._leases.values():
            lease.timer.cancel()
        self._leases.clear()

    async def _declare_delay_queue(self, channel: AbstractChannel, ttl_ms: int) -> AbstractQueue:
        """The quorum wait queue for ``ttl_ms``, dead-lettering at least once into ``name``.

        At its first use here, a delay's queue is the newest generation on the broker (an older
        one was found silent). A quorum queue that the broker created less than about a second
        before a ``kill -9`` comes back empty (RabbitMQ 3.10's Ra saves the name of the queue's
        log lazily): when this instance first uses a queue and finds it missing, it declares it
        and lets ``_SETTLE_S`` pass before anything is published into it.
        """
        loop = asyncio.get_running_loop()
        queue = self._wait.get(ttl_ms)
        if queue is None:
            generation = 0
            while await self._exists(delay_queue_name(self._name, ttl_ms, generation + 1)):
                generation += 1
            queue = self._wait.setdefault(ttl_ms, delay_queue_name(self._name, ttl_ms, generation))
            self._generations.setdefault(queue, generation)
        if queue not in self._used:
            # Until this call knows the queue existed, every publish here waits as if it is new
            # (concurrent calls of this instance included, not only the one that creates it).
            self._used[queue] = ttl_ms
            self._ready_at[queue] = loop.time() + _SETTLE_S
            if await self._exists(queue):
                self._ready_at[queue] = 0.0
        try:
            declared = await channel.declare_queue(
                queue, durable=True, arguments=delay_queue_arguments(self._name, ttl_ms)
            )
        except aiormq.exceptions.ChannelPreconditionFailed as exc:
            raise TopicConfigError(
                f"RabbitMQ at {self._address.safe_url} refused the delay queue {queue!r} ({exc}): a queue of"
                " that name exists with other arguments. It must be a quorum queue with"
                f" {delay_queue_arguments(self._name, ttl_ms)}; once it is empty, delete it"
                f" (rabbitmqctl delete_queue {queue} --if-empty) and ecs-detach declares it anew"
            ) from None
        await asyncio.sleep(max(self._ready_at[queue] - loop.time(), 0.0))
        return declared

    async def _exists(self, queue: str) -> bool:
        """Whether ``queue`` exists (a passive declare, on a channel of its own as a miss closes it)."""
        channel = await (await self._open()).channel()
        try:
            await channel.declare_queue(queue, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            if not channel.is_closed:
                await channel.close()
        return True

    def _abandon(self, queue: str) -> str:
        """The wait queue after ``queue``, silent: its next generation, from now on."""
        ttl_ms = self._used[queue]
        generation = self._generations[queue] + 1
        successor = delay_queue_name(self._name, ttl_ms, generation)
        if self._wait.get(ttl_ms) == queue:
            self._wait[ttl_ms] = successor
            self._generations.setdefault(successor, generation)
        return self._wait[ttl_ms]

    async def _route(self, channel: AbstractChannel, delay: float) -> str:
        """The queue to publish into for ``delay``, declaring its delay queue if it has one."""
        ttl_ms = delay_bucket_ms(delay)
        if ttl_ms == 0:
            return self._name
        return (await self._declare_delay_queue(channel, ttl_ms)).name

    # --- the Topic interface ----------------------------------------------------------------

    def publish(self, body: str, *, delay: float = 0.0) -> str:
        """Publish ``body`` (confirmed by the broker when this returns); due after ``delay`` s."""
        check_seconds("delay", delay)
        delay_bucket_ms(delay)
        message_id = uuid.uuid4().hex
        self._call(lambda: self._publish(body.encode(), message_id, delay))
        return message_id

    async def _publish(self, body: bytes, message_id: str, delay: float) -> None:
        await self._send(_message(body, message_id, failures=0), delay)

    async def _send(self, message: aio_pika.Message, delay: float = 0.0, *, dead: bool = False) -> None:
        """Publish ``message`` into ``name``, its delay queue or (``dead``) its dead-letter
        queue, and wait for the broker's confirm: it is stored when this returns."""
        channel = await self._publishing_channel()
        if dead:
            assert self._dead_queue is not None
            routing_key = self._dead_queue
        else:
            routing_key = await self._route(channel, delay)
        if routing_key in (self._name, self._dead_queue):
            await channel.default_exchange.publish(
                message, routing_key=routing_key, mandatory=True, timeout=_TIMEOUT
            )
            return
        try:
            await channel.default_exchange.publish(
                message, routing_key=routing_key, mandatory=True, timeout=_CONFIRM_S
            )
        except (asyncio.TimeoutError, TimeoutError):
            raise _SilentWaitQueue(routing_key, self._abandon(routing_key)) from None

    def receive(self, max_messages: int = 1, *, wait: float = 0.0) -> list[Delivery]:
        """Lease up to ``max_messages`` messages, waiting up to ``wait`` s for the first."""
        check_receive(max_messages, wait)
        return self._call(lambda: self._receive(max_messages, wait), wait + _TIMEOUT)

    async def _receive(self, max_messages: int, wait: float) -> list[Delivery]:
        deadline = time.monotonic() + wait
        pause = _FIRST_PAUSE
        while True:
            deliveries: list[Delivery] = []
            while len(deliveries) < max_messages:
                queue = await self._receiving_queue()
                message = await queue.get(no_ack=False, fail=False, timeout=_TIMEOUT)
                if message is None:
                    break
                delivery = await self._accept(message)
                if delivery is not None:
                    deliveries.append(delivery)
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0:
                return deliveries
            await asyncio.sleep(min(pause, remaining))
            pause = min(pause * 2, _LONGEST_PAUSE)

    async def _accept(self, message: AbstractIncomingMessage) -> Delivery | None:
        """A leased delivery of ``message``, or None if it was redelivered and is replaced."""
        failures = _failures(message)
        if message.redelivered:
            await self._replace(message, failures + 1, reason=_CONNECTION_LOST)
            return None
        receipt = secrets.token_urlsafe(12)
        timer = asyncio.get_running_loop().call_later(self._visibility_timeout, self._lease_ended, receipt)
        self._leases[receipt] = _Lease(message, failures + 1, timer)
        return Delivery(message.message_id or "", message.body.decode(), failures + 1, receipt)

    def _lease_ended(self, receipt: str) -> None:
        task = asyncio.ensure_future(self._expire(receipt))
        self._expiring.add(task)
        task.add_done_callback(self._expiring.discard)

    async def _expire(self, receipt: str) -> None:
        lease = self._leases.pop(receipt, None)
        if lease is not None:
            with contextlib.suppress(*_ERRORS, _SilentWaitQueue):  # else the broker requeues it
                await self._replace(lease.message, lease.deliveries, reason=_LEASE_EXPIRED)

    async def _replace(
        self,
        message: AbstractIncomingMessage,
        failures: int,
        *,
        reason: str = "",
        body: bytes | None = None,
        delay: float = 0.0,
        dead: bool = False,
    ) -> bool:
        """Publish the successor of ``message`` (confirmed), then ack ``message`` (committed);
        False if the channel of ``message`` is gone (the broker has requeued it).

        The successor goes to the dead-letter queue if ``dead`` or if it has used up its
        deliveries, else to ``name`` (or its delay queue). A crash between the two leaves both:
        the old copy comes back ``redelivered`` and is replaced again (at least once).
        """
        if self._receiver is None or self._receiver.is_closed:
            return False
        dead = (dead or failures >= self._max_deliveries) and self._dead_queue is not None
        if self._dead_queue is None:  # a dead letter keeps why it died unless told anew
            reason = reason or _reason(message)
        elif not dead:
            reason = ""
        successor = _message(
            message.body if body is None else body,
            message.message_id or "",
            failures=failures,
            reason=reason,
            content_type=message.content_type,
        )
        await self._send(successor, delay, dead=dead)
        return await self._commit_ack(message)

    async def _commit_ack(self, message: AbstractIncomingMessage) -> bool:
        """Ack ``message`` and commit: the ack is applied when this returns (one queue, so the
        transaction is atomic). False if its channel is gone (the broker has requeued it)."""
        async with self._settling:
            channel = self._receiver
            if channel is None or channel.is_closed:
                return False
            await message.ack()
            await channel.transaction().commit(timeout=_TIMEOUT)
            return True

    def _take(self, delivery: Delivery) -> _Lease:
        """The lease of ``delivery`` if it is still ours (it ends the lease)."""
        lease = self._leases.pop(delivery.receipt, None)
        if lease is None:
            raise stale(self._name, delivery.message_id)
        lease.timer.cancel()
        return lease

    async def _ack(self, delivery: Delivery) -> None:
        if not await self._commit_ack(self._take(delivery).message):
            raise stale(self._name, delivery.message_id)

    def ack(self, delivery: Delivery) -> None:
        """Remove the message; raises ``StaleDelivery`` unless the lease is still ours."""
        self._call(lambda: self._ack(delivery))

    async def _settle(self, delivery: Delivery, failures: int, **successor: Any) -> None:
        if not await self._replace(self._take(delivery).message, failures, **successor):
            raise stale(self._name, delivery.message_id)

    def nack(self, delivery: Delivery, *, delay: float = 0.0, reason: str = "") -> None:
        """Deliver again after ``delay`` s, counting this failure (the last one dead-letters)."""
        check_seconds("delay", delay)
        delay_bucket_ms(delay)
        self._call(lambda: self._settle(delivery, delivery.deliveries, reason=reason, delay=delay))

    def requeue(self, delivery: Delivery, body: str, *, delay: float) -> None:
        """Atomically replace the message by ``body``, due after ``delay`` s, count restarted."""
        check_seconds("delay", delay)
        delay_bucket_ms(delay)
        self._call(lambda: self._settle(delivery, 0, body=body.encode(), delay=delay))

    def dead_letter(self, delivery: Delivery, *, reason: str) -> None:
        """Move the message to ``{name}.dead`` now, body unchanged, with ``reason``."""
        if self._dead_queue is None:
            raise no_dead_letter_topic(self._name)
        self._call(lambda: self._settle(delivery, delivery.deliveries, reason=reason, dead=True))

    async def _pending(self) -> int:
        channel = await self._publishing_channel()
        queues = [await channel.declare_queue(self._name, durable=True)]
        for wait_queue, ttl_ms in sorted(self._used.items()):
            arguments = delay_queue_arguments(self._name, ttl_ms)
            queues.append(await channel.declare_queue(wait_queue, durable=True, arguments=arguments))
        ready = 0
        for queue in queues:
            ready += queue.declaration_result.message_count or 0
        return ready + len(self._leases)

    def pending(self) -> int:
        """Ready messages here and in the delay queues used here, plus the deliveries held here."""
        return self._call(self._pending)

    def dead_letter_topic(self) -> AmqpTopic:
        """The ``{name}.dead`` topic on the same broker, as a new instance the caller closes."""
        if self._dead_queue is None:
            raise ValueError(f"{self._name!r} is a dead-letter topic and has none of its own")
        return AmqpTopic(
            self._address,
            self._dead_queue,
            ca_file=self._ca_file,
            visibility_timeout=self._visibility_timeout,
            max_deliveries=self._max_deliveries,
        )

    async def _disconnect(self, grace: float = _TIMEOUT / 2) -> None:
        """Forget the connection, its channels and its leases (the broker requeues those);
        give a graceful close ``grace`` s (a dead connection never answers)."""
        self._drop_leases()
        connection, self._connection = self._connection, None
        self._publisher = self._receiver = self._queue = None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(*_ERRORS):
                await asyncio.wait_for(connection.close(), grace)

    def close(self) -> None:
        """Close the connection; the broker requeues unsettled deliveries at once."""
        if not self._closed:
            self._call(self._disconnect)
            self._closed = True


def _failures(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(FAILURES, 0)
    return int(value) if isinstance(value, (int, str)) else 0


def _reason(message: AbstractIncomingMessage) -> str:
    value = (message.headers or {}).get(REASON, "")
    return value.decode() if isinstance(value, bytes) else str(value)


def _message(
    body: bytes, message_id: str, *, failures: int, reason: str = "", content_type: str | None = None
) -> aio_pika.Message:
    headers: dict[str, Any] = {FAILURES: failures}
    if reason:
        headers[REASON] = reason
    return aio_pika.Message(
        body,
        message_id=message_id,
        headers=headers,
        content_type=content_type or CONTENT_TYPE,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


def delay_queue_name(name: str, ttl_ms: int, generation: int = 0) -> str:
    """The wait queue of ``name`` for ``ttl_ms``: ``{name}.wait.<ttl_ms>``, then ``.1``, ``.2``…
    for the generations that replace a silent one."""
    return f"{name}.wait.{ttl_ms}" + (f".{generation}" if generation else "")


def delay_queue_arguments(name: str, ttl_ms: int) -> FieldTable:
    """A quorum queue whose messages expire after ``ttl_ms`` into ``name``, at least once."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": ttl_ms,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": name,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # at-least-once dead-lettering needs it (no length limit is set)
    }


def _check_version(connection: AbstractConnection, url: str) -> None:
    """Refuse a broker older than 3.10: its quorum queues cannot dead-letter at least once."""
    underlay = connection.transport
    properties = underlay.connection.server_properties if underlay is not None else {}
    product, version = properties.get("product", b""), properties.get("version", b"")
    product = product.decode() if isinstance(product, bytes) else str(product)
    version = version.decode() if isinstance(version, bytes) else str(version)
    numbers = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    if product == "RabbitMQ" and numbers < _OLDEST:
        raise TopicConfigError(
            f"RabbitMQ at {url} is version {version}: ecs-detach needs RabbitMQ 3.10 or later"
            " (quorum queues with at-least-once dead-lettering hold its delayed messages)"
        )
