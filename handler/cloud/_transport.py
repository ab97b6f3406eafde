"""The HTTP layer of every cloud client: a client that keeps no cookies, and the transport under
it, an ``httpx`` transport on the standard library's ``http.client``.

``httpx.Client`` files every answer's cookies into a jar, building a ``urllib`` request per
response for ``http.cookiejar``: about 90 µs of a 600 µs call. The cloud APIs authenticate each
request by its own signature, so ``CookielessClient`` keeps none and skips that work.

``KeepAliveTransport`` replaces httpx's default transport (httpcore and h11), which costs about
350 µs of CPU for one small keep-alive request on loopback against about 170 µs for the same
request on ``http.client`` (docs/performance.md, "Signed ECS call CPU"); it also keeps httpcore and
h11 off the cold path (imported by the first request before). Everything above it — the client,
the signing ``httpx.Auth`` flow, requests, responses, content decoding, exceptions — is httpx's.
The cloud APIs need no more than it offers: HTTP/1.1, one request at a time per connection,
bodies of a few KiB read whole.

How it behaves, each as httpx's transport does:

* Connections are kept alive per origin (scheme, host, port) and reused, most recent first; one
  idle longer than ``keepalive_expiry`` (5 s) or that the server has closed or written to while
  idle (its socket is readable) is closed instead of reused. At most ``max_keepalive`` idle ones
  are kept per origin; any number may be in use at once (one per thread).
* A request's ``timeout`` extension (the client's ``httpx.Timeout``) bounds the connect, each
  socket write and each socket read.
* HTTPS verifies the server against certifi's bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``
  (``httpx.create_ssl_context``); the context is built on the first HTTPS request, so a client
  that only ever speaks plain HTTP (the emulator, a loopback proxy) never loads the CA bundle
  (about 30 ms and 1–2 MiB of a cold start).
* Failures are httpx's exceptions: ``ConnectTimeout`` / ``ConnectError`` (nothing was sent),
  ``WriteTimeout`` / ``WriteError``, ``ReadTimeout`` / ``ReadError`` and ``RemoteProtocolError``
  (a broken or closed answer). A connection that failed is closed, never reused. Nothing is tried
  again here: retries are the cloud client's policy (``SignedClient._send``).

With a proxy in the environment (``HTTPS_PROXY`` and the like), the cloud clients use httpx's own
transport instead, which routes through it (``default_transport``).
"""

from __future__ import annotations

import errno
import http.client
import os
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

KEEPALIVE_EXPIRY_S = 5.0
MAX_KEEPALIVE = 20
_DEFAULT_PORTS = {"http": 80, "https": 443}

_Origin = tuple[str, str, int]

# The variables httpx reads for a proxy (either case), when it builds its own transport.
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class _NoCookies(httpx.Cookies):
    """A jar that keeps nothing."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class CookielessClient(httpx.Client):
    """An ``httpx.Client`` that neither stores nor sends cookies."""

    _none = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: Any) -> None:  # httpx.Client.__init__ sets _cookies, not this
        raise TypeError("a CookielessClient keeps no cookies")


def _open_socket(host: str, port: int, timeout: float | None) -> socket.socket:
    """A TCP connection to ``host``, as ``http.client`` makes one, with the name handed to the
    resolver as bytes. ``host`` is the URL's ASCII form (httpx's ``raw_host``, IDNA-encoded
    already); as a ``str``, ``getaddrinfo`` would pass it through the ``idna`` codec, whose
    first use loads ``encodings.idna`` and ``stringprep``: about 0.75 ms and 0.14 MiB of a
    cold start, for a name that is ASCII already."""
    failure: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(
        host.encode("ascii"), port, 0, socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)  # each address in turn, as socket.create_connection
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            _no_delay(sock)
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        return sock
    raise failure or OSError(f"no address for {host}")


def _no_delay(sock: socket.socket) -> None:
    """Requests go out whole, at once (as ``http.client`` sets it); a socket without the option
    is fine."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        if exc.errno != errno.ENOPROTOOPT:
            raise


class _PlainConnection(http.client.HTTPConnection):
    """``HTTPConnection`` whose ``connect`` opens its socket with ``_open_socket``."""

    def connect(self) -> None:
        sys.audit("http.client.connect", self, self.host, self.port)
        self.sock = _open_socket(self.host, self.port, self.timeout)


class _TlsConnection(http.client.HTTPSConnection):
    """``HTTPSConnection`` whose ``connect`` opens its socket with ``_open_socket``, then
    verifies the server with ``context`` (the name it is called by: SNI and the certificate)."""

    def __init__(self, host: str, port: int, *, timeout: float | None, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._tls = context

    def connect(self) -> None:
        sys.audit("http.client.connect", self, self.host, self.port)
        sock = _open_socket(self.host, self.port, self.timeout)
        try:
            self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _closed_while_idle(sock: socket.socket) -> bool:
    """An idle keep-alive socket that is readable has been closed by the server (or holds bytes
    no request asked for): either way it cannot carry the next request."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class KeepAliveTransport(httpx.BaseTransport):
    """An ``httpx`` transport on ``http.client`` with a keep-alive pool per origin (module
    docstring)."""

    def __init__(
        self,
        *,
        keepalive_expiry: float = KEEPALIVE_EXPIRY_S,
        max_keepalive: int = MAX_KEEPALIVE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._expiry = keepalive_expiry
        self._max_keepalive = max_keepalive
        self._clock = clock
        self._idle: dict[_Origin, list[tuple[http.client.HTTPConnection, float]]] = {}
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"the cloud clients speak http and https, not {scheme!r}")
        origin = (scheme, url.raw_host.decode("ascii"), url.port or _DEFAULT_PORTS[scheme])
        timeouts = request.extensions.get("timeout", {})
        body = request.read()
        conn = self._checkout(origin, timeouts.get("connect"))
        try:
            response, data = self._exchange(conn, request, body, timeouts)
        except BaseException:
            conn.close()
            raise
        if response.will_close:
            conn.close()
        else:
            self._checkin(origin, conn)
        return httpx.Response(
            response.status,
            # raw_items, not getheaders: http.client decodes the header block as ISO-8859-1, so its
            # values hold nothing for the email policy's per-header pass to change (a µs a header).
            headers=[
                (name.encode("latin-1"), value.encode("latin-1")) for name, value in response.msg.raw_items()
            ],
            stream=httpx.ByteStream(data),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode("latin-1")},
            request=request,
        )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [conn for conns in self._idle.values() for conn, _ in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    def _checkout(self, origin: _Origin, connect_timeout: float | None) -> http.client.HTTPConnection:
        """An idle connection to ``origin`` still fit to use, else a new one, connected."""
        now = self._clock()
        stale: list[http.client.HTTPConnection] = []
        found = None
        with self._lock:
            if self._closed:
                raise RuntimeError("the transport is closed")
            idle = self._idle.get(origin, [])
            while idle and found is None:
                conn, since = idle.pop()
                if now - since > self._expiry or _closed_while_idle(conn.sock):
                    stale.append(conn)
                else:
                    found = conn
        for conn in stale:
            conn.close()
        return found if found is not None else self._connect(origin, connect_timeout)

    def _checkin(self, origin: _Origin, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if not self._closed and len(idle) < self._max_keepalive:
                idle.append((conn, self._clock()))
                return
        conn.close()

    def _connect(self, origin: _Origin, timeout: float | None) -> http.client.HTTPConnection:
        scheme, host, port = origin
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = _TlsConnection(host, port, timeout=timeout, context=self._context())
        else:
            conn = _PlainConnection(host, port, timeout=timeout)
        try:
            conn.connect()
        except TimeoutError as exc:
            conn.close()
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS handshake or certificate
            conn.close()
            raise httpx.ConnectError(f"connecting to {host}:{port}: {exc}") from exc
        return conn

    def _context(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()
            return self._ssl

    @staticmethod
    def _exchange(
        conn: http.client.HTTPConnection,
        request: httpx.Request,
        body: bytes,
        timeouts: dict[str, float | None],
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """Send ``request`` on ``conn``; the answer, read whole (so ``conn`` is free again)."""
        assert conn.sock is not None  # connected by _checkout
        sock = conn.sock
        chunked = "transfer-encoding" in request.headers
        try:
            sock.settimeout(timeouts.get("write"))
            conn.putrequest(
                request.method,
                request.url.raw_path.decode("ascii"),
                skip_host=True,
                skip_accept_encoding=True,
            )
            for name, value in request.headers.raw:
                conn.putheader(name, value)
            conn.endheaders(body or None, encode_chunked=chunked)
        except ValueError as exc:  # a header http.client refuses to put on the wire
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        except TimeoutError as exc:
            raise httpx.WriteTimeout("sending the request timed out", request=request) from exc
        except OSError as exc:
            raise httpx.WriteError(f"sending the request: {exc}", request=request) from exc
        try:
            sock.settimeout(timeouts.get("read"))
            response = conn.getresponse()
            return response, response.read()
        except TimeoutError as exc:
            raise httpx.ReadTimeout("waiting for the answer timed out", request=request) from exc
        except http.client.HTTPException as exc:  # closed early, bad status line, cut body
            raise httpx.RemoteProtocolError(f"the answer is broken: {exc!r}", request=request) from exc
        except OSError as exc:
            raise httpx.ReadError(f"reading the answer: {exc}", request=request) from exc


def default_transport() -> KeepAliveTransport | None:
    """The transport of a cloud client: ``KeepAliveTransport``, unless the environment names a
    proxy. Then ``None``: ``httpx.Client`` builds its own transport (httpcore) and routes each
    request as httpx documents it (``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY``, ``NO_PROXY``);
    that costs more CPU per call and loads the CA bundle when the client is made."""
    if any(os.environ.get(name) or os.environ.get(name.lower()) for name in PROXY_VARIABLES):
        return None
    return KeepAliveTransport()
