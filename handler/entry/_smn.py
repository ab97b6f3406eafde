"""Confirm an SMN HTTP(S) subscription by fetching its ``subscribe_url`` — only on allowed hosts.

A forged ``SubscriptionConfirmation`` must not make the function fetch arbitrary URLs (SSRF):
the URL's host must match ``ECS_DETACH_SMN_CONFIRM_HOSTS`` (``*`` stands for one DNS label), and it must
be HTTPS unless the host is a loopback address (the emulator).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from handler.core.validation import FieldError, InvalidInput
from handler.errors import EcsDetachError
from handler.security._common import host_allowed
from handler.support.log import log_event


class ConfirmationFailed(EcsDetachError):
    """SMN did not accept the confirmation (no answer or an error status)."""


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SubscriptionConfirmer:
    def __init__(self, allowed_hosts: Sequence[str], *, timeout: float = 10.0) -> None:
        self._allowed = [pattern.lower() for pattern in allowed_hosts]
        self._timeout = timeout

    def __call__(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
        except ValueError:
            raise InvalidInput(
                "subscription not confirmed", [FieldError("subscribe_url", "is not a URL")]
            ) from None
        if not host_allowed(host, self._allowed):
            raise InvalidInput(
                "subscription not confirmed",
                [FieldError("subscribe_url", f"host {host!r} is not in ECS_DETACH_SMN_CONFIRM_HOSTS")],
            )
        if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(host)):
            raise InvalidInput(
                "subscription not confirmed", [FieldError("subscribe_url", "must be an https URL")]
            )
        try:
            response = httpx.get(url, timeout=self._timeout)
        except httpx.HTTPError as error:
            raise ConfirmationFailed(f"{host}: {type(error).__name__}") from error
        if response.status_code >= 400:
            raise ConfirmationFailed(f"{host} answered HTTP {response.status_code}")
        log_event("smn.subscription_confirmed", host=host)
