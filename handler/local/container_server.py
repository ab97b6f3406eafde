"""The container's HTTP server: functions-framework's app on gunicorn, with what a slow client may
hold bounded.

    python -m handler.local.container_server            # FUNCTION_TARGET (webhook), PORT (8080)
    python -m handler.local.container_server --target poll --port 8080

``--source`` (``FUNCTION_SOURCE``) defaults to ``handler/local/container.py``, as for
``functions-framework``, whose command still works but without these bounds.

``functions-framework``'s own command runs gunicorn's threaded worker (``gthread``, 4 threads per
core) with no way to set more than the worker and thread counts, and with the request-line limit
turned off. Read against gunicorn 27's source (``workers/gthread.py``, ``config.py``), that
server:

- reads a request's head and body on blocking sockets with no timeout, in a pool thread: a
  client that sends a byte now and then holds its thread for as long as it likes, and a few of
  them hold every thread;
- gives each new connection a pool thread that waits up to 5 s for its first byte: 200 idle
  connections queue real requests behind them for minutes;
- accepts up to ``worker_connections`` (1,000) connections per worker.

``DeadlineWorker`` changes exactly that, from the same settings as ``up``'s server:

- a new connection waits for its first byte in the worker's poller, not in a thread, and is
  closed after ``ECS_DETACH_HTTP_KEEP_ALIVE_S`` if nothing comes (gunicorn's own pending and
  kept-alive timeouts);
- the head (request line and headers) must be complete ``ECS_DETACH_HTTP_HEADER_TIMEOUT_S``
  after a thread took the connection, else the connection is shut down;
- the body must be complete, and the answer sent, ``ECS_DETACH_HTTP_BODY_TIMEOUT_S`` after the
  head: at that deadline the connection's reading side is shut down, the app sees the body end
  early and answers 408 (``container.webhook``); a client that does not read that answer either
  loses the connection ``_WRITE_GRACE_S`` later;
- at most ``ECS_DETACH_HTTP_MAX_CONNECTIONS`` connections at once (``worker_connections``): the
  worker stops accepting at the bound, so the next client waits in the listen backlog instead of
  being answered;
- the request-line limit is gunicorn's default (4,094 bytes) again; headers stay at gunicorn's
  100 fields of 8,190 bytes each.

Deadlines are checked once a second (the worker's loop), so a cut comes up to a second late.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import functions_framework
from functions_framework._http.gunicorn import GunicornApplication
from gunicorn.workers import gthread  # type: ignore[import-untyped]

from handler.settings import Settings

_WRITE_GRACE_S = 5.0
"""After the body deadline, how long the answer (408) may take to leave before the connection
is shut down both ways."""


class DeadlineWorker(gthread.ThreadWorker):  # type: ignore[misc]
    """gunicorn's threaded worker with head and body deadlines (module docstring). The deadlines
    come from the environment, read once per worker (``ECS_DETACH_HTTP_*``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = Settings()
        self._header_timeout_s = settings.http_header_timeout_s
        self._body_timeout_s = settings.http_body_timeout_s
        self._deadlines: dict[int, tuple[float, Any, Any]] = {}  # id(conn): (when, conn, request)
        self._deadlines_lock = threading.Lock()

    def handle(self, conn: Any) -> Any:
        if not conn.initialized and not conn.data_ready and not conn.wait_for_data(0):
            return gthread._DEFER  # nothing sent yet: wait in the poller, not in a pool thread
        self._watch(conn, self._header_timeout_s, None)
        try:
            return super().handle(conn)
        finally:
            with self._deadlines_lock:
                self._deadlines.pop(id(conn), None)

    def handle_request(self, req: Any, conn: Any) -> Any:
        self._watch(conn, self._body_timeout_s, req)  # the head is in: the body's turn
        return super().handle_request(req, conn)

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        self._cut_late_connections()

    def _watch(self, conn: Any, timeout_s: float, req: Any) -> None:
        """``req``: None while the head is awaited, then the request whose body is."""
        with self._deadlines_lock:
            self._deadlines[id(conn)] = (time.monotonic() + timeout_s, conn, req)

    def _cut_late_connections(self) -> None:
        now = time.monotonic()
        with self._deadlines_lock:
            for key, (when, conn, req) in list(self._deadlines.items()):
                if when > now:
                    continue
                body = req is not None
                if body:  # the body ends here for the app; its answer (408) may still leave
                    req.must_close = True  # and says "Connection: close"
                    self._deadlines[key] = (now + _WRITE_GRACE_S, conn, None)
                    how = socket.SHUT_RD
                else:
                    del self._deadlines[key]
                    how = socket.SHUT_RDWR
                phase = "body" if body else "head"
                self.log.debug("Connection from %s past its %s deadline", conn.client, phase)
                with contextlib.suppress(OSError):  # already gone
                    conn.sock.shutdown(how)


def gunicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "worker_class": DeadlineWorker,
        "worker_connections": settings.http_max_connections,
        "keepalive": settings.http_keep_alive_s,
        "limit_request_line": 4094,
        "control_socket_disable": True,  # gunicorn 27's control socket: nothing here uses it
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m handler.local.container_server")
    parser.add_argument("--target", default=os.environ.get("FUNCTION_TARGET", "webhook"))
    source = os.environ.get("FUNCTION_SOURCE", str(Path(__file__).with_name("container.py")))
    parser.add_argument("--source", default=source)
    parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - a container's port
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    args = parser.parse_args(argv)
    app = functions_framework.create_app(args.target, args.source)  # type: ignore[no-untyped-call]
    server = GunicornApplication(  # type: ignore[no-untyped-call]
        app, args.host, args.port, False, **gunicorn_options(Settings())
    )
    server.run()


if __name__ == "__main__":
    main()
