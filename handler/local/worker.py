"""Long-running consumers, for containers, VMs and `up`: the poll function on the jobs topic and
the detach function on a requests topic.

A delivery is acknowledged only after its work is handed on (the result published, the job
accepted, or the continuation requeued); an exception nacks it, so it comes back and, after the
topic's ``max_deliveries``, lands in the dead-letter topic. A message that can never be
processed (not a valid event) goes to the dead-letter topic at once, with the reason. Each
handler says what it did (``continued``, ``succeeded``, ``accepted``, ``dead_letter``…), which
the worker counts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from handler.cloud import time_budget
from handler.core.outcomes import DetachStatus, QueueAction
from handler.core.validation import InvalidInput
from handler.entry.runtime import Runtime
from handler.functions.batch import process
from handler.functions.relay import Relay
from handler.sources import parse_message
from handler.support.log import log_event
from handler.topics import Delivery, StaleDelivery, Topic, TopicError

Handle = Callable[[Delivery], str]
DEAD_LETTER = "dead_letter"


def _dead_letter(topic: Topic, delivery: Delivery, reason: str) -> str:
    topic.dead_letter(delivery, reason=reason)
    log_event("worker.dead_letter", level=logging.ERROR, message_id=delivery.message_id, reason=reason)
    return DEAD_LETTER


def poll_job(runtime: Runtime) -> Handle:
    """Handle one delivery of the jobs topic: poll a job once (or give a queued request its
    turn), then finish or come back later."""

    def handle(delivery: Delivery) -> str:
        try:
            step = runtime.jobs_function(delivery.body)
        except InvalidInput as error:
            return _dead_letter(runtime.jobs, delivery, str(error))
        if step.again is None:
            runtime.jobs.ack(delivery)
        else:
            runtime.jobs.requeue(delivery, step.again, delay=step.delay_s)
        return step.what

    return handle


def detach_request(runtime: Runtime, requests: Topic) -> Handle:
    """Handle one delivery of a requests topic (a detach request or a CloudEvent per message).

    Records that must be retried (throttled, no answer, a limit reached) bring the message back
    after their delay without counting as a failure; the records already accepted answer as
    duplicates the second time, so nothing is detached twice. A message with no valid record is
    dead-lettered with the reasons.
    """

    def handle(delivery: Delivery) -> str:
        parsed = parse_message(delivery.body, source="requests")
        report = process(parsed, runtime.detach, max_cloud_calls=runtime.settings.max_cloud_calls)
        action = report.disposition()
        if action is QueueAction.REQUEUE:
            requests.requeue(delivery, delivery.body, delay=report.retry_after_s or 1.0)
            return "retry"
        if action is QueueAction.DEAD_LETTER:
            reasons = "; ".join(f"{r.ref}: {r.detail}" for r in report.records) or "no record"
            return _dead_letter(requests, delivery, reasons)
        requests.ack(delivery)
        started = report.count_of(DetachStatus.ACCEPTED) + report.count_of(DetachStatus.QUEUED)
        return "accepted" if started else "settled"

    return handle


def notify_event(runtime: Runtime, topic: Topic) -> Handle:
    """Handle one delivery of the results topic: send its message to the chosen channels. A
    channel that did not take it raises: the delivery comes back (the channels that took it
    are not sent it again) and is dead-lettered after the topic's ``max_deliveries``."""

    def handle(delivery: Delivery) -> str:
        try:
            report = runtime.notify(delivery.body)
        except InvalidInput as error:
            return _dead_letter(topic, delivery, str(error))
        topic.ack(delivery)
        return "notified" if report.sent else "notify_skipped"

    return handle


class Observer(Protocol):
    """What a worker reports as it goes (``handler.local.metrics.WorkerMetrics`` counts it)."""

    def received(self, topic: str, delivery: Delivery) -> None: ...
    def handled(self, topic: str, what: str, seconds: float) -> None: ...
    def failed(self, topic: str) -> None: ...


class Worker:
    """``concurrency`` threads receiving from ``topic`` and calling ``handle`` per delivery."""

    def __init__(
        self,
        topic: Topic,
        handle: Handle,
        *,
        concurrency: int = 1,
        wait_s: float = 0.5,
        retry_delay_s: float = 5.0,
        observer: Observer | None = None,
        budget_s: float = 50.0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._observer = observer
        self._budget_s = budget_s
        self.last_receive_ok = time.monotonic()  # for health checks: is the broker answering?
        self._topic = topic
        self._handle = handle
        self._wait_s = wait_s
        self._retry_delay_s = retry_delay_s
        self._stopping = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, name=f"worker-{topic.name}-{i}", daemon=True)
            for i in range(concurrency)
        ]

    def start(self) -> Worker:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop receiving; in-flight deliveries finish first (drain)."""
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    @property
    def alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                deliveries = self._topic.receive(1, wait=self._wait_s)
            except Exception as error:  # the broker is down: say so, back off, keep going
                log_event(
                    "worker.receive_failed", level=logging.ERROR, topic=self._topic.name, error=str(error)
                )
                self._stopping.wait(self._retry_delay_s)
                continue
            self.last_receive_ok = time.monotonic()
            for delivery in deliveries:
                self._handle_one(delivery)

    def _handle_one(self, delivery: Delivery) -> None:
        name = self._topic.name
        if self._observer:
            self._observer.received(name, delivery)
        started = time.monotonic()
        try:
            with time_budget(self._budget_s):  # settle before the lease runs out
                what = self._handle(delivery)
            if self._observer:
                self._observer.handled(name, what, time.monotonic() - started)
        except StaleDelivery:
            log_event("worker.lease_lost", level=logging.WARNING, message_id=delivery.message_id)
        except Exception as error:
            if self._observer:
                self._observer.failed(name)
            log_event(
                "worker.failed",
                level=logging.ERROR,
                message_id=delivery.message_id,
                deliveries=delivery.deliveries,
                error=f"{type(error).__name__}: {error}",
            )
            try:
                self._topic.nack(
                    delivery, delay=self._retry_delay_s, reason=f"{type(error).__name__}: {error}"
                )
            except StaleDelivery:
                log_event("worker.lease_lost", level=logging.WARNING, message_id=delivery.message_id)
            except TopicError as nack_error:  # the broker is down: the lease expires, the message returns
                log_event(
                    "worker.nack_failed",
                    level=logging.ERROR,
                    message_id=delivery.message_id,
                    error=str(nack_error),
                )


class RelayWorker:
    """A thread sweeping the store's outbox every ``every_s`` (``handler.functions.relay``): the
    accepted events nobody published (a sender that never retried, an instance that died before
    its publish) go out. Like a ``Worker`` to its service: ``start``, ``stop``, ``alive``, and
    ``last_receive_ok``, the last time the store answered a sweep."""

    def __init__(self, relay: Relay, *, every_s: float) -> None:
        self._relay = relay
        self._every_s = every_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="relay", daemon=True)
        self.last_receive_ok = time.monotonic()

    def start(self) -> RelayWorker:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the sweep in flight (its records are settled or stay in the outbox)."""
        self._stopping.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stopping.wait(self._every_s):
            try:
                self._relay.sweep()
            except Exception as error:  # the store is down: the records wait there, try again
                log_event("relay.failed", level=logging.ERROR, error=f"{type(error).__name__}: {error}")
                continue
            self.last_receive_ok = time.monotonic()


def relay_worker(runtime: Runtime) -> RelayWorker:
    """The outbox relay of ``runtime``'s detach function, as a thread."""
    settings = runtime.settings
    return RelayWorker(
        Relay(runtime.detach, older_than_s=settings.relay_after_s), every_s=settings.relay_every_s
    )


def forwarders(runtime: Runtime, *, budget_s: float) -> list[Worker]:
    """One worker per push topic (SMN, HTTP) that holds delayed messages: it sends each one
    when it is due."""
    return [Worker(outbox, topic.forward, budget_s=budget_s) for topic, outbox in runtime.delay_outboxes()]
