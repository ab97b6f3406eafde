"""``Authorization: Bearer …`` and ``Authorization: Basic …`` (Alertmanager's ``http_config``).

Neither signs the body nor carries a time, so neither has a replay window: use them over TLS.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

from handler.security._common import REALM, Unauthenticated, same
from handler.security._scopes import WebhookCredential


def _credentials(headers: Mapping[str, str], scheme: str) -> str | None:
    """What follows ``scheme`` in the Authorization header, or None for another scheme."""
    kind, _, rest = headers.get("authorization", "").strip().partition(" ")
    return rest.strip() if kind.lower() == scheme else None


class BearerToken:
    name = "bearer"
    header = "Authorization: Bearer"
    challenge = f'Bearer realm="{REALM}"'  # RFC 6750 §3

    def __init__(self, tokens: Sequence[WebhookCredential]) -> None:
        self._tokens = tuple(tokens)

    def present(self, headers: Mapping[str, str]) -> bool:
        return _credentials(headers, "bearer") is not None

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookCredential:
        given = (_credentials(headers, "bearer") or "").encode()
        for token in self._tokens:
            if same(given, token.secret.get_secret_value().encode()):
                return token
        raise Unauthenticated("the bearer token is not accepted")


class BasicAuth:
    name = "basic"
    header = "Authorization: Basic"
    challenge = f'Basic realm="{REALM}", charset="UTF-8"'  # RFC 7617 §2

    def __init__(self, credentials: Sequence[WebhookCredential]) -> None:
        self._credentials = tuple(credentials)  # "user:password"

    def present(self, headers: Mapping[str, str]) -> bool:
        return _credentials(headers, "basic") is not None

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookCredential:
        try:
            given = base64.b64decode(_credentials(headers, "basic") or "", validate=True)
        except ValueError:  # binascii.Error, or text that is not ASCII
            raise Unauthenticated("Authorization: Basic is not base64 of user:password") from None
        for pair in self._credentials:
            if same(given, pair.secret.get_secret_value().encode()):
                return pair
        raise Unauthenticated("the basic-auth user and password are not accepted")
