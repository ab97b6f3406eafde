"""Standard Webhooks (standardwebhooks.com): ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The signature is ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` under the decoded
``whsec_…`` secret; the header may list several, space-separated. The ``standardwebhooks``
library computes it (``Webhook.sign``), but its ``verify`` hard-codes a 5-minute tolerance in a
private method, so this module checks the timestamp against our replay window itself and then
compares every ``v1`` signature with ``hmac.compare_digest``: the tolerance is exactly the window.
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone

from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from handler.security._common import REALM, Unauthenticated, fresh_timestamp
from handler.security._scopes import WebhookCredential

_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def signer(secret: SecretStr) -> Webhook:
    """The library's signer for a ``whsec_…`` secret (raises on an empty one)."""
    return Webhook(secret.get_secret_value())


def _signatures(header: str) -> list[bytes]:
    """The decoded ``v1`` signatures of a ``webhook-signature`` header; others are skipped."""
    found = []
    for item in header.split():
        version, _, encoded = item.partition(",")
        if version != "v1":
            continue
        try:
            found.append(base64.b64decode(encoded, validate=True))
        except ValueError:  # binascii.Error, or text that is not ASCII
            continue
    return found


class StandardWebhooks:
    name = "standard-webhooks"
    header = "webhook-id, webhook-timestamp and webhook-signature"
    challenge = f'Standard-Webhooks realm="{REALM}"'

    def __init__(self, secrets: Sequence[WebhookCredential], *, window_s: int) -> None:
        self._signers = tuple((signer(secret.secret), secret) for secret in secrets)
        self._window_s = window_s

    def present(self, headers: Mapping[str, str]) -> bool:
        return any(name in headers for name in _HEADERS)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookCredential:
        if not all(headers.get(name) for name in _HEADERS):
            raise Unauthenticated(f"Standard Webhooks needs all of {', '.join(_HEADERS)}")
        timestamp = headers["webhook-timestamp"]
        fresh_timestamp(timestamp, "webhook-timestamp", self._window_s, now)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise Unauthenticated("a Standard Webhooks body must be UTF-8") from None
        given = _signatures(headers["webhook-signature"])
        when = datetime.fromtimestamp(int(timestamp), timezone.utc)
        for webhook, credential in self._signers:
            expected = base64.b64decode(webhook.sign(headers["webhook-id"], when, text).partition(",")[2])
            if any(hmac.compare_digest(expected, signature) for signature in given):
                return credential
        raise Unauthenticated("webhook-signature does not match the id, timestamp and body")
