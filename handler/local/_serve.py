"""Run an ASGI app on a real socket in a background thread (loopback servers for `up`, `demo`).

The server bounds what a slow or hostile client can hold (``ServerLimits``): a request's head
must arrive within ``header_timeout_s`` (uvicorn has no such timeout: a client sending its
headers a byte at a time kept its connection as long as it liked), idle kept-alive connections
close after ``keep_alive_s``, and a request on a connection beyond ``max_connections`` is
answered 503. Headers are limited in size by h11 (16 KiB). The body's own deadline is the app's
(``handler.local.http``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from handler.support.log import log_event

if TYPE_CHECKING:
    from handler.settings import Settings


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_s: float = 10.0
    keep_alive_s: int = 5
    max_connections: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            header_timeout_s=settings.http_header_timeout_s,
            keep_alive_s=settings.http_keep_alive_s,
            max_connections=settings.http_max_connections,
        )


class _HeadDeadline(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose next request's head (request line
    and headers) has not arrived ``head_timeout_s`` after the connection opened or the last
    response ended."""

    head_timeout_s: ClassVar[float]
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()  # the next request on a kept-alive connection

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        waiting = self.cycle is None or self.cycle.response_complete  # no request under way
        if waiting and not self.transport.is_closing():
            log_event("http.header_timeout", level=logging.DEBUG, timeout_s=self.head_timeout_s)
            self.transport.close()


class BackgroundServer:
    """A uvicorn server in a daemon thread; ``url`` is known once ``start()`` returns."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, limits: ServerLimits | None = None
    ) -> None:
        """``limits``: what a slow client may hold (the webhook server); None for uvicorn's own
        behaviour (the emulator and the benchmarks, whose clients are ours)."""
        bounds: dict[str, Any] = {}
        if limits is not None:
            bounds = {
                "http": type("H11Protocol", (_HeadDeadline,), {"head_timeout_s": limits.header_timeout_s}),
                "timeout_keep_alive": limits.keep_alive_s,
                # uvicorn counts the connection asking among its open connections.
                "limit_concurrency": limits.max_connections + 1,
            }
        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off", access_log=False, **bounds
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="uvicorn", daemon=True)
        self._host = host
        self.url = ""

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP server on {self._host} did not start")
            time.sleep(0.01)
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://{self._host}:{port}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
