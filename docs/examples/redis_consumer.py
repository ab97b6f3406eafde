"""Consume ecs-detach result events from Redis Streams with redis-py (the next workflow step).

    python docs/examples/redis_consumer.py redis://127.0.0.1:6379/0 results [--count N]

The results topic ``results`` is the stream ``ecs-detach:{results}``; its consumers share the
group ``ecs-detach``. A consumer reads new entries, handles each event (here: prints it), then
acknowledges and deletes the entry, as ecs-detach's own consumers do. Entries a crashed
consumer left unacknowledged can be claimed with XAUTOCLAIM (left out to stay minimal).
"""

from __future__ import annotations

import argparse
import json
import socket

import redis

parser = argparse.ArgumentParser()
parser.add_argument("url", help="redis://[[user]:password@]host[:port][/db]")
parser.add_argument("topic", nargs="?", default="results")
parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
args = parser.parse_args()

client = redis.Redis.from_url(args.url, decode_responses=True)
stream, group, me = "ecs-detach:{" + args.topic + "}", "ecs-detach", f"example-{socket.gethostname()}"
try:
    client.xgroup_create(stream, group, id="0", mkstream=True)
except redis.ResponseError as error:
    if "BUSYGROUP" not in str(error):  # the group exists once ecs-detach has opened the topic
        raise

handled = 0
while not args.count or handled < args.count:
    for _, entries in client.xreadgroup(group, me, {stream: ">"}, count=10, block=5000) or []:
        for entry_id, fields in entries:
            event = json.loads(fields["body"])  # a CloudEvent: docs/schema/result-event.schema.json
            print(json.dumps(event), flush=True)
            client.xack(stream, group, entry_id)
            client.xdel(stream, entry_id)
            handled += 1
client.close()
