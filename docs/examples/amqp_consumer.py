"""Consume ecs-detach result events from RabbitMQ with aio-pika (the next workflow step).

    python docs/examples/amqp_consumer.py amqp://guest:guest@127.0.0.1:5672/ results [--count N]

The results topic ``results`` is the durable queue ``results``. Each event is acknowledged
once handled (here: printed); one left unacknowledged when the connection closes goes back to
the queue. RabbitMQ cannot show a queue's messages without taking them, so this consumer (or
your workflow's) is where the results are read.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import aio_pika

parser = argparse.ArgumentParser()
parser.add_argument("url", help="amqp://user:password@host[:port]/[vhost]")
parser.add_argument("topic", nargs="?", default="results")
parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
args = parser.parse_args()


async def main() -> None:
    connection = await aio_pika.connect_robust(args.url)
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=10)
        queue = await channel.declare_queue(args.topic, durable=True)
        handled = 0
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process():  # acks when the block ends without an error
                    event = json.loads(message.body)  # docs/schema/result-event.schema.json
                    print(json.dumps(event), flush=True)
                handled += 1
                if args.count and handled >= args.count:
                    break


asyncio.run(main())
