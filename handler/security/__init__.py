"""Webhook authentication, checked on the raw request before anything parses it.

``WebhookAuthenticator`` (built from ``WebhookAuthConfig``) accepts a request when any configured
scheme verifies: Standard Webhooks, HMAC-SHA256 (GitHub, Grafana, generic timestamped), bearer
token, basic auth, and on ``/smn`` the SMN message signature. Refusals raise ``Unauthenticated``,
whose reason is safe to return to the caller. Secrets stay ``SecretStr`` and are compared in
constant time.

Names load on first use: a queue-triggered function never authenticates a webhook, so its cold
start skips ``cryptography`` (the SMN signature) altogether.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from handler.security._common import (
    DEFAULT_SMN_CERT_HOSTS,
    HUAWEI_SMN_SUBJECT,
    Forbidden,
    Refused,
    Unauthenticated,
)
from handler.security._passwords import ConsoleUser, PasswordHashError, check_password, hash_password
from handler.security._scopes import APPROVALS, CONSOLE, POLL, WebhookCredential
from handler.support.lazy import lazy_names

if TYPE_CHECKING:
    from handler.security.smn_signature import (
        CertificateFetcher,
        CertificateFetchError,
        SmnSignatureVerifier,
        fetch_certificate,
        string_to_sign,
    )
    from handler.security.webhook_auth import (
        Principal,
        WebhookAuthConfig,
        WebhookAuthenticator,
        generate_local_secret,
    )

_LAZY = {
    "CertificateFetcher": "smn_signature",
    "CertificateFetchError": "smn_signature",
    "SmnSignatureVerifier": "smn_signature",
    "fetch_certificate": "smn_signature",
    "string_to_sign": "smn_signature",
    "Principal": "webhook_auth",
    "WebhookAuthConfig": "webhook_auth",
    "WebhookAuthenticator": "webhook_auth",
    "generate_local_secret": "webhook_auth",
}


__getattr__ = lazy_names(__name__, _LAZY)

__all__ = [
    "APPROVALS",
    "CONSOLE",
    "DEFAULT_SMN_CERT_HOSTS",
    "HUAWEI_SMN_SUBJECT",
    "POLL",
    "CertificateFetchError",
    "CertificateFetcher",
    "ConsoleUser",
    "Forbidden",
    "PasswordHashError",
    "Principal",
    "Refused",
    "SmnSignatureVerifier",
    "Unauthenticated",
    "WebhookAuthConfig",
    "WebhookAuthenticator",
    "WebhookCredential",
    "check_password",
    "fetch_certificate",
    "generate_local_secret",
    "hash_password",
    "string_to_sign",
]
