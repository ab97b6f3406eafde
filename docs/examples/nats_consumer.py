"""Consume ecs-detach result events from NATS JetStream with nats-py (the next workflow step).

    python docs/examples/nats_consumer.py nats://127.0.0.1:4222 results [--count N]

The results topic ``results`` is the subject ``ecs-detach.results`` of the work-queue stream
``ecs-detach-results``, read through the durable pull consumer ``results`` (a work-queue stream
allows one consumer per subject, so every consumer of the topic shares that one). Each event
is acknowledged once handled (here: printed); an unacknowledged one comes back after the
consumer's ack wait.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import nats
import nats.errors

parser = argparse.ArgumentParser()
parser.add_argument("url", help="nats://[user:password@]host[:port]")
parser.add_argument("topic", nargs="?", default="results")
parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
args = parser.parse_args()


async def main() -> None:
    client = await nats.connect(args.url)
    subscription = await client.jetstream().pull_subscribe(
        f"ecs-detach.{args.topic}", durable=args.topic, stream=f"ecs-detach-{args.topic}"
    )
    handled = 0
    while not args.count or handled < args.count:
        try:
            messages = await subscription.fetch(10, timeout=5)
        except nats.errors.TimeoutError:
            continue
        for message in messages:
            event = json.loads(message.data)  # a CloudEvent: docs/schema/result-event.schema.json
            print(json.dumps(event), flush=True)
            await message.ack_sync()
            handled += 1
    await client.close()


asyncio.run(main())
