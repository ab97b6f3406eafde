"""HMAC-SHA256 of the raw body under a shared secret: GitHub, Grafana and a generic timestamped form.

- **GitHub style**: ``X-Hub-Signature-256: sha256=<hex HMAC of the body>``. GitHub signs no time,
  so this form has **no replay window**: a captured request verifies again for as long as its
  secret is configured. ``hmac_require_timestamp`` refuses it (and untimed Grafana requests).
- **Grafana** webhook contact point, "HMAC Signature" options (Grafana 12): the signature is the
  bare hex HMAC-SHA256 of ``{timestamp}:{body}`` when a timestamp header is configured on the
  contact point, else of the body alone. Sources: grafana.com/docs/grafana/latest/alerting/
  configure-notifications/manage-contact-points/integrations/webhook-notifier/ ("The signature
  is calculated as: HMAC(timestamp + ":" + body) … If no timestamp header is specified, the
  signature is calculated just from the request body … sent as a hex-encoded string"; header
  default ``X-Grafana-Alerting-Signature``; the timestamp header has no default name) and
  github.com/grafana/alerting ``http/hmac.go`` (``HMACRoundTripper.sign``: Unix seconds, ``":"``,
  body). That file's default header is ``X-Grafana-Alert-Signature`` while the docs and the
  contact-point form say ``X-Grafana-Alerting-Signature``: both are accepted. Set the contact
  point's timestamp header to ``X-Grafana-Alerting-Timestamp`` to get a replay window.
- **Generic**: ``X-Signature: sha256=<hex>`` over ``{X-Timestamp}.{body}``, ``X-Timestamp`` in
  Unix seconds, both required.

A timestamp is only trusted because the MAC covers it; one outside the window is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence

from handler.security._common import REALM, Unauthenticated, fresh_timestamp, hex_sha256
from handler.security._scopes import WebhookCredential

GRAFANA_SIGNATURE_HEADERS = ("x-grafana-alerting-signature", "x-grafana-alert-signature")
GRAFANA_TIMESTAMP_HEADER = "x-grafana-alerting-timestamp"


def _matching(secrets: Sequence[WebhookCredential], given: bytes, *signed: bytes) -> WebhookCredential | None:
    """The secret under which ``given`` is the HMAC-SHA256 of the concatenated ``signed``."""
    for secret in secrets:
        mac = hmac.new(secret.secret.get_secret_value().encode(), digestmod=hashlib.sha256)
        for part in signed:
            mac.update(part)
        if hmac.compare_digest(mac.digest(), given):
            return secret
    return None


def _prefixed(value: str, header: str) -> bytes:
    if not value.startswith("sha256="):
        raise Unauthenticated(f"{header} must be sha256=<hex>")
    return hex_sha256(value.removeprefix("sha256="), header)


class _HmacScheme:
    # No registered scheme: named for what the sender computes, shared by the three forms.
    challenge = f'HMAC-SHA256 realm="{REALM}"'

    def __init__(
        self, secrets: Sequence[WebhookCredential], *, window_s: int, require_timestamp: bool
    ) -> None:
        self._secrets = tuple(secrets)
        self._window_s = window_s
        self._require_timestamp = require_timestamp


class GitHubHmac(_HmacScheme):
    name = "hmac-github"
    header = "X-Hub-Signature-256"

    def present(self, headers: Mapping[str, str]) -> bool:
        return "x-hub-signature-256" in headers

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookCredential:
        if self._require_timestamp:
            raise Unauthenticated("X-Hub-Signature-256 signs no timestamp, and a timestamp is required")
        given = _prefixed(headers["x-hub-signature-256"], self.header)
        if (found := _matching(self._secrets, given, body)) is None:
            raise Unauthenticated("X-Hub-Signature-256 does not match the body")
        return found


class GrafanaHmac(_HmacScheme):
    name = "hmac-grafana"
    header = "X-Grafana-Alerting-Signature"

    def present(self, headers: Mapping[str, str]) -> bool:
        return any(name in headers for name in GRAFANA_SIGNATURE_HEADERS)

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookCredential:
        value = next(headers[name] for name in GRAFANA_SIGNATURE_HEADERS if name in headers)
        given = hex_sha256(value, self.header)
        timestamp = headers.get(GRAFANA_TIMESTAMP_HEADER)
        if timestamp is None:
            if self._require_timestamp:
                raise Unauthenticated("X-Grafana-Alerting-Timestamp is missing, and a timestamp is required")
            signed: tuple[bytes, ...] = (body,)
        else:
            fresh_timestamp(timestamp, "X-Grafana-Alerting-Timestamp", self._window_s, now)
            signed = (timestamp.encode(), b":", body)
        if (found := _matching(self._secrets, given, *signed)) is None:
            raise Unauthenticated("X-Grafana-Alerting-Signature does not match the timestamp and body")
        return found


class GenericHmac(_HmacScheme):
    name = "hmac-generic"
    header = "X-Signature with X-Timestamp"

    def present(self, headers: Mapping[str, str]) -> bool:
        return "x-signature" in headers

    def verify(self, headers: Mapping[str, str], body: bytes, now: float) -> WebhookCredential:
        timestamp = headers.get("x-timestamp")
        if timestamp is None:
            raise Unauthenticated("X-Timestamp is missing (X-Signature signs {X-Timestamp}.{body})")
        fresh_timestamp(timestamp, "X-Timestamp", self._window_s, now)
        given = _prefixed(headers["x-signature"], "X-Signature")
        if (found := _matching(self._secrets, given, timestamp.encode(), b".", body)) is None:
            raise Unauthenticated("X-Signature does not match the timestamp and body")
        return found
