"""The Topic contract, run against every backend: SQLite, Redis Streams, NATS JetStream, RabbitMQ.

Real time and real brokers on loopback; each test has a topic of its own. Where a backend meets
the contract differently, the backend's module docstring says how.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from handler.topics import Delivery, StaleDelivery, Topic, TopicError
from tests.topics.brokers import Backend
from tests.topics.conftest import MakeTopic

BODY = json.dumps({"specversion": "1.0", "data": {"volume": "vol-ü", "note": "a\nb\x00c"}})
SHORT_LEASE = 0.4  # s: the visibility timeout of the tests that let a lease expire


def only(deliveries: list[Delivery]) -> Delivery:
    assert len(deliveries) == 1, deliveries
    return deliveries[0]


def since(start: float) -> float:
    return time.monotonic() - start


# --- basics ---------------------------------------------------------------------------------


def test_round_trip(make: MakeTopic) -> None:
    topic = make()
    message_id = topic.publish(BODY)
    assert topic.pending() == 1

    delivery = only(topic.receive())
    assert delivery.message_id == message_id
    assert delivery.body == BODY
    assert delivery.deliveries == 1
    assert delivery.receipt
    assert topic.pending() == 1  # leased, not gone

    topic.ack(delivery)
    assert topic.pending() == 0
    assert topic.receive() == []
    with pytest.raises(StaleDelivery):
        topic.ack(delivery)


def test_messages_come_out_in_publish_order(make: MakeTopic) -> None:
    topic = make()
    bodies = [f"m{i}" for i in range(7)]
    ids = [topic.publish(body) for body in bodies]
    assert len(set(ids)) == 7

    first = topic.receive(max_messages=3)
    rest = topic.receive(max_messages=10)
    assert [d.body for d in first + rest] == bodies
    assert [d.message_id for d in first + rest] == ids
    assert len({d.receipt for d in first + rest}) == 7


def test_topics_are_separate(make: MakeTopic) -> None:
    jobs, results = make("-jobs"), make("-results")
    jobs.publish("job")
    results.publish("result")
    assert (jobs.pending(), results.pending()) == (1, 1)

    job = only(jobs.receive(max_messages=5))
    assert job.body == "job"
    with pytest.raises(StaleDelivery):
        results.ack(job)  # a delivery only settles in its own topic
    assert only(results.receive(max_messages=5)).body == "result"


def test_another_instance_of_the_topic_sees_the_same_messages(make: MakeTopic) -> None:
    publisher, consumer = make(), make()
    message_id = publisher.publish(BODY)
    assert consumer.pending() == 1
    delivery = only(consumer.receive(wait=5))
    assert (delivery.message_id, delivery.body) == (message_id, BODY)
    consumer.ack(delivery)
    assert publisher.pending() == 0


# --- delays and waiting ---------------------------------------------------------------------


def test_delayed_publish_is_invisible_until_due(make: MakeTopic) -> None:
    topic = make()
    start = time.monotonic()
    topic.publish("late", delay=0.6)
    published = time.monotonic()  # a publish may take a while (RabbitMQ: a new wait queue settles)
    topic.publish("now")
    assert topic.pending() == 2
    now = only(topic.receive(max_messages=5))
    assert now.body == "now"
    topic.ack(now)

    assert topic.receive(wait=0.2) == []
    late = only(topic.receive(wait=5))
    assert late.body == "late"
    assert late.deliveries == 1
    assert since(start) >= 0.6
    assert since(published) < 2.5
    topic.ack(late)
    assert topic.pending() == 0


def test_receive_wakes_when_a_message_is_published(make: MakeTopic) -> None:
    receiver, publisher = make(), make()
    timer = threading.Timer(0.3, publisher.publish, args=("hello",))
    start = time.monotonic()
    timer.start()
    try:
        delivery = only(receiver.receive(wait=5))
    finally:
        timer.join()
    assert delivery.body == "hello"
    assert 0.25 < since(start) < 1.5


def test_receive_gives_up_after_wait(make: MakeTopic) -> None:
    topic = make()
    start = time.monotonic()
    assert topic.receive(wait=0.3) == []
    assert 0.3 <= since(start) < 1.5


# --- settling -------------------------------------------------------------------------------


def test_nack_delivers_again_after_the_delay_and_counts(make: MakeTopic) -> None:
    topic = make()
    topic.publish("x")
    first = only(topic.receive())
    start = time.monotonic()
    topic.nack(first, delay=0.4, reason="cloud said 503")
    with pytest.raises(StaleDelivery):
        topic.ack(first)  # the nack ended the lease
    assert topic.receive() == []

    second = only(topic.receive(wait=5))
    assert since(start) >= 0.4
    assert (second.message_id, second.body, second.deliveries) == (first.message_id, "x", 2)

    topic.nack(second)  # no delay: due at once
    assert only(topic.receive(wait=5)).deliveries == 3


def test_requeue_replaces_body_and_restarts_count(make: MakeTopic) -> None:
    topic = make(max_deliveries=2)
    topic.publish("step 1")
    topic.nack(only(topic.receive()), reason="transient")
    second = only(topic.receive(wait=5))
    assert second.deliveries == 2

    start = time.monotonic()
    topic.requeue(second, "step 2", delay=0.3)
    with pytest.raises(StaleDelivery):
        topic.requeue(second, "step 3", delay=0)
    assert topic.pending() == 1
    assert topic.receive() == []
    third = only(topic.receive(wait=5))
    assert since(start) >= 0.3
    assert (third.message_id, third.body, third.deliveries) == (second.message_id, "step 2", 1)
    # The count restarted: one more failure is allowed before the dead-letter topic.
    topic.nack(third)
    assert only(topic.receive(wait=5)).deliveries == 2


# --- leases ---------------------------------------------------------------------------------


def test_unsettled_message_comes_back_after_visibility_timeout(make: MakeTopic) -> None:
    topic = make(visibility_timeout=SHORT_LEASE)
    other = make(visibility_timeout=SHORT_LEASE)  # another consumer of the same topic
    topic.publish(BODY)
    start = time.monotonic()
    first = only(topic.receive())
    assert other.receive() == []  # still leased

    second = only(other.receive(wait=5))
    assert since(start) >= SHORT_LEASE
    assert (second.message_id, second.body, second.deliveries) == (first.message_id, BODY, 2)
    assert second.receipt != first.receipt

    with pytest.raises(StaleDelivery):
        topic.ack(first)
    with pytest.raises(StaleDelivery):
        topic.nack(first, reason="late")
    with pytest.raises(StaleDelivery):
        topic.requeue(first, "replaced", delay=0)
    other.ack(second)
    assert topic.pending() == 0


def test_expired_lease_is_stale_even_before_anyone_else_receives(make: MakeTopic) -> None:
    topic = make(visibility_timeout=SHORT_LEASE)
    topic.publish("x")
    delivery = only(topic.receive())
    time.sleep(SHORT_LEASE + 0.1)
    with pytest.raises(StaleDelivery):
        topic.ack(delivery)
    assert topic.pending() == 1


# --- dead letters ---------------------------------------------------------------------------


def test_dead_letter_after_max_deliveries_keeps_body_count_and_reason(
    make: MakeTopic, backend: Backend, topic_name: str
) -> None:
    topic = make(max_deliveries=3)
    message_id = topic.publish(BODY)
    for attempt in (1, 2, 3):
        delivery = only(topic.receive(wait=5))
        assert (delivery.message_id, delivery.body, delivery.deliveries) == (message_id, BODY, attempt)
        topic.nack(delivery, reason=f"attempt {attempt} failed")

    topic.publish("healthy")
    # The exhausted message is not delivered again: the next one comes instead.
    assert only(topic.receive(max_messages=5, wait=5)).body == "healthy"
    assert topic.pending() == 1
    assert backend.dead_reason(topic_name, message_id) == "attempt 3 failed"

    dead = make(".dead")
    assert dead.name == topic_name + ".dead"
    assert dead.pending() == 1
    dead_delivery = only(dead.receive(wait=5))
    assert (dead_delivery.message_id, dead_delivery.body) == (message_id, BODY)
    assert dead_delivery.deliveries == 4
    dead.ack(dead_delivery)
    assert dead.pending() == 0


def test_lease_expiry_counts_towards_dead_letter(make: MakeTopic) -> None:
    topic = make(max_deliveries=1, visibility_timeout=SHORT_LEASE)
    message_id = topic.publish("x")
    only(topic.receive())
    time.sleep(SHORT_LEASE + 0.1)
    assert topic.receive(wait=0.3) == []
    assert topic.pending() == 0
    dead_delivery = only(make(".dead").receive(wait=5))
    assert (dead_delivery.message_id, dead_delivery.body) == (message_id, "x")


def test_dead_letter_now_moves_an_unprocessable_message_at_once(
    make: MakeTopic, backend: Backend, topic_name: str
) -> None:
    topic = make(max_deliveries=5)
    message_id = topic.publish("not an event")
    delivery = only(topic.receive())
    topic.dead_letter(delivery, reason="invalid event: data.job_id missing")
    assert topic.pending() == 0
    assert backend.dead_reason(topic_name, message_id) == "invalid event: data.job_id missing"
    with pytest.raises(StaleDelivery):
        topic.ack(delivery)

    dead = make(".dead")
    dead_delivery = only(dead.receive(wait=5))
    assert (dead_delivery.message_id, dead_delivery.body, dead_delivery.deliveries) == (
        message_id,
        "not an event",
        2,
    )
    with pytest.raises(TopicError, match="dead-letter topic"):
        dead.dead_letter(dead_delivery, reason="again")


def test_dead_letter_topic_keeps_messages_however_often_delivered(make: MakeTopic) -> None:
    topic = make(max_deliveries=1)
    topic.publish("x")
    topic.nack(only(topic.receive()))
    assert topic.receive() == []

    dead = make(".dead", max_deliveries=1)
    for expected in range(2, 6):
        delivery = only(dead.receive(wait=5))
        assert delivery.deliveries == expected
        dead.nack(delivery)
    assert dead.pending() == 1


def test_dead_letter_topic_of_a_topic(make: MakeTopic, topic_name: str) -> None:
    topic: Any = make()
    dead = topic.dead_letter_topic()
    try:
        assert dead.name == topic_name + ".dead"
        with pytest.raises(ValueError, match="dead-letter topic"):
            dead.dead_letter_topic()
    finally:
        dead.close()


# --- arguments and closing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_deliveries": 0}, "max_deliveries"),
        ({"visibility_timeout": 0}, "visibility_timeout"),
        ({"visibility_timeout": -1.0}, "visibility_timeout"),
        ({"visibility_timeout": float("inf")}, "visibility_timeout"),
        ({"visibility_timeout": float("nan")}, "visibility_timeout"),
    ],
)
def test_options_are_checked(make: MakeTopic, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**options)


def test_methods_validate_and_closed_topic_raises(make: MakeTopic) -> None:
    topic = make()
    with pytest.raises(ValueError, match="delay"):
        topic.publish("x", delay=-1)
    with pytest.raises(ValueError, match="max_messages"):
        topic.receive(max_messages=0)
    with pytest.raises(ValueError, match="wait"):
        topic.receive(wait=-1)
    topic.publish("x")
    delivery = only(topic.receive())
    with pytest.raises(ValueError, match="delay"):
        topic.nack(delivery, delay=float("nan"))
    topic.close()
    topic.close()
    with pytest.raises(TopicError, match="closed"):
        topic.publish("y")
    with pytest.raises(TopicError, match="closed"):
        topic.receive()


# --- concurrency ----------------------------------------------------------------------------


def _drain(topic: Topic, batch: int) -> list[str]:
    """Receive and ack until the topic is empty; return the acked bodies."""
    done: list[str] = []
    while True:
        deliveries = topic.receive(max_messages=batch, wait=0.05)
        if not deliveries and topic.pending() == 0:
            return done
        for delivery in deliveries:
            topic.ack(delivery)  # StaleDelivery here would mean a shared lease
            done.append(delivery.body)


def test_threads_sharing_one_instance_each_get_every_message_once(make: MakeTopic) -> None:
    topic = make()
    bodies = [f"m{i}" for i in range(120)]
    for body in bodies:
        topic.publish(body)
    start = threading.Barrier(3)

    def consume(batch: int) -> list[str]:
        start.wait(timeout=10)
        return _drain(topic, batch)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(consume, [1, 2, 5]))

    assert Counter(body for done in results for body in done) == Counter(bodies)
    assert topic.pending() == 0
