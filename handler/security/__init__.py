"""Webhook authentication, checked on the raw request before anything parses it.

``WebhookAuthenticator`` (built from ``WebhookAuthConfig``) accepts a request when any configured
scheme verifies: Standard Webhooks, HMAC-SHA256 (GitHub, Grafana, generic timestamped), bearer
token, basic auth, and on ``/smn`` the SMN message signature. Refusals raise ``Unauthenticated``,
whose reason is safe to return to the caller. Secrets stay ``SecretStr`` and are compared in
constant time.
"""

from __future__ import annotations

from handler.security._common import Unauthenticated
from handler.security.smn_signature import (
    DEFAULT_SMN_CERT_HOSTS,
    CertificateFetcher,
    CertificateFetchError,
    SmnSignatureVerifier,
    fetch_certificate,
    string_to_sign,
)
from handler.security.webhook_auth import (
    WebhookAuthConfig,
    WebhookAuthenticator,
    generate_local_secret,
)

__all__ = [
    "DEFAULT_SMN_CERT_HOSTS",
    "CertificateFetchError",
    "CertificateFetcher",
    "SmnSignatureVerifier",
    "Unauthenticated",
    "WebhookAuthConfig",
    "WebhookAuthenticator",
    "fetch_certificate",
    "generate_local_secret",
    "string_to_sign",
]
