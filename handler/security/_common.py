"""What every scheme shares: the refusal, constant-time comparison and the replay-window check."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from handler.security._scopes import WebhookCredential

from handler.errors import EcsDetachError

_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


# Where SMN signing certificates may be fetched from: each cloud's SMN endpoint, ``*`` standing for
# exactly one DNS label (the region). Kept here, away from the verifier and its cryptography
# import, because the settings need it at every start.
DEFAULT_SMN_CERT_HOSTS = (
    "smn.*.myhuaweicloud.com",
    "smn.*.myhuaweicloud.eu",
    "smn.*.otc.t-systems.com",
    "smn.*.prod-cloud-ocb.orange-business.com",
)


# The subject of the SMN signing certificate Huawei publishes (smn_ug_a9000), issued by its own
# "Huawei Cloud CA".
HUAWEI_SMN_SUBJECT = "CN=Huawei-Cloud-SMN-Meter,O=Huawei,C=CN"

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def host_allowed(host: str, patterns: Sequence[str]) -> bool:
    """Whether ``host`` matches one of ``patterns``, where a ``*`` label stands for exactly one
    DNS label: ``smn.*.myhuaweicloud.com`` matches ``smn.ap-southeast-1.myhuaweicloud.com``, not
    ``smn.obs.ap-southeast-1.myhuaweicloud.com``. Any other character matches itself."""
    labels = host.lower().split(".")
    for pattern in patterns:
        wanted = pattern.strip().lower().split(".")
        if len(wanted) == len(labels) and all(
            label == want or (want == "*" and _LABEL.fullmatch(label) is not None)
            for label, want in zip(labels, wanted, strict=True)
        ):
            return True
    return False


# The protection space named in every ``WWW-Authenticate`` challenge (RFC 9110 §11.5).
REALM = "ecs-detach"


class Refused(EcsDetachError):
    """The request is refused. ``reason`` may be sent to the caller: it never holds a secret
    or an expected signature, only which check failed."""

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unauthenticated(Refused):
    """No credential the request carries verifies (HTTP 401)."""


class Forbidden(Refused):
    """A credential verifies, but it may not call this route (HTTP 403, RFC 9110 §15.5.4:
    sending the same credential again cannot help)."""

    status = 403


class Scheme(Protocol):
    """One way a sender proves itself, checked on the raw body before anything parses it."""

    @property
    def name(self) -> str: ...  # returned by ``WebhookAuthenticator.check`` when it accepts
    @property
    def header(self) -> str: ...  # what the sender must send, for refusal reasons
    @property
    def challenge(self) -> str: ...  # its WWW-Authenticate challenge (RFC 9110 §11.6.1)

    def present(self, headers: Mapping[str, str]) -> bool: ...
    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookCredential:
        """The configured credential the request proves, else ``Unauthenticated``."""


def same(given: bytes, expected: bytes) -> bool:
    """Constant-time equality that hides the expected length too (compares SHA-256 digests)."""
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


def hex_sha256(value: str, header: str) -> bytes:
    """The 32 bytes of a hex HMAC-SHA256 sent in ``header``."""
    if not _HEX_SHA256.fullmatch(value):
        raise Unauthenticated(f"{header} is not a hex HMAC-SHA256")
    return bytes.fromhex(value)


def fresh_timestamp(value: str, header: str, window_s: int, now: float) -> None:
    """Refuse a Unix-seconds timestamp more than ``window_s`` in the past or in the future."""
    if not _UNIX_SECONDS.fullmatch(value):
        raise Unauthenticated(f"{header} must be a Unix time in seconds")
    age = now - int(value)
    if age > window_s:
        raise Unauthenticated(f"{header} is older than the {window_s} s replay window")
    if -age > window_s:
        raise Unauthenticated(f"{header} is more than {window_s} s in the future")
