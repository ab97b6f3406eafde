"""The cloud clients' HTTP transport (``KeepAliveTransport``, on ``http.client``) against real
servers on loopback that misbehave on purpose: connections kept alive and dropped, answers cut
short or garbled, TLS with and without a trusted certificate, bodies streamed and compressed."""

from __future__ import annotations

import gzip
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from handler.cloud import EcsClient, TransportError
from handler.cloud._transport import KeepAliveTransport
from tests.conftest import DEMO_CREDENTIALS

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

# A connection handler: given the accepted socket and its reader, it serves the connection.
Serve = Callable[[socket.socket, "Reader"], None]


class Reader:
    """Reads requests off a server-side socket: ``request()`` returns one request's head and
    body (by Content-Length or chunked), or ``None`` when the client closed. It reads with
    ``recv``, not a ``makefile`` reader, whose reference would keep the socket open past
    ``close()`` (no FIN, no RST until it is collected)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def _fill(self) -> bool:
        data = self._sock.recv(65536)
        self._buffer += data
        return bool(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            if not self._fill():
                return b""
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line + b"\r\n"

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size and self._fill():
            pass
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def request(self) -> tuple[bytes, bytes] | None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            line = self._line()
            if not line:
                return None
            head += line
        body = b""
        lowered = head.lower()
        if b"transfer-encoding: chunked" in lowered:
            while size := int(self._line().strip(), 16):
                body += self._exactly(size)
                self._line()
            self._line()
        elif b"content-length:" in lowered:
            length = int(lowered.split(b"content-length:")[1].split(b"\r\n")[0])
            body = self._exactly(length)
        return head, body


class Server:
    """A TCP server on loopback, one thread per connection, each served by ``serve``; it counts
    the connections it accepted and keeps every request it read."""

    def __init__(self, serve: Serve, tls: ssl.SSLContext | None = None) -> None:
        self._serve = serve
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.connections = 0
        self.finished = 0  # connections served to their end (the client or the server closed)
        self.requests: list[tuple[bytes, bytes]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(sock,), daemon=True).start()

    def _run(self, sock: socket.socket) -> None:
        try:
            if self._tls is not None:
                sock = self._tls.wrap_socket(sock, server_side=True)
            self._serve(sock, _Recording(sock, self.requests))
        except (OSError, ssl.SSLError):
            pass  # the client went away, or refused the certificate
        finally:
            sock.close()
            self.finished += 1

    def close(self) -> None:
        self._listener.close()


class _Recording(Reader):
    def __init__(self, sock: socket.socket, requests: list[tuple[bytes, bytes]]) -> None:
        super().__init__(sock)
        self._requests = requests

    def request(self) -> tuple[bytes, bytes] | None:
        request = super().request()
        if request is not None:
            self._requests.append(request)
        return request


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(handler: Serve, tls: ssl.SSLContext | None = None) -> Server:
        servers.append(Server(handler, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def keep_alive(answer: bytes = OK) -> Serve:
    def handler(sock: socket.socket, reader: Reader) -> None:
        while reader.request() is not None:
            sock.sendall(answer)

    return handler


def one_answer_then(answer: bytes, then: Callable[[socket.socket], None]) -> Serve:
    def handler(sock: socket.socket, reader: Reader) -> None:
        reader.request()
        sock.sendall(answer)
        then(sock)

    return handler


def client(transport: KeepAliveTransport, timeout: float = 5.0) -> httpx.Client:
    return httpx.Client(transport=transport, timeout=timeout)


def test_connections_are_kept_alive_and_reused(serve: Callable[..., Server]) -> None:
    server = serve(keep_alive())
    with client(KeepAliveTransport()) as http:
        for _ in range(5):
            assert http.get(f"{server.url}/v1/x").json() == {}
    assert (server.connections, len(server.requests)) == (1, 5)


def test_a_connection_the_server_closed_while_idle_is_not_reused(serve: Callable[..., Server]) -> None:
    closed = threading.Event()

    def close(sock: socket.socket) -> None:
        sock.close()
        closed.set()

    server = serve(one_answer_then(OK, close))  # keep-alive answer, then the server hangs up
    with client(KeepAliveTransport()) as http:
        assert http.get(server.url).status_code == 200
        assert closed.wait(5)
        assert http.get(server.url).status_code == 200  # a fresh connection, no error
    assert server.connections == 2


def test_an_idle_connection_expires(serve: Callable[..., Server]) -> None:
    now = [0.0]
    server = serve(keep_alive())
    with client(KeepAliveTransport(keepalive_expiry=5.0, clock=lambda: now[0])) as http:
        http.get(server.url)
        now[0] = 4.0
        http.get(server.url)  # idle 4 s: reused
        assert server.connections == 1
        now[0] = 9.5
        http.get(server.url)  # idle 5.5 s: closed, a new one
    assert server.connections == 2


def test_connection_close_answers_are_not_pooled(serve: Callable[..., Server]) -> None:
    answer = OK.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
    server = serve(one_answer_then(answer, lambda sock: None))
    with client(KeepAliveTransport()) as http:
        for _ in range(3):
            assert http.get(server.url).status_code == 200
    assert server.connections == 3


def test_concurrent_requests_each_get_their_own_connection_and_few_stay_idle(
    serve: Callable[..., Server],
) -> None:
    together = threading.Barrier(4)

    def first_together(sock: socket.socket, reader: Reader) -> None:
        if reader.request() is not None:
            together.wait(5)  # the four first requests are in flight at once
            sock.sendall(OK)
        while reader.request() is not None:
            sock.sendall(OK)

    server = serve(first_together)
    with client(KeepAliveTransport(max_keepalive=2)) as http:
        codes: list[int] = []
        threads = [
            threading.Thread(target=lambda: codes.append(http.get(server.url).status_code)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert codes == [200] * 4
        deadline = time.monotonic() + 5
        while server.finished < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.finished == 2  # two of the four are kept idle, the others closed
        http.get(server.url)  # on one of the two idle connections, not a fifth
    assert server.connections == 4


def test_a_streamed_body_is_sent_chunked_and_a_compressed_answer_decoded(
    serve: Callable[..., Server],
) -> None:
    packed = gzip.compress(b'{"server": "web-1"}')
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
    answer += b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed)
    server = serve(keep_alive(answer))
    with client(KeepAliveTransport()) as http:
        response = http.post(server.url, content=iter([b"first,", b"second"]))
    assert response.json() == {"server": "web-1"}
    assert server.requests[0][1] == b"first,second"


def test_an_answer_cut_short_is_a_protocol_error_and_the_connection_dropped(
    serve: Callable[..., Server],
) -> None:
    cut = b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"partial'
    server = serve(one_answer_then(cut, lambda sock: sock.close()))
    with client(KeepAliveTransport()) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(server.url)


def test_garbage_instead_of_an_answer_is_a_protocol_error(serve: Callable[..., Server]) -> None:
    server = serve(one_answer_then(b"SSH-2.0-OpenSSH_9.6\r\n", lambda sock: sock.close()))
    with client(KeepAliveTransport()) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(server.url)


def test_a_server_that_hangs_up_without_answering(serve: Callable[..., Server]) -> None:
    server = serve(one_answer_then(b"", lambda sock: sock.close()))
    with client(KeepAliveTransport()) as http, pytest.raises(httpx.RemoteProtocolError):
        http.get(server.url)


def test_a_silent_server_is_a_read_timeout(serve: Callable[..., Server]) -> None:
    silent = threading.Event()
    server = serve(one_answer_then(b"", lambda sock: silent.wait(5)))
    with client(KeepAliveTransport(), timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.get(server.url)
    silent.set()


def test_a_header_that_would_split_the_request_is_refused_before_sending(
    serve: Callable[..., Server],
) -> None:
    server = serve(keep_alive())
    request = httpx.Request("GET", server.url, headers={"X-Note": "a"})
    request.headers["X-Note"] = "a\r\nX-Injected: 1"
    with KeepAliveTransport() as transport, pytest.raises(httpx.LocalProtocolError):
        transport.handle_request(request)
    assert server.requests == []


def test_only_http_and_https(serve: Callable[..., Server]) -> None:
    with KeepAliveTransport() as transport, pytest.raises(httpx.UnsupportedProtocol):
        transport.handle_request(httpx.Request("GET", "ftp://127.0.0.1/x"))


def test_https_verifies_the_server_against_the_trusted_certificates(
    serve: Callable[..., Server],
    server_tls: ssl.SSLContext,
    certificate: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = serve(
        keep_alive(b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"job_id": "j"}'), tls=server_tls
    )
    url = f"{server.url}/v1/p/cloudservers/s/detachvolume/v"

    # Not in certifi's bundle: refused before anything is sent, as the cloud client's error.
    with EcsClient(server.url, DEMO_CREDENTIALS) as ecs, pytest.raises(TransportError) as caught:
        ecs.show_job("f" * 32)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    assert not caught.value.timeout
    assert server.requests == []
    refused = server.connections  # one per try of the client's retry policy

    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # trusted (as httpx honours it)
    with client(KeepAliveTransport()) as http:
        assert http.delete(url).json() == {"job_id": "j"}
        assert http.delete(url).status_code == 200
    assert server.connections == refused + 1  # TLS connections are kept alive too


def test_a_closed_transport_keeps_no_connection(serve: Callable[..., Server]) -> None:
    server = serve(keep_alive())
    transport = KeepAliveTransport()
    with client(transport) as http:
        http.get(server.url)
    with pytest.raises(RuntimeError, match="closed"):
        transport.handle_request(httpx.Request("GET", server.url))


def test_a_server_that_resets_the_connection_is_a_read_error(serve: Callable[..., Server]) -> None:
    def reset(sock: socket.socket) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST, not FIN

    server = serve(one_answer_then(b"", reset))
    with client(KeepAliveTransport()) as http, pytest.raises(httpx.ReadError):
        http.get(server.url)


def test_a_server_that_stops_reading_a_large_body_is_a_write_timeout(serve: Callable[..., Server]) -> None:
    stalled = threading.Event()
    server = serve(lambda sock, reader: stalled.wait(5))  # accepts, never reads
    with client(KeepAliveTransport(), timeout=0.3) as http, pytest.raises(httpx.WriteTimeout):
        http.post(server.url, content=b"x" * 32_000_000)
    stalled.set()


def test_a_listener_that_never_accepts_is_a_connect_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=0) as full:
        address = full.getsockname()
        fillers = [socket.socket() for _ in range(3)]
        for filler in fillers:  # fill the accept queue; Linux drops the handshakes beyond it
            filler.setblocking(False)
            filler.connect_ex(address)
        try:
            with client(KeepAliveTransport(), timeout=0.3) as http, pytest.raises(httpx.ConnectTimeout):
                http.get(f"http://127.0.0.1:{address[1]}")
        finally:
            for filler in fillers:
                filler.close()


def test_a_proxy_in_the_environment_carries_the_cloud_calls(
    serve: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = b'{"job_id": "j1", "status": "SUCCESS"}'
    proxy = serve(keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(job), job)))
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with EcsClient("http://ecs.example.invalid", DEMO_CREDENTIALS) as ecs:
        assert ecs.show_job("f" * 32).job_id == "j1"
    ((head, _),) = proxy.requests
    assert head.startswith(b"GET http://ecs.example.invalid/v1/")  # the proxy's absolute form
    assert b"Authorization: SDK-HMAC-SHA256" in head  # signed as for the endpoint itself
