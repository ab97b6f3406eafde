"""Prometheus metrics of a worker: messages in and out, redeliveries, dead letters, latency."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from handler.local.worker import DEAD_LETTER
from handler.topics import Delivery


class WorkerMetrics:
    """Counts what workers report; ``render()`` is the ``/metrics`` page."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages_in = Counter(
            "ecs_detach_messages_in", "Deliveries received", ["topic"], registry=self.registry
        )
        self.redeliveries = Counter(
            "ecs_detach_redeliveries",
            "Deliveries of a message seen before",
            ["topic"],
            registry=self.registry,
        )
        self.messages_out = Counter(
            "ecs_detach_messages_out",
            "Deliveries handled, by what became of them (continued, succeeded, accepted, …)",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "ecs_detach_dead_letters",
            "Messages moved to the dead-letter topic",
            ["topic"],
            registry=self.registry,
        )
        self.failures = Counter(
            "ecs_detach_handler_failures",
            "Deliveries whose handling raised (nacked)",
            ["topic"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ecs_detach_handle_seconds",
            "Time to handle one delivery (a poll: one job status read, and the confirmation)",
            ["topic"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )

    def received(self, topic: str, delivery: Delivery) -> None:
        self.messages_in.labels(topic).inc()
        if delivery.deliveries > 1:
            self.redeliveries.labels(topic).inc()

    def handled(self, topic: str, what: str, seconds: float) -> None:
        self.messages_out.labels(topic, what).inc()
        self.latency.labels(topic).observe(seconds)
        if what == DEAD_LETTER:
            self.dead_letters.labels(topic).inc()

    def failed(self, topic: str) -> None:
        self.failures.labels(topic).inc()

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
