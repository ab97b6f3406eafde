"""SDK-HMAC-SHA256 verification as the API gateway does it (docs/cloud-api.md §4.1).

Written apart from the client's signer on purpose (nothing here comes from ``handler``): a bug
shared by signer and verifier would otherwise pass unnoticed. The canonical request is rebuilt
from the request as received: raw path, raw query, the listed headers and the raw body.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote, unquote_plus

from emulator.config import EmulatorCredential

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
REQUIRED_SIGNED = ("host", "x-sdk-date")
SIGNATURE_FAIL = "verify aksk signature fail"


class AuthError(Exception):
    """Why the gateway refuses a request; the message never holds a secret."""


@dataclass(frozen=True)
class ReceivedRequest:
    """A request as it arrived: ASGI ``raw_path``, query bytes, header pairs and body."""

    method: str
    raw_path: bytes
    raw_query: bytes
    headers: Sequence[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header's value (repeated headers joined by ``,``), or None."""
        wanted = name.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in self.headers if k.lower() == wanted]
        return ",".join(values) if values else None


@dataclass(frozen=True)
class Authorization:
    """The parsed ``Authorization`` header."""

    access_key: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str | None) -> Authorization:
    """``SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`` → its three fields."""
    if not value:
        raise AuthError("missing authorization")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise AuthError(f"unsupported authorization algorithm, expected {ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, sep, field_value = part.strip().partition("=")
        if not sep or key in fields:
            raise AuthError("malformed authorization header")
        fields[key] = field_value
    if set(fields) != {"Access", "SignedHeaders", "Signature"} or not all(fields.values()):
        raise AuthError("malformed authorization header")
    names = tuple(name.lower() for name in fields["SignedHeaders"].split(";"))
    return Authorization(fields["Access"], names, fields["Signature"])


def canonical_path(raw_path: bytes) -> str:
    """Decode, re-encode each segment keeping only ``~`` bare, and end with ``/``."""
    decoded = unquote(raw_path.decode("ascii", errors="strict"))
    path = "/".join(quote(segment, safe="~") for segment in decoded.split("/"))
    return path if path.endswith("/") else f"{path}/"


def canonical_query_string(raw_query: bytes) -> str:
    """Decoded pairs sorted by key then value, re-encoded keeping only ``~`` bare."""
    pairs = []
    for item in raw_query.decode("ascii", errors="strict").split("&"):
        if item:
            key, _, value = item.partition("=")
            pairs.append((unquote_plus(key), unquote_plus(value)))
    pairs.sort()
    return "&".join(f"{quote(k, safe='~')}={quote(v, safe='~')}" for k, v in pairs)


def canonical_request(request: ReceivedRequest, signed_headers: Sequence[str]) -> str:
    """The six-line canonical form the signature covers."""
    lines = []
    for name in signed_headers:
        value = request.header(name)
        if value is None:
            raise AuthError(f"signed header {name} is missing from the request")
        lines.append(f"{name}:{value.strip()}\n")
    payload_hash = request.header("x-sdk-content-sha256") or hashlib.sha256(request.body).hexdigest()
    return "\n".join(
        (
            request.method.upper(),
            canonical_path(request.raw_path),
            canonical_query_string(request.raw_query),
            "".join(lines),
            ";".join(signed_headers),
            payload_hash,
        )
    )


def expected_signature(secret_key: str, sdk_date: str, canonical: str) -> str:
    """Hex HMAC-SHA256 of the string to sign."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{sdk_date}\n{digest}"
    return hmac.new(secret_key.encode("utf-8"), string_to_sign.encode("utf-8"), "sha256").hexdigest()


def _check_date(value: str, now: float, max_skew_s: int) -> None:
    try:
        signed_at = datetime.strptime(value, DATE_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        raise AuthError(f"invalid X-Sdk-Date, expected the format {DATE_FORMAT}") from None
    if abs(signed_at.timestamp() - now) > max_skew_s:
        span = f"{max_skew_s // 60} minutes" if max_skew_s % 60 == 0 else f"{max_skew_s} seconds"
        raise AuthError(f"request expired: X-Sdk-Date more than {span} from server time")


def _check_token(request: ReceivedRequest, auth: Authorization, credential: EmulatorCredential) -> None:
    token = request.header("x-security-token")
    if credential.security_token is None:
        if token is not None:
            raise AuthError("X-Security-Token sent with a permanent access key")
        return
    if token is None:
        raise AuthError("missing X-Security-Token for a temporary access key")
    if "x-security-token" not in auth.signed_headers:
        raise AuthError("X-Security-Token must be a signed header")
    if not hmac.compare_digest(token.encode("latin-1"), credential.security_token.encode("utf-8")):
        raise AuthError("invalid security token")


def verify(
    request: ReceivedRequest,
    lookup: Callable[[str], EmulatorCredential | None],
    *,
    now: float,
    max_skew_s: int,
) -> EmulatorCredential:
    """The credential that signed ``request``; ``AuthError`` says why it is refused."""
    auth = parse_authorization(request.header("authorization"))
    credential = lookup(auth.access_key)
    if credential is None:
        raise AuthError("unknown access key")
    if not set(REQUIRED_SIGNED) <= set(auth.signed_headers):
        raise AuthError("SignedHeaders must include host and x-sdk-date")
    sdk_date = request.header("x-sdk-date") or ""
    _check_date(sdk_date, now, max_skew_s)
    _check_token(request, auth, credential)
    try:
        canonical = canonical_request(request, auth.signed_headers)
    except UnicodeDecodeError:
        raise AuthError(SIGNATURE_FAIL) from None
    expected = expected_signature(credential.secret_key, sdk_date, canonical)
    if not hmac.compare_digest(expected.encode("ascii"), auth.signature.encode("latin-1")):
        raise AuthError(SIGNATURE_FAIL)
    return credential
