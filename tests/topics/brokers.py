"""The backends of the topic tests: URLs, peeking at dead letters with the raw clients, cleanup,
and a loopback TCP proxy whose connections a test can cut."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import ssl
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import nats
import redis
from nats.js.errors import NotFoundError

LOOPBACK = "127.0.0.1"
PORTS = {"redis": 6379, "nats": 4222, "amqp": 5672}


def reachable(port: int) -> bool:
    try:
        socket.create_connection((LOOPBACK, port), timeout=1).close()
    except OSError:
        return False
    return True


class Backend:
    """How a test reaches one kind of topic; ``name`` is the test's own topic name."""

    kind = ""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path

    def url(self, name: str, port: int | None = None) -> str:
        raise NotImplementedError

    def dead_reason(self, name: str, message_id: str) -> str | None:
        """The reason stored with dead letter ``message_id`` of topic ``name``."""
        raise NotImplementedError

    def cleanup(self, name: str, topics: list[Any]) -> None:
        """Delete what topic ``name`` left on the broker."""


class SqliteBackend(Backend):
    kind = "sqlite"

    def url(self, name: str, port: int | None = None) -> str:
        return f"sqlite:///{self.tmp_path}/topics.db?topic={name}"

    def dead_reason(self, name: str, message_id: str) -> str | None:
        conn = sqlite3.connect(self.tmp_path / "topics.db")
        try:
            (reason,) = conn.execute(
                "SELECT last_error FROM messages WHERE id = ? AND topic = ?", (message_id, name + ".dead")
            ).fetchone()
        finally:
            conn.close()
        return reason  # type: ignore[no-any-return]


class RedisBackend(Backend):
    kind = "redis"

    def url(self, name: str, port: int | None = None) -> str:
        return f"redis://{LOOPBACK}:{port or PORTS['redis']}/0?topic={name}"

    def client(self) -> redis.Redis:
        return redis.Redis(host=LOOPBACK, port=PORTS["redis"], decode_responses=True)

    def dead_reason(self, name: str, message_id: str) -> str | None:
        with self.client() as client:
            for _, fields in client.xrange("ecs-detach:{" + name + "}.dead"):
                if fields["id"] == message_id:
                    return str(fields["reason"])
        return None

    def cleanup(self, name: str, topics: list[Any]) -> None:
        with self.client() as client:
            keys = [
                "ecs-detach:{" + name + "}" + suffix for suffix in ("", ":delayed", ".dead", ".dead:delayed")
            ]
            client.delete(*keys)


class NatsBackend(Backend):
    kind = "nats"

    def url(self, name: str, port: int | None = None) -> str:
        return f"nats://{LOOPBACK}:{port or PORTS['nats']}?topic={name}"

    def dead_reason(self, name: str, message_id: str) -> str | None:
        async def peek() -> str | None:
            client = await nats.connect(f"nats://{LOOPBACK}:{PORTS['nats']}")
            try:
                msg = await client.jetstream().get_last_msg(f"ecs-detach-{name}", f"ecs-detach.{name}.dead")
            finally:
                await client.close()
            headers = msg.headers or {}
            assert headers["Ecs-Detach-Id"] == message_id
            return headers.get("Ecs-Detach-Reason")

        return asyncio.run(peek())

    def cleanup(self, name: str, topics: list[Any]) -> None:
        async def delete() -> None:
            client = await nats.connect(f"nats://{LOOPBACK}:{PORTS['nats']}")
            try:
                with contextlib.suppress(NotFoundError):
                    await client.jetstream().delete_stream(f"ecs-detach-{name}")
            finally:
                await client.close()

        asyncio.run(delete())


class AmqpBackend(Backend):
    kind = "amqp"

    def url(self, name: str, port: int | None = None) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{port or PORTS['amqp']}/?topic={name}"

    def dead_reason(self, name: str, message_id: str) -> str | None:
        """Takes the dead letter and puts it back as it was (a reject would mark it redelivered)."""

        async def peek() -> str | None:
            connection = await aio_pika.connect(host=LOOPBACK, port=PORTS["amqp"])
            try:
                channel = await connection.channel()
                queue = await channel.declare_queue(name + ".dead", durable=True)
                message = await queue.get(timeout=5)
                assert message.message_id == message_id
                copy = aio_pika.Message(
                    message.body,
                    message_id=message.message_id,
                    headers=dict(message.headers),
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await channel.default_exchange.publish(copy, routing_key=name + ".dead")
                await message.ack()
            finally:
                await connection.close()
            reason = message.headers.get("ecs-detach-reason")
            return None if reason is None else str(reason)

        return asyncio.run(peek())

    def cleanup(self, name: str, topics: list[Any]) -> None:
        # Delay queues expire by themselves; those known are deleted here at once.
        delay_queues = {queue for topic in topics for queue in getattr(topic, "_used", ())}

        async def delete() -> None:
            connection = await aio_pika.connect(host=LOOPBACK, port=PORTS["amqp"])
            try:
                channel = await connection.channel()
                for queue in {name, name + ".dead", *delay_queues}:
                    await channel.queue_delete(queue)
            finally:
                await connection.close()

        asyncio.run(delete())


BACKENDS: dict[str, type[Backend]] = {
    backend.kind: backend for backend in (SqliteBackend, RedisBackend, NatsBackend, AmqpBackend)
}


class Proxy:
    """A TCP proxy on loopback to ``port``; ``cut()`` resets every connection made so far.

    With ``tls``, it is the TLS end of the connection: from the first byte, or (``nats_tls``)
    after the server's INFO line, which it marks ``tls_required`` as a NATS server with TLS does.
    """

    def __init__(self, port: int, tls: ssl.SSLContext | None = None, *, nats_tls: bool = False) -> None:
        self._target = (LOOPBACK, port)
        self._tls = tls
        self._nats_tls = nats_tls
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port: int = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cuts = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            try:
                client = self._secure(client, upstream)
            except OSError:  # e.g. a client that does not trust the certificate
                client.close()
                upstream.close()
                continue
            upstream.settimeout(None)
            for sock in (client, upstream):  # no Nagle: small frames would wait 40 ms each
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _secure(self, client: socket.socket, upstream: socket.socket) -> socket.socket:
        if self._tls is None:
            return client
        if self._nats_tls:
            info = upstream.makefile("rb").readline()
            fields = json.loads(info.removeprefix(b"INFO "))
            client.sendall(b"INFO " + json.dumps({**fields, "tls_required": True}).encode() + b"\r\n")
        client.settimeout(5)
        secured = self._tls.wrap_socket(client, server_side=True)
        secured.settimeout(None)
        return secured

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Reset all current connections (RST, as when a network path or a broker node dies)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
            self.cuts += 1
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)  # wakes the pump threads
            sock.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()


@contextlib.contextmanager
def proxy_to(port: int, tls: ssl.SSLContext | None = None, *, nats_tls: bool = False) -> Iterator[Proxy]:
    proxy = Proxy(port, tls, nats_tls=nats_tls)
    try:
        yield proxy
    finally:
        proxy.close()
