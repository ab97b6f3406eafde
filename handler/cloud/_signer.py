"""SDK-HMAC-SHA256 request signing, as the official Huawei Cloud SDKs do it (docs/cloud-api.md §4.1).

``sign()`` is a pure function over the parts of a request, so it can be checked against the
published test vectors; ``SignerAuth`` applies it to every httpx request.
"""

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Generator, Iterable
from datetime import datetime
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, unquote

import httpx

from handler.cloud._credentials import Credentials

ALGORITHM = "SDK-HMAC-SHA256"
DATE_HEADER = "X-Sdk-Date"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

# Signed: the host, the content type and every X- header (date, project, token, …). Hop-by-hop
# and transport headers (connection, accept-encoding, user-agent) are left out because proxies
# may rewrite them; the gateway checks only the headers the signature lists.
_ALWAYS_SIGNED = frozenset({"host", "content-type"})


class Signature(NamedTuple):
    """Every intermediate form, so a mismatch with the gateway can be diagnosed."""

    canonical_request: str
    string_to_sign: str
    signed_headers: str
    signature: str
    authorization: str


_UNRESERVED_PATH = re.compile(r"[A-Za-z0-9\-._~/]*")


def canonical_uri(path: str) -> str:
    """Percent-decode, re-encode each segment (``:`` → ``%3A``), and end with ``/``."""
    if _UNRESERVED_PATH.fullmatch(path):  # nothing to decode or encode (ids, versions): as it is
        uri = path
    else:
        uri = "/".join(quote(segment, safe="~") for segment in unquote(path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def encode_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The canonical query of ``pairs``: sorted by key then value, both encoded with only ``~``
    left bare. A request sent with it is signed as it is (``SignerAuth`` rewrites nothing)."""
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in sorted(pairs))


@lru_cache(maxsize=256)
def canonical_query(raw_query: str) -> str:
    """``raw_query`` in the canonical form (``encode_query``). Remembered: a client sends the
    same few queries over and over (``delete_flag=0``, a page of servers), and each is read twice
    per request (once to rewrite the wire query, once to sign it), a tenth of the signing."""
    return encode_query(parse_qsl(raw_query, keep_blank_values=True))


def sign(
    *,
    method: str,
    path: str,
    query: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    access_key: str,
    secret_key: str,
) -> Signature:
    """Sign one request. ``headers`` must already hold ``Host`` and ``X-Sdk-Date``."""
    signed: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if "_" not in lowered and (lowered in _ALWAYS_SIGNED or lowered.startswith("x-")):
            signed[lowered] = value.strip()
    if "host" not in signed or DATE_HEADER.lower() not in signed:
        raise ValueError("the Host and X-Sdk-Date headers must be set before signing")
    names = sorted(signed)
    signed_headers = ";".join(names)
    payload_hash = signed.get("x-sdk-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical_request = "\n".join(
        (
            method.upper(),
            canonical_uri(path),
            canonical_query(query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            signed_headers,
            payload_hash,
        )
    )
    string_to_sign = "\n".join(
        (
            ALGORITHM,
            signed[DATE_HEADER.lower()],
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        )
    )
    signature = hmac.new(secret_key.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()
    authorization = f"{ALGORITHM} Access={access_key}, SignedHeaders={signed_headers}, Signature={signature}"
    return Signature(canonical_request, string_to_sign, signed_headers, signature, authorization)


def sdk_date(now: datetime | None = None) -> str:
    """The ``X-Sdk-Date`` value for ``now`` (an aware datetime; the system clock by default), in UTC."""
    return time.strftime(DATE_FORMAT, now.utctimetuple() if now is not None else time.gmtime())


class SignerAuth(httpx.Auth):
    """Signs every request with AK/SK; adds the project and security-token headers.

    The wire query is rewritten to the canonical form, so what is sent is exactly what was
    signed (the SDK does the same).
    """

    requires_request_body = True

    def __init__(self, credentials: Credentials, *, clock: Callable[[], datetime] | None = None) -> None:
        self._credentials = credentials
        self._clock = clock

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.sign_request(request)
        yield request

    def sign_request(self, request: httpx.Request) -> None:
        creds = self._credentials
        headers = request.headers
        # ``in``, not ``setdefault``: httpx's headers answer a missing key's lookup with KeyError.
        if DATE_HEADER not in headers:  # a date set by the caller is kept
            headers[DATE_HEADER] = sdk_date(self._clock() if self._clock else None)
        if creds.project_id and "X-Project-Id" not in headers:
            headers["X-Project-Id"] = creds.project_id
        if creds.security_token is not None:
            headers["X-Security-Token"] = creds.security_token.get_secret_value()
        raw_query = request.url.query.decode("ascii")
        query = canonical_query(raw_query)
        if query != raw_query:  # send what was signed (re-parsing the URL costs, so only then)
            request.url = request.url.copy_with(query=query.encode("ascii") or None)
        result = sign(
            method=request.method,
            path=request.url.raw_path.split(b"?", 1)[0].decode("ascii"),
            query=query,
            headers=headers.multi_items(),
            body=request.content,
            access_key=creds.access_key,
            secret_key=creds.secret_key.get_secret_value(),
        )
        headers["Authorization"] = result.authorization
