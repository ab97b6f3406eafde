"""What only a real broker shows: a consumer process killed mid-message, and connections cut
mid-stream. Redis, NATS and RabbitMQ each, on loopback."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any

import pytest

from handler.topics import StaleDelivery, TopicError, open_topic
from tests.topics import conftest
from tests.topics.brokers import LOOPBACK, PORTS, Backend, proxy_to
from tests.topics.conftest import MakeTopic, require_broker
from tests.topics.test_contract import BODY, only

BROKERS = pytest.mark.parametrize("backend", ["redis", "nats", "amqp"], indirect=True)


def test_an_unreachable_broker_skips_its_tests_but_fails_them_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.create_server((LOOPBACK, 0)) as probe:
        closed_port = probe.getsockname()[1]
    monkeypatch.setitem(PORTS, "redis", closed_port)
    monkeypatch.setattr(conftest, "_reachable", {})
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=f"no redis broker on 127.0.0.1:{closed_port}"):
        require_broker("redis")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_broker("redis")


def _receive_and_hang(url: str, visibility_timeout: float, received: Any) -> None:
    topic = open_topic(url, default_name="unused", visibility_timeout=visibility_timeout)
    received.put(only(topic.receive(wait=10)).message_id)
    time.sleep(60)  # killed here, lease in hand


@BROKERS
@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")
def test_message_of_a_killed_consumer_is_delivered_again_and_completed_once(
    make: MakeTopic, backend: Backend, topic_name: str
) -> None:
    visibility_timeout = 1.0
    topic = make(visibility_timeout=visibility_timeout)
    message_id = topic.publish(BODY)

    ctx = multiprocessing.get_context("spawn")
    received = ctx.Queue()
    consumer = ctx.Process(
        target=_receive_and_hang, args=(backend.url(topic_name), visibility_timeout, received)
    )
    consumer.start()
    try:
        assert received.get(timeout=30) == message_id
    finally:
        assert consumer.pid is not None
        os.kill(consumer.pid, signal.SIGKILL)
        consumer.join(timeout=10)
    assert consumer.exitcode == -signal.SIGKILL

    # Redis and NATS hand it out again once the lease ends; RabbitMQ as soon as the
    # connection of the dead process closes.
    redelivered = only(topic.receive(wait=10))
    assert (redelivered.message_id, redelivered.body) == (message_id, BODY)
    assert redelivered.deliveries == 2
    topic.ack(redelivered)
    assert topic.pending() == 0
    assert topic.receive(wait=0.5) == []  # done once: it does not come back
    assert make(".dead").pending() == 0


@BROKERS
@pytest.mark.slow
def test_consumer_reconnects_after_its_connections_are_cut_and_loses_nothing(
    make: MakeTopic, backend: Backend
) -> None:
    publisher = make()
    bodies = [f"m{i}" for i in range(200)]
    for body in bodies:
        publisher.publish(body)

    acked: Counter[str] = Counter()
    with proxy_to(PORTS[backend.kind]) as proxy:
        consumer = make(port=proxy.port, visibility_timeout=3)
        deadline = time.monotonic() + 30
        while len(acked) < len(bodies) and time.monotonic() < deadline:
            try:
                deliveries = consumer.receive(10, wait=0.5)
            except TopicError:  # while the broker is out of reach, as the worker does
                time.sleep(0.1)
                continue
            for index, delivery in enumerate(deliveries):
                if proxy.cuts < 2 and len(acked) >= 70 * (proxy.cuts + 1) and index == len(deliveries) // 2:
                    proxy.cut()  # with half the batch settled and half in hand
                    time.sleep(0.3)
                try:
                    consumer.ack(delivery)
                except (StaleDelivery, TopicError):
                    continue  # not acked: the broker hands it out again
                acked[delivery.body] += 1
        assert proxy.cuts == 2

    assert set(acked) == set(bodies)
    assert set(acked.values()) == {1}
    assert publisher.pending() == 0
