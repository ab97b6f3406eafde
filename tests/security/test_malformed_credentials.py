"""Malformed credentials are refusals (401), never exceptions: non-ASCII bytes in every scheme.

Starlette decodes header values as Latin-1, so a header carries any character up to U+00FF, and
a JSON body any character at all; ``base64.b64decode`` raises ``ValueError`` (not only
``binascii.Error``) on such text.
"""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from handler.security import Unauthenticated, WebhookAuthConfig, WebhookAuthenticator
from tests.security.conftest import anchors, certificate
from tests.security.smn import CERT_URL, Fetcher, notification
from tests.security.support import BODY, NOW, STANDARD, Clock, authenticator

HOSTILE = ["é", "\u00ff" * 8, "dXNlcjpwYXNz\u00e9", "\u2603", "\x00", "=" * 5, "YWJj\u00a0"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("scheme", ["Basic", "Bearer"])
def test_non_ascii_authorization_is_refused(scheme: str, value: str) -> None:
    auth = authenticator(bearer_tokens=["tok-1f3e5a"], basic_credentials=["am:pw-9c1d"])
    with pytest.raises(Unauthenticated):
        auth.check("/alertmanager", {"authorization": f"{scheme} {value}"}, BODY)


@pytest.mark.parametrize("value", HOSTILE)
def test_non_ascii_standard_webhooks_signature_is_refused(value: str) -> None:
    auth = authenticator(standard_webhooks_secrets=[STANDARD[0]])
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(NOW), "webhook-signature": f"v1,{value}"}
    with pytest.raises(Unauthenticated, match="webhook-signature does not match"):
        auth.check("/", headers, BODY)


@pytest.mark.parametrize("value", ["é", "\u00e9" * 8, "\u2603"])
def test_non_ascii_hmac_headers_are_refused(value: str) -> None:
    auth = authenticator(hmac_secrets=["hmac-secret-5e2a"])
    for headers in (
        {"x-hub-signature-256": f"sha256={value}"},
        {"x-grafana-alerting-signature": value, "x-grafana-alerting-timestamp": value},
        {"x-signature": f"sha256={value}", "x-timestamp": value},
    ):
        with pytest.raises(Unauthenticated):
            auth.check("/grafana", headers, BODY)


@pytest.mark.parametrize("value", HOSTILE)
def test_non_ascii_smn_signature_is_refused_before_any_fetch(rsa_key: rsa.RSAPrivateKey, value: str) -> None:
    fetcher = Fetcher({CERT_URL: certificate(rsa_key)})
    auth = WebhookAuthenticator(
        WebhookAuthConfig(bearer_tokens=["tok-1f3e5a"]), fetch=fetcher, clock=Clock(), trust=anchors()
    )
    body = json.dumps({**notification(rsa_key), "signature": value}).encode()
    with pytest.raises(Unauthenticated, match="SMN signature is not base64"):
        auth.check("/smn", {"x-smn-message-type": "Notification"}, body)
    assert fetcher.calls == []
