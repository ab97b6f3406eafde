"""Reading a topic without taking anything from its consumers (``Browsable``), on every backend
that allows it, against the real brokers; RabbitMQ cannot, and says so by not being Browsable."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from handler.topics import Browsable, Browser, open_topic
from tests.topics.brokers import BACKENDS, Backend
from tests.topics.conftest import MakeTopic, require_broker


@pytest.fixture(params=[kind for kind in BACKENDS if kind != "amqp"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The backends whose topics are Browsable (the conftest's ``make`` uses this one)."""
    require_broker(request.param)
    return BACKENDS[request.param](tmp_path)


def browser_of(topic: object, since: float | None = None) -> Browser:
    assert isinstance(topic, Browsable)
    return topic.browse(since=since)


def bodies(browser: Browser, wait: float = 0.0) -> list[str]:
    return [item.body for item in browser.next(wait)]


def test_a_rabbitmq_queue_is_not_browsable(tmp_path: Path, topic_name: str) -> None:
    require_broker("amqp")
    amqp = BACKENDS["amqp"](tmp_path)
    topic = open_topic(amqp.url(topic_name), default_name="unused")
    try:
        assert not isinstance(topic, Browsable)  # AMQP cannot read a queue without taking from it
    finally:
        topic.close()
        amqp.cleanup(topic_name, [topic])


def test_a_browser_sees_the_backlog_and_leaves_it_to_the_consumer(make: MakeTopic) -> None:
    topic = make()
    ids = [topic.publish(f"m{i}") for i in range(3)]
    browser = browser_of(topic)
    try:
        seen = browser.next()
        assert [item.body for item in seen] == ["m0", "m1", "m2"]
        assert [item.message_id for item in seen] == ids
        assert all(abs(item.published_at - time.time()) < 30 for item in seen)
        assert browser.next() == []  # each message once
        # nothing was leased: the consumer gets every message, at its first delivery
        deliveries = topic.receive(3, wait=2)
        assert [(d.body, d.deliveries) for d in deliveries] == [("m0", 1), ("m1", 1), ("m2", 1)]
        for delivery in deliveries:
            topic.ack(delivery)
        assert topic.pending() == 0
    finally:
        browser.close()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_following_sqlite_browser_sees_what_is_published(make: MakeTopic) -> None:
    """SQLite keeps no history and cannot push: a browser sees the rows not yet acked (a
    consumer that acks within the 50 ms between two looks may take one first)."""
    topic = make()
    browser = browser_of(topic)
    try:
        assert browser.next() == []
        threading.Timer(0.2, topic.publish, ["later"]).start()
        assert bodies(browser, wait=3) == ["later"]
    finally:
        browser.close()


@pytest.mark.parametrize("backend", ["redis", "nats"], indirect=True)
def test_a_following_browser_sees_each_new_message_once_even_if_consumed_at_once(make: MakeTopic) -> None:
    topic, consumer = make(), make()
    browser = browser_of(topic)
    stop = threading.Event()

    def consume() -> None:  # the deployment's consumer, acking as fast as it can
        while not stop.is_set():
            for delivery in consumer.receive(5, wait=0.05):
                if delivery.body == "nack-me" and delivery.deliveries == 1:
                    consumer.nack(delivery)  # comes back as a new copy: still shown once
                else:
                    consumer.ack(delivery)

    worker = threading.Thread(target=consume)
    worker.start()
    try:
        assert browser.next() == []
        seen: list[str] = []
        for body in ("a", "nack-me", "b"):
            topic.publish(body)
            deadline = time.monotonic() + 5
            while body not in seen and time.monotonic() < deadline:
                seen += bodies(browser, wait=0.5)
        time.sleep(0.3)
        seen += bodies(browser, wait=0.3)
        assert seen == ["a", "nack-me", "b"]
    finally:
        stop.set()
        worker.join()
        browser.close()
    assert consumer.pending() == 0


@pytest.mark.slow
def test_since_leaves_out_older_messages(make: MakeTopic) -> None:
    topic = make()
    topic.publish("old")
    time.sleep(1.2)
    cut = time.time()
    topic.publish("new")
    browser = browser_of(topic, since=cut - 0.05)
    try:
        assert bodies(browser) == ["new"]
    finally:
        browser.close()
