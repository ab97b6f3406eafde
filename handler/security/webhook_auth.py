"""The router's one entry point: ``WebhookAuthenticator.check(path, headers, body)``.

It runs on the raw bytes before any parsing. A request passes when any configured scheme whose
headers it carries verifies; on ``/smn`` (with ``verify_smn``) a request that claims to be an
SMN message must pass the SMN signature check, and that check alone suffices, while any other
request there needs one of the other schemes. With no scheme configured every request is
refused (on ``/smn``, SMN-signed messages still pass while ``verify_smn`` is on); ``disabled``
accepts everything and logs a warning once.

The router authenticates an ``ecs-detach.accepted`` event on ``/smn`` as the route ``poll``: only
an SMN message signed for the jobs topic (``jobs_topic_urn``) or a credential whose routes name
``poll`` may hand it to the poll function; anything else that verifies is ``Forbidden`` there.

Replay window (``replay_window_s``): timestamped forms (Standard Webhooks, generic HMAC, Grafana
with its timestamp header) are refused outside it. Within it a captured request verifies again:
there is no nonce store, as FunctionGraph instances share no memory. Untimed forms (GitHub
style, Grafana without a timestamp header, bearer, basic) have no window; see ``_hmac.py``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from handler.security._common import (
    DEFAULT_SMN_CERT_HOSTS,
    HUAWEI_SMN_SUBJECT,
    REALM,
    Forbidden,
    Refused,
    Scheme,
    Unauthenticated,
)
from handler.security._hmac import GenericHmac, GitHubHmac, GrafanaHmac
from handler.security._scopes import POLL, WebhookCredential, normal_route
from handler.security._smn_trust import load_certificates
from handler.security._standard import StandardWebhooks, signer
from handler.security._tokens import BasicAuth, BearerToken
from handler.security.smn_signature import (
    CertificateFetcher,
    SmnSignatureVerifier,
    fetch_certificate,
    smn_envelope,
)
from handler.support.log import log_event

SMN_SCHEME = "smn-signature"
DISABLED = "disabled"
# What an operator sets; named in refusals and the banner (the settings layer maps them).
SETTINGS_HINT = (
    "set ECS_DETACH_WEBHOOK_BEARER_TOKENS, ECS_DETACH_WEBHOOK_BASIC_CREDENTIALS, "
    "ECS_DETACH_WEBHOOK_HMAC_SECRETS or ECS_DETACH_WEBHOOK_STANDARD_SECRETS "
    "(or ECS_DETACH_WEBHOOK_AUTH_DISABLED=true on a trusted network only)"
)


@dataclass(frozen=True)
class Principal:
    """Who a request proved to be: the scheme that verified it and the credential's identity."""

    scheme: str
    identity: str | None


def _empty(text: str) -> str | None:
    return None if text.strip() else "is empty"


def _not_user_password(text: str) -> str | None:
    user, colon, password = text.partition(":")
    return _empty(text) or (None if user and colon and password else "is not user:password")


def _not_whsec(text: str) -> str | None:
    try:
        signer(SecretStr(text))
    except Exception:  # the library raises several types; none may echo the secret
        return _empty(text) or "is not a whsec_… (base64) secret"
    return None


def _not_rfc4514(text: str) -> str | None:
    try:
        x509.Name.from_rfc4514_string(text)
    except ValueError:
        return f"is not an RFC 4514 name such as {HUAWEI_SMN_SUBJECT}"
    return None


# Each list setting of WebhookAuthConfig → what is wrong with one of its entries (None: nothing).
# A credential is checked on its secret; the answer never echoes it.
_ENTRY_PROBLEMS: dict[str, Callable[[str], str | None]] = {
    "bearer_tokens": _empty,
    "basic_credentials": _not_user_password,
    "hmac_secrets": _empty,
    "standard_webhooks_secrets": _not_whsec,
    "smn_cert_hosts": _empty,
    "smn_cert_subjects": _not_rfc4514,
}


class WebhookAuthConfig(BaseModel):
    """Each secret list takes several entries so a secret can be rotated without downtime; an
    entry is a plain secret (every route) or ``{"secret": …, "routes": […]}`` (see ``_scopes``)."""

    # A validation error must not echo the secrets it was given.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True)

    disabled: bool = False
    bearer_tokens: list[WebhookCredential] = Field(default=[])
    basic_credentials: list[WebhookCredential] = Field(default=[], description='"user:password" pairs')
    hmac_secrets: list[WebhookCredential] = Field(default=[], description="GitHub, Grafana, generic")
    standard_webhooks_secrets: list[WebhookCredential] = Field(default=[], description="whsec_…")
    hmac_require_timestamp: bool = Field(default=False, description="Refuse untimed HMAC forms")
    replay_window_s: int = Field(default=300, gt=0, le=86400)
    smn_cert_hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_SMN_CERT_HOSTS))
    smn_cert_ca_file: Path | None = Field(
        default=None, description="PEM trust anchors for SMN signing certificates (default: _smn_trust)"
    )
    smn_cert_subjects: list[str] = Field(default_factory=lambda: [HUAWEI_SMN_SUBJECT])
    verify_smn: bool = True
    jobs_topic_urn: str | None = Field(
        default=None, description="The jobs topic on SMN: its signed pushes may reach the poll function"
    )

    @field_validator(*_ENTRY_PROBLEMS)
    @classmethod
    def _entries(cls, values: list[Any], info: ValidationInfo) -> list[Any]:
        problem = _ENTRY_PROBLEMS[str(info.field_name)]
        for index, value in enumerate(values):
            text = value.secret.get_secret_value() if isinstance(value, WebhookCredential) else value
            reason = problem(text)
            if reason:
                raise ValueError(f"entry {index} {reason}")
        return values

    @field_validator("smn_cert_ca_file")
    @classmethod
    def _anchors(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                pem = path.read_bytes()
            except OSError as error:
                raise ValueError(f"cannot read {path}: {error.strerror}") from None
            if not load_certificates(pem):
                raise ValueError(f"{path} holds no PEM certificate")
        return path

    @field_validator("smn_cert_subjects")
    @classmethod
    def _some_subject(cls, values: list[str]) -> list[str]:
        if not values:
            raise ValueError(f"at least one subject, such as {HUAWEI_SMN_SUBJECT}")
        return values


def generate_local_secret() -> str:
    """A random secret for the local demo, usable as a bearer token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def _schemes(config: WebhookAuthConfig) -> tuple[Scheme, ...]:
    window = config.replay_window_s
    found: list[Scheme] = []
    if config.bearer_tokens:
        found.append(BearerToken(config.bearer_tokens))
    if config.basic_credentials:
        found.append(BasicAuth(config.basic_credentials))
    if config.standard_webhooks_secrets:
        found.append(StandardWebhooks(config.standard_webhooks_secrets, window_s=window))
    if config.hmac_secrets:
        require = config.hmac_require_timestamp
        for form in (GitHubHmac, GrafanaHmac, GenericHmac):
            found.append(form(config.hmac_secrets, window_s=window, require_timestamp=require))
    return tuple(found)


class WebhookAuthenticator:
    def __init__(
        self,
        config: WebhookAuthConfig,
        *,
        fetch: CertificateFetcher = fetch_certificate,
        clock: Callable[[], float] = time.time,
        trust: Sequence[x509.Certificate] | None = None,
    ) -> None:
        """``trust`` replaces the SMN trust anchors (default: ``smn_cert_ca_file``, else
        ``_smn_trust``)."""
        self._config = config
        self._clock = clock
        self._schemes = _schemes(config)
        if trust is None and config.smn_cert_ca_file is not None:
            trust = load_certificates(config.smn_cert_ca_file.read_bytes())
        self._smn = (
            SmnSignatureVerifier(
                config.smn_cert_hosts,
                fetch=fetch,
                clock=clock,
                trust=trust,
                subjects=config.smn_cert_subjects,
            )
            if config.verify_smn and config.smn_cert_hosts
            else None
        )
        if config.disabled:
            log_event(
                "webhook.auth_disabled",
                level=logging.WARNING,
                warning="webhook authentication is disabled: every request is accepted",
            )

    def check(self, path: str, headers: Mapping[str, str], body: bytes) -> str:
        """The name of the scheme that accepts the request on ``path``; else ``Unauthenticated``
        (no credential verifies) or ``Forbidden`` (one verifies, but may not call ``path``)."""
        return self.authenticate(path, headers, body).scheme

    def authenticate(self, path: str, headers: Mapping[str, str], body: bytes) -> Principal:
        """``check``, with the identity of the credential that verified (None for an SMN
        signature or with authentication disabled: nobody in particular)."""
        if self._config.disabled:
            return Principal(DISABLED, None)
        route = normal_route(path)
        lowered = {name.lower(): value for name, value in headers.items()}
        try:
            return self._check(route, lowered, body)
        except Refused as refused:
            event = "webhook.forbidden" if isinstance(refused, Forbidden) else "webhook.unauthenticated"
            log_event(event, level=logging.WARNING, path=route, reason=refused.reason)
            raise

    def challenge(self, path: str, headers: Mapping[str, str]) -> str:
        """The ``WWW-Authenticate`` value for a 401 on ``path`` (RFC 9110 §11.6.1): a challenge
        for each configured scheme, ``Bearer`` when none is; never a secret."""
        route = normal_route(path)
        found = dict.fromkeys(scheme.challenge for scheme in self._schemes)
        if self._smn is not None and route in ("/smn", POLL):
            found[f'SMN-Signature realm="{REALM}"'] = None
        challenges = list(found) or [f'Bearer realm="{REALM}"']
        sent = {name.lower(): value for name, value in headers.items()}.get("authorization", "")
        if sent.strip().lower().startswith("bearer"):  # RFC 6750 §3.1: a token was sent
            challenges = [f'{c}, error="invalid_token"' if c.startswith("Bearer ") else c for c in challenges]
        return ", ".join(challenges)

    def describe(self) -> str:
        """The configured schemes with counts, for the start-up banner (never a secret)."""
        config = self._config
        if config.disabled:
            return "webhook authentication DISABLED: every request is accepted"
        counts = {
            "bearer": len(config.bearer_tokens),
            "basic": len(config.basic_credentials),
            "hmac (GitHub, Grafana, generic)": len(config.hmac_secrets),
            "standard-webhooks": len(config.standard_webhooks_secrets),
        }
        parts = [f"{name} ×{count}" for name, count in counts.items() if count]
        if self._smn is not None:
            parts.append(f"{SMN_SCHEME} on /smn ({self._smn.host_patterns} certificate host patterns)")
        if not parts:
            return f"webhook authentication: nothing configured, every request is refused; {SETTINGS_HINT}"
        if not self._schemes:
            return f"webhook authentication: {parts[0]} only, every other request is refused; {SETTINGS_HINT}"
        return f"webhook authentication: {', '.join(parts)}; replay window {config.replay_window_s} s"

    def _check(self, route: str, headers: Mapping[str, str], body: bytes) -> Principal:
        if route in ("/smn", POLL) and self._smn is not None:
            envelope = smn_envelope(headers, body)
            if envelope is not None:
                self._smn.verify(envelope)
                if route == POLL and envelope.get("topic_urn") != self._config.jobs_topic_urn:
                    raise Forbidden("only the jobs topic's SMN messages may hand events to the poll function")
                return Principal(SMN_SCHEME, None)
        if not self._schemes:
            if route in ("/smn", POLL) and self._smn is not None:
                raise Unauthenticated(
                    f"/smn accepts signed SMN messages only, no other scheme is configured: {SETTINGS_HINT}"
                )
            raise Unauthenticated(
                f"webhook authentication is not configured, every request is refused: {SETTINGS_HINT}"
            )
        present = [scheme for scheme in self._schemes if scheme.present(headers)]
        if not present:
            expected = "; ".join(dict.fromkeys(scheme.header for scheme in self._schemes))
            raise Unauthenticated(f"no credentials: send one of: {expected}")
        now = self._clock()
        reasons = []
        out_of_scope = False
        for scheme in present:
            try:
                credential = scheme.verify(headers, body, now)
            except Unauthenticated as refused:
                reasons.append(refused.reason)
                continue
            if credential.allows(route):
                return Principal(scheme.name, credential.identity(scheme.name))
            reasons.append(f"this {scheme.name} credential may call {credential.scope()}, not {route}")
            out_of_scope = True
        if out_of_scope:
            raise Forbidden("; ".join(reasons))
        raise Unauthenticated("; ".join(reasons))
