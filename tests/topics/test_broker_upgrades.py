"""What a broker holds from an earlier ecs-detach, and what a consumer reads off the wire: the
RabbitMQ message properties, a delay queue of the wrong kind, a file-backed NATS consumer."""

from __future__ import annotations

import asyncio

import aio_pika
import nats
import pytest
from nats.js import api

from handler.topics import TopicConfigError
from handler.topics.amqp import CONTENT_TYPE, delay_queue_name
from tests.topics.brokers import LOOPBACK, PORTS, Backend
from tests.topics.conftest import MakeTopic
from tests.topics.test_contract import BODY, only

AMQP = pytest.mark.parametrize("backend", ["amqp"], indirect=True)
NATS = pytest.mark.parametrize("backend", ["nats"], indirect=True)


@AMQP
def test_every_rabbitmq_message_says_what_it_carries_and_is_persistent(
    make: MakeTopic, topic_name: str
) -> None:
    topic = make()
    topic.publish(BODY)
    topic.publish(BODY, delay=0.2)  # comes through the wait queue's dead-lettering
    topic.requeue(only(topic.receive(wait=5)), BODY, delay=0.1)  # a successor copy

    async def read() -> list[aio_pika.abc.AbstractIncomingMessage]:
        connection = await aio_pika.connect(host=LOOPBACK, port=PORTS["amqp"])
        try:
            queue = await (await connection.channel()).declare_queue(topic_name, durable=True)
            messages = []
            while len(messages) < 2:
                message = await queue.get(fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                    continue
                await message.ack()
                messages.append(message)
            return messages
        finally:
            await connection.close()

    messages = asyncio.run(asyncio.wait_for(read(), 10))
    assert [(m.content_type, m.delivery_mode) for m in messages] == [
        (CONTENT_TYPE, aio_pika.DeliveryMode.PERSISTENT)
    ] * 2


@AMQP
def test_a_rabbitmq_delay_queue_of_another_kind_is_refused_with_what_to_do(
    make: MakeTopic, topic_name: str
) -> None:
    wait_queue = delay_queue_name(topic_name, 300)

    async def declare_classic() -> None:
        connection = await aio_pika.connect(host=LOOPBACK, port=PORTS["amqp"])
        try:
            await (await connection.channel()).declare_queue(wait_queue, durable=True)
        finally:
            await connection.close()

    asyncio.run(declare_classic())
    topic = make()
    with pytest.raises(TopicConfigError, match=f"delete_queue {wait_queue} --if-empty"):
        topic.publish(BODY, delay=0.3)
    topic.publish(BODY)  # the topic itself goes on working
    assert only(topic.receive(wait=5)).body == BODY


@NATS
def test_a_file_backed_nats_consumer_of_an_earlier_version_is_replaced_and_loses_nothing(
    make: MakeTopic, backend: Backend, topic_name: str
) -> None:
    make().publish(BODY)  # creates the stream and the (memory) consumer
    stream, subject = f"ecs-detach-{topic_name}", f"ecs-detach.{topic_name}"

    async def as_earlier_versions_made_it() -> None:
        client = await nats.connect(f"nats://{LOOPBACK}:{PORTS['nats']}")
        try:
            js = client.jetstream()
            await js.delete_consumer(stream, topic_name)
            config = api.ConsumerConfig(
                durable_name=topic_name,
                filter_subject=subject,
                ack_policy=api.AckPolicy.EXPLICIT,
                max_deliver=-1,
                max_ack_pending=-1,
            )
            await js.add_consumer(stream, config)
        finally:
            await client.close()

    asyncio.run(as_earlier_versions_made_it())
    topic = make()
    assert topic.pending() == 1
    delivery = only(topic.receive(wait=5))
    assert delivery.body == BODY
    topic.ack(delivery)
    assert topic.pending() == 0
