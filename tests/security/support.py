"""Signers written from each sender's documentation, independent of the code under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from handler.security import WebhookAuthConfig, WebhookAuthenticator

NOW = 1_750_000_000
BODY = b'{"server_id": "1b3c5e7f-0000-4000-8000-00000000aaaa", "volume_id": "2c4d6e8f"}'


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def authenticator(clock: Clock | None = None, **config: Any) -> WebhookAuthenticator:
    return WebhookAuthenticator(WebhookAuthConfig(**config), clock=clock or Clock())


def _hex_mac(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def github(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {"x-hub-signature-256": "sha256=" + _hex_mac(secret, body)}


def grafana(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "x-grafana-alerting-signature": _hex_mac(secret, f"{timestamp}:".encode() + body),
        "x-grafana-alerting-timestamp": str(timestamp),
    }


def grafana_untimed(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {"x-grafana-alerting-signature": _hex_mac(secret, body)}


def generic(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {
        "x-signature": "sha256=" + _hex_mac(secret, f"{timestamp}.".encode() + body),
        "x-timestamp": str(timestamp),
    }


def standard(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"msg_2p7Qx.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": "msg_2p7Qx",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def whsec(seed: str) -> str:
    return "whsec_" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode()


@dataclass(frozen=True)
class Form:
    """A signed form: the config field of its secrets, a signer, and three secrets."""

    scheme: str  # what ``check`` returns
    field: str
    sign: Callable[[str, bytes, int], dict[str, str]]
    timed: bool
    old: str
    new: str
    wrong: str

    def config(self, *secrets: str, **extra: Any) -> dict[str, Any]:
        return {self.field: list(secrets), **extra}


HMAC = ("hmac-old-3f9a1c", "hmac-new-7d2e4b", "hmac-wrong-0c5d8e")
STANDARD = (whsec("old"), whsec("new"), whsec("wrong"))
FORMS = {
    "github": Form("hmac-github", "hmac_secrets", github, False, *HMAC),
    "grafana": Form("hmac-grafana", "hmac_secrets", grafana, True, *HMAC),
    "grafana-untimed": Form("hmac-grafana", "hmac_secrets", grafana_untimed, False, *HMAC),
    "generic": Form("hmac-generic", "hmac_secrets", generic, True, *HMAC),
    "standard": Form("standard-webhooks", "standard_webhooks_secrets", standard, True, *STANDARD),
}
TIMED = {name: form for name, form in FORMS.items() if form.timed}
UNTIMED = {name: form for name, form in FORMS.items() if not form.timed}
