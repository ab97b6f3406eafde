"""A broker ``kill -9`` while delayed messages fall due: every message is still delivered (at
least once) after the broker restarts on the same data, and nothing is left stranded.

Each test starts a broker of its own (tests/faults/brokers.py), never the machine's shared one.
Workload: 200 messages, each a poll continuation that comes back three times after 0.3 s
(``requeue``) before it is done (``ack``); the broker is killed 1 s in, while continuations are
falling due and being requeued, and started again on its data 1 s later.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import aio_pika
import nats
import pytest

from handler.topics import Topic, TopicError, open_topic
from handler.topics.amqp import delay_queue_arguments, delay_queue_name
from tests.faults.brokers import BrokerNode, nats_server, rabbitmq

MESSAGES = 200
ROUNDS = 3
DELAY = 0.3
KILL_AT = 1.0  # s after the start of the run
DOWN = 1.0  # s the broker stays down


def _run_through_a_kill(node: BrokerNode, topic: Topic) -> set[str]:
    """Work every message to its end while the broker is killed and restarted; the numbers of
    the messages that ended."""
    for number in range(MESSAGES):
        topic.publish(f"{number}:{ROUNDS}", delay=DELAY)

    def crash() -> None:
        node.kill()
        time.sleep(DOWN)
        node.start()

    killer = threading.Timer(KILL_AT, crash)
    killer.start()
    done: set[str] = set()
    deadline = time.monotonic() + 35
    try:
        while len(done) < MESSAGES and time.monotonic() < deadline:
            try:
                for delivery in topic.receive(20, wait=0.5):
                    number, rounds = delivery.body.split(":")
                    if int(rounds) > 0:
                        topic.requeue(delivery, f"{number}:{int(rounds) - 1}", delay=DELAY)
                    else:
                        topic.ack(delivery)
                        done.add(number)
            except TopicError:  # the broker is down (or the lease went with it): go on as the worker does
                time.sleep(0.2)
    finally:
        killer.join()
    assert node.kills == 1
    return done


def _drained(topic: Topic) -> None:
    """Duplicates (at least once) may still come: take them until the topic is empty."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        deliveries = topic.receive(50, wait=1.0)
        if not deliveries:
            return
        for delivery in deliveries:
            topic.ack(delivery)


@pytest.mark.slow
def test_rabbitmq_kill_while_delays_fall_due_loses_no_message(tmp_path: Path) -> None:
    with rabbitmq(tmp_path) as node:
        topic = open_topic(node.url("jobs"), default_name="jobs", visibility_timeout=10)
        try:
            done = _run_through_a_kill(node, topic)
            assert sorted(set(map(str, range(MESSAGES))) - done, key=int) == []
            _drained(topic)
            assert topic.pending() == 0
            dead = open_topic(node.url("jobs.dead"), default_name="jobs")
            assert dead.pending() == 0
            dead.close()
        finally:
            topic.close()


@pytest.mark.slow
def test_rabbitmq_kill_just_after_a_wait_queue_is_created_loses_no_message(tmp_path: Path) -> None:
    """RabbitMQ 3.10 brings a quorum queue created less than a second before a crash back empty."""
    with rabbitmq(tmp_path) as node:
        topic = open_topic(node.url("jobs"), default_name="jobs", visibility_timeout=10)
        try:
            published = {topic.publish(f"{number}", delay=1.0) for number in range(20)}
            node.kill()  # within a few ms of the last publish
            node.start()
            received: set[str] = set()
            deadline = time.monotonic() + 20
            while not published <= received and time.monotonic() < deadline:
                try:
                    for delivery in topic.receive(20, wait=0.5):
                        received.add(delivery.message_id)
                        topic.ack(delivery)
                except TopicError:
                    time.sleep(0.2)
            assert len(published - received) == 0
            assert topic.pending() == 0
        finally:
            topic.close()


def _declare_wait_queue(url: str, name: str, ttl_ms: int) -> None:
    """Declare the wait queue as a topic would, with no settling time after it."""

    async def declare() -> None:
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            await channel.declare_queue(name, durable=True)
            queue = delay_queue_name(name, ttl_ms)
            await channel.declare_queue(queue, durable=True, arguments=delay_queue_arguments(name, ttl_ms))
        finally:
            await connection.close()

    asyncio.run(declare())


@pytest.mark.slow
def test_rabbitmq_kill_just_as_a_wait_queue_is_declared_leaves_publishing_working(tmp_path: Path) -> None:
    """A kill within a second of a quorum queue's declaration leaves it declared but without a
    Raft member (RabbitMQ 3.10.8): no leader, publishes never confirmed. The topic moves on to
    the queue's next generation, and an instance opened later starts there."""
    with rabbitmq(tmp_path) as node:
        _declare_wait_queue(f"amqp://guest:guest@127.0.0.1:{node.port}/", "jobs", 500)
        time.sleep(0.2)
        node.kill()
        node.start()
        topic = open_topic(node.url("jobs"), default_name="jobs", visibility_timeout=10)
        later = None
        try:
            started = time.monotonic()
            published = {topic.publish("after the kill", delay=0.5)}
            assert time.monotonic() - started < 20
            later = open_topic(node.url("jobs"), default_name="jobs", visibility_timeout=10)
            started = time.monotonic()
            published.add(later.publish("from an instance opened later", delay=0.5))
            assert time.monotonic() - started < 4  # not the 5 s of a silent queue
            received: set[str] = set()
            deadline = time.monotonic() + 10
            while received != published and time.monotonic() < deadline:
                for delivery in topic.receive(2, wait=1):
                    received.add(delivery.message_id)
                    topic.ack(delivery)
            assert received == published
        finally:
            topic.close()
            if later is not None:
                later.close()


def _stream_messages(port: int, stream: str) -> int:
    """What the stream holds, whether or not a consumer will ever deliver it."""

    async def count() -> int:
        client = await nats.connect(f"nats://127.0.0.1:{port}")
        try:
            return (await client.jetstream().stream_info(stream)).state.messages
        finally:
            await client.close()

    return asyncio.run(count())


@pytest.mark.slow
def test_nats_kill_while_delays_fall_due_loses_and_strands_no_message(tmp_path: Path) -> None:
    with nats_server(tmp_path) as node:
        topic = open_topic(node.url("jobs"), default_name="jobs", visibility_timeout=10)
        try:
            done = _run_through_a_kill(node, topic)
            assert sorted(set(map(str, range(MESSAGES))) - done, key=int) == []
            _drained(topic)
            assert topic.pending() == 0
            # Nothing kept below the consumer's ack floor, never to be delivered again:
            assert _stream_messages(node.port, "ecs-detach-jobs") == 0
        finally:
            topic.close()
