"""The HTTP layer of every cloud client: a client that keeps no cookies, and a transport that
builds its TLS context on the first HTTPS request.

``httpx.Client`` files every answer's cookies into a jar, building a ``urllib`` request per
response for ``http.cookiejar``: about 90 µs of a 600 µs call. The cloud APIs authenticate each
request by its own signature, so ``CookielessClient`` keeps none and skips that work.

``httpx.Client()`` builds its default transport at once, and with it an SSL context that loads
the whole CA bundle (about 30 ms and 1–2 MiB of a cold start). A client that only ever speaks
plain HTTP (the emulator, a loopback proxy) never needs it, and one that speaks HTTPS needs it
only when its first call goes out, which this defers it to.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx


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


class LazyTransport(httpx.BaseTransport):
    """One pooled ``httpx.HTTPTransport`` per scheme, each made when first used."""

    def __init__(self, limits: httpx.Limits | None = None) -> None:
        self._limits = limits or httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self._transports: dict[str, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._for(request.url.scheme).handle_request(request)

    def _for(self, scheme: str) -> httpx.HTTPTransport:
        transport = self._transports.get(scheme)
        if transport is None:
            with self._lock:
                transport = self._transports.get(scheme)
                if transport is None:
                    # Plain HTTP never uses the SSL context, so it needs no CA bundle loaded.
                    verify = scheme == "https"
                    transport = httpx.HTTPTransport(verify=verify, limits=self._limits)
                    self._transports[scheme] = transport
        return transport

    def close(self) -> None:
        with self._lock:
            transports, self._transports = list(self._transports.values()), {}
        for transport in transports:
            transport.close()
