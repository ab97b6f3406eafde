"""The webhook server as ``up`` runs it (uvicorn, the Starlette app, the router) against clients
that are slow or go away, over real loopback sockets; every test bounded in time."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from handler.entry.runtime import Runtime
from handler.local._serve import BackgroundServer, ServerLimits
from handler.local.http import create_app
from tests.conftest import WEBHOOK_TOKEN
from tests.support import WEB1, WEB1_DATA, seconds_until_cut_off

BODY = json.dumps({"server_id": WEB1, "volume_id": WEB1_DATA, "dry_run": True}).encode()
HEAD = (
    b"POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer " + WEBHOOK_TOKEN.encode() + b"\r\n"
    b"Content-Length: %d\r\n\r\n" % len(BODY)
)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    """Everything the server and the app log, at every level."""
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("", "uvicorn", "uvicorn.error", "ecs_detach")]
    saved = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
    yield handler
    for logger, level in saved:
        logger.removeHandler(handler)
        logger.setLevel(level)


def serve(runtime: Runtime, limits: ServerLimits, *, body_timeout_s: float = 5.0) -> BackgroundServer:
    app = create_app(
        runtime.router, max_body_bytes=runtime.settings.max_body_bytes, body_timeout_s=body_timeout_s
    )
    return BackgroundServer(app, limits=limits)


def connect(server: BackgroundServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def read_all(client: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (5 s at most)."""
    data = b""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            chunk = client.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_a_client_that_leaves_mid_body_is_a_debug_line(runtime: Runtime, records: Records) -> None:
    with serve(runtime, ServerLimits()) as server:
        client = connect(server)
        client.sendall(HEAD + BODY[:10])
        time.sleep(0.2)
        client.close()
        deadline = time.monotonic() + 5
        while not any(getattr(r, "event", "") == "http.client_disconnected" for r in records.records):
            assert time.monotonic() < deadline, "no http.client_disconnected event"
            time.sleep(0.05)
    left = {r.levelno for r in records.records if getattr(r, "event", "") == "http.client_disconnected"}
    assert left == {logging.DEBUG}
    assert not [r for r in records.records if r.levelno >= logging.WARNING]
    assert not [r for r in records.records if r.exc_info]


def test_headers_sent_slowly_are_cut_off_at_the_header_timeout(runtime: Runtime) -> None:
    with serve(runtime, ServerLimits(header_timeout_s=0.5)) as server:
        client = connect(server)
        closed_after = seconds_until_cut_off(client, HEAD)  # one byte every 50 ms
        client.close()
    assert closed_after is not None, "the server waited for the whole head"
    assert 0.4 < closed_after < 3.0


def test_a_body_that_stops_is_answered_408_at_the_body_timeout(runtime: Runtime, emulator: object) -> None:
    with serve(runtime, ServerLimits(), body_timeout_s=0.5) as server:
        client = connect(server)
        started = time.monotonic()
        client.sendall(HEAD + BODY[:10])
        answer = read_all(client)
        took = time.monotonic() - started
        client.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"content-type: application/problem+json" in head.lower()
    assert b"connection: close" in head.lower()
    assert "0.5" in json.loads(body)["detail"]
    assert 0.4 < took < 3.0


def test_connections_over_the_bound_are_answered_503(runtime: Runtime) -> None:
    with serve(runtime, ServerLimits(max_connections=2)) as server, ExitStack() as stack:
        held = [stack.enter_context(connect(server)) for _ in range(2)]
        for client in held:  # each has sent its head and is slow with its body
            client.sendall(HEAD + BODY[:10])
        time.sleep(0.2)
        extra = stack.enter_context(connect(server))
        extra.sendall(HEAD + BODY)
        assert read_all(extra).startswith(b"HTTP/1.1 503 ")
        for client in held:  # the connections within the bound are served
            client.sendall(BODY[10:])
            assert client.recv(65536).startswith(b"HTTP/1.1 2")
