"""The container's server (``python -m handler.local.container_server``: functions-framework's app
on gunicorn with ``DeadlineWorker``) against slow and idle clients: the real server process, real
loopback sockets, every test bounded in time."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from emulator import DEMO_CREDENTIAL
from handler.settings import Settings
from tests.conftest import Emulator
from tests.support import WEB1, WEB1_DATA, seconds_until_cut_off

BODY = json.dumps({"server_id": WEB1, "volume_id": WEB1_DATA, "dry_run": True}).encode()
HEAD = (
    b"POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer token\r\nContent-Length: %d\r\n\r\n" % len(BODY)
)
CHUNKED_HEAD = (
    b"POST / HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer token\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def container_server(tmp_path: Path, emulator: Emulator, **limits: str) -> Iterator[tuple[int, int]]:
    """The server on loopback with ``ECS_DETACH_HTTP_*`` and gunicorn's ``THREADS`` from
    ``limits``; yields its port and its worker's pid once ``/healthz`` answers."""
    port = _free_port()
    db = f"sqlite:///{tmp_path}/topics.db"
    env = {
        # FUNCTION_*: functions-framework's create_app, run in-process by other tests, sets them.
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ECS_DETACH_", "HUAWEICLOUD_SDK_", "FUNCTION_"))
        },
        "ECS_DETACH_ECS_ENDPOINT": emulator.url,
        "ECS_DETACH_JOBS_TOPIC": f"{db}?topic=jobs",
        "ECS_DETACH_RESULTS_TOPIC": f"{db}?topic=results",
        "ECS_DETACH_WEBHOOK_BEARER_TOKENS": json.dumps(["token"]),
        "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIAL.access_key,
        "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIAL.secret_key,
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIAL.project_id,
        **limits,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "handler.local.container_server", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            assert time.monotonic() < deadline, "the container server did not start"
            time.sleep(0.2)
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        assert len(children) == 1, children  # one gunicorn worker
        yield port, int(children[0])
    finally:
        server.terminate()
        server.wait(15)


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def read_all(client: socket.socket, within_s: float = 10.0) -> bytes:
    data = b""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            chunk = client.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
    return data


def open_sockets(pid: int) -> int:
    fds = Path(f"/proc/{pid}/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except FileNotFoundError:
            continue
    return count


def test_the_limits_come_from_the_same_settings_as_up() -> None:
    from handler.local.container_server import DeadlineWorker, gunicorn_options

    options = gunicorn_options(Settings(http_max_connections=7, http_keep_alive_s=3))
    assert options["worker_class"] is DeadlineWorker
    assert options["worker_connections"] == 7
    assert options["keepalive"] == 3
    assert options["limit_request_line"] == 4094  # functions-framework turns it off (0)


def test_headers_sent_slowly_are_cut_off_at_the_header_timeout(tmp_path: Path, emulator: Emulator) -> None:
    with container_server(tmp_path, emulator, ECS_DETACH_HTTP_HEADER_TIMEOUT_S="1") as (port, _):
        client = connect(port)
        closed_after = seconds_until_cut_off(client, HEAD)  # one byte every 50 ms
        client.close()
    assert closed_after is not None, "the server waited for the whole head"
    assert 0.9 < closed_after < 3.5  # the deadline, checked once a second


@pytest.mark.parametrize(
    "sent", [HEAD + BODY[:10], CHUNKED_HEAD + b"a\r\n" + BODY[:10] + b"\r\n"], ids=["length", "chunked"]
)
def test_a_body_that_stops_is_answered_408_at_the_body_timeout(
    tmp_path: Path, emulator: Emulator, sent: bytes
) -> None:
    with container_server(tmp_path, emulator, ECS_DETACH_HTTP_BODY_TIMEOUT_S="1") as (port, _):
        client = connect(port)
        started = time.monotonic()
        client.sendall(sent)
        answer = read_all(client)  # the server closes after answering
        took = time.monotonic() - started
        client.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"content-type: application/problem+json" in head.lower()
    assert b"connection: close" in head.lower()
    assert json.loads(body)["detail"] == "the body did not arrive within 1.0 s"
    assert 0.9 < took < 3.5


def test_malformed_chunked_framing_is_a_400_not_a_500(tmp_path: Path, emulator: Emulator) -> None:
    with container_server(tmp_path, emulator) as (port, _):
        client = connect(port)
        client.sendall(CHUNKED_HEAD + b"zz\r\n{}\r\n0\r\n\r\n")
        answer = client.recv(65536)
        head, _, body = answer.partition(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += client.recv(65536)
        client.close()
    assert head.startswith(b"HTTP/1.1 400 "), answer
    assert json.loads(body)["detail"] == "the chunked body is malformed: InvalidChunkSize"


def test_idle_connections_hold_no_thread(tmp_path: Path, emulator: Emulator) -> None:
    """Stock gunicorn gives each new connection a thread that waits 5 s for a first byte: with
    two threads, 50 silent connections kept a real request waiting about two minutes."""
    with container_server(tmp_path, emulator, THREADS="2") as (port, _), ExitStack() as stack:
        for _ in range(50):
            stack.enter_context(connect(port))
        time.sleep(0.5)
        started = time.monotonic()
        answer = httpx.post(
            f"http://127.0.0.1:{port}/",
            content=BODY,
            headers={"Authorization": "Bearer token", "Content-Type": "application/json"},
            timeout=10,
        )
        took = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    assert answer.json()["records"][0]["status"] == "dry_run"
    assert took < 2.0


@pytest.mark.slow
def test_200_idle_connections_are_held_within_the_bound_then_a_request_is_served(
    tmp_path: Path, emulator: Emulator
) -> None:
    limits = {"ECS_DETACH_HTTP_MAX_CONNECTIONS": "50", "ECS_DETACH_HTTP_KEEP_ALIVE_S": "1"}
    with container_server(tmp_path, emulator, **limits) as (port, worker), ExitStack() as stack:
        baseline = open_sockets(worker)  # the listener
        idle = [stack.enter_context(connect(port)) for _ in range(200)]
        most = 0
        for _ in range(20):  # 2 s: the worker accepts up to the bound, the rest wait in the backlog
            most = max(most, open_sockets(worker) - baseline)
            time.sleep(0.1)
        started = time.monotonic()
        answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
        took = time.monotonic() - started
        closed = 0
        for client in idle:  # the server closed every silent connection it accepted
            client.settimeout(0.01)
            with suppress(TimeoutError, ConnectionResetError):
                closed += client.recv(1) == b""
    assert 0 < most <= 50
    assert answer.status_code == 200
    assert took < 15.0  # four rounds of 50 closed after 1 s each, checked once a second
    assert closed >= 150
