"""Receive ecs-detach result events pushed over HTTP (a results topic ``https://…``), with the
standard library alone.

    python docs/examples/http_receiver.py [--port 8090] [--count N]
    ECS_DETACH_RESULTS_TOPIC=http://127.0.0.1:8090/ ecs-detach worker ...

Each result event arrives as one POST of a structured CloudEvent (``Content-Type:
application/cloudevents+json``). Answer 2xx once it is handled: ecs-detach tries again on
429, 5xx and no answer, so an event can arrive twice; its ``source`` and ``id`` are the same
each time, so de-duplicate on them. (SMN subscriptions push the same events, wrapped in SMN's
notification: the event is the JSON text in its ``message``.)
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, HTTPServer

parser = argparse.ArgumentParser()
parser.add_argument("--host", default="127.0.0.1")
parser.add_argument("--port", type=int, default=8090, help="0: any free port")
parser.add_argument("--count", type=int, default=0, help="stop after this many events (0: never)")
args = parser.parse_args()
seen: set[tuple[str, str]] = set()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        try:
            event = json.loads(body)  # a CloudEvent: docs/schema/result-event.schema.json
            identity = (event["source"], event["id"])
        except (ValueError, TypeError, KeyError):
            self.send_response(400)
            self.end_headers()
            return
        if identity not in seen:  # a retried delivery is the same event
            seen.add(identity)
            print(json.dumps(event), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *values: object) -> None:
        pass  # keep stdout for the events


server = HTTPServer((args.host, args.port), Receiver)
print(f"listening on http://{args.host}:{server.server_port}/", flush=True)
while not args.count or len(seen) < args.count:
    server.handle_request()
server.server_close()
