"""Long-running consumers: the poll function on the jobs topic, for containers, VMs and `up`.

A delivery is acknowledged only after its work is handed on (the result published, or the
continuation requeued); an exception nacks it, so it comes back and, after the topic's
``max_deliveries``, lands in the dead-letter topic. A message that can never be processed
(not a valid event) goes to the dead-letter topic at once, with the reason.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from handler.core.validation import InvalidInput
from handler.entry.runtime import Runtime
from handler.log import log_event
from handler.sources import parse_accepted
from handler.topics import Delivery, StaleDelivery, Topic, TopicError

Handle = Callable[[Delivery], None]


def poll_job(runtime: Runtime) -> Handle:
    """Handle one delivery of the jobs topic: poll once, then finish or come back later."""

    def handle(delivery: Delivery) -> None:
        try:
            event = parse_accepted(delivery.body)
        except InvalidInput as error:
            runtime.jobs.dead_letter(delivery, reason=str(error))
            log_event(
                "worker.dead_letter", level=logging.ERROR, message_id=delivery.message_id, reason=str(error)
            )
            return
        outcome = runtime.poll(event.data)
        if outcome.next is None:
            runtime.jobs.ack(delivery)
            return
        continuation = event.model_copy(update={"data": outcome.next})
        runtime.jobs.requeue(delivery, continuation.model_dump_json(), delay=outcome.delay_s)

    return handle


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
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
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
            for delivery in deliveries:
                self._handle_one(delivery)

    def _handle_one(self, delivery: Delivery) -> None:
        try:
            self._handle(delivery)
        except StaleDelivery:
            log_event("worker.lease_lost", level=logging.WARNING, message_id=delivery.message_id)
        except Exception as error:
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
