"""Who is looking at the console, and whether a form they send is theirs.

A viewer is authenticated by one of:

* a console user (``ECS_DETACH_CONSOLE_USERS``) with HTTP basic auth: the browser's own login
  prompt; their password is checked against its stored hash (scrypt or PBKDF2), and a check that
  succeeded is remembered for the process (by an HMAC of what was sent, never the password), so
  a page's requests do not each cost a scrypt;
* a webhook credential whose routes name ``/console`` (``handler.security``): the same
  authenticator as the webhook, for a proxy that adds a bearer token or a signed header. It may
  decide approvals when its routes name ``/approvals`` too.

A form (approve, deny) carries a token: an HMAC over the viewer's identity and when it was
issued, valid ``TOKEN_TTL_S``; and a POST is refused unless the browser says it comes from a
page of the console's own origin (``Sec-Fetch-Site: same-origin``, else an ``Origin`` naming the
host the request was sent to).

Failed logins are bounded per user and per client address (``LoginThrottle``): past a few,
a login waits, answered 429 with ``Retry-After``, and each failure is logged at WARNING
(without the password, and without a name that is no console user's: it may be a password
typed into the wrong field).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from handler.local.console._throttle import LoginThrottle
from handler.security import (
    APPROVALS,
    CONSOLE,
    ConsoleUser,
    Refused,
    WebhookAuthenticator,
    check_password,
)
from handler.support.log import log_event

REALM = "ecs-detach console"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'
TOKEN_TTL_S = 12 * 3600
_DIGITS = re.compile(r"[0-9]{1,12}")  # when a form's token was issued (Unix seconds)
_REMEMBERED = 256  # successful password checks kept (per process)


@dataclass(frozen=True)
class Viewer:
    """Who is looking: ``identity`` (None with webhook authentication disabled: nobody in
    particular, who may read and not decide) and whether they may decide approvals here."""

    identity: str | None
    can_approve: bool


@dataclass(frozen=True)
class Refusal:
    status: int  # 401, 403, or 429 (too many failed logins)
    reason: str
    retry_after_s: int | None = None  # with 429


def _basic(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """The user and password of ``Authorization: Basic``; None without one or when malformed."""
    kind, _, rest = headers.get("authorization", "").strip().partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        user, colon, password = base64.b64decode(rest.strip(), validate=True).decode().partition(":")
    except (binascii.Error, ValueError):  # not base64, or not UTF-8
        return None
    return (user, password) if colon else None


def _netloc(url: str) -> str | None:
    """The host and port of ``url``; None when it is no URL (``http://[``)."""
    try:
        return urlsplit(url).netloc
    except ValueError:
        return None


class ConsoleAuth:
    def __init__(
        self,
        users: Sequence[ConsoleUser],
        authenticator: WebhookAuthenticator,
        *,
        auth_disabled: bool,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._users = {user.name: user for user in users}
        self._authenticator = authenticator
        self._disabled = auth_disabled
        self._secret = secret or secrets.token_bytes(32)
        self._clock = clock
        self._checked: OrderedDict[bytes, str] = OrderedDict()  # HMAC of what was sent → its hash
        self._lock = threading.Lock()
        self._throttle = LoginThrottle(clock)

    def viewer(self, headers: Mapping[str, str], client: str | None = None) -> Viewer | Refusal:
        """Who sent ``headers`` from the address ``client`` (None when not known)."""
        basic = _basic(headers)
        user = self._users.get(basic[0]) if basic is not None else None
        presented = "authorization" in headers  # a login to check (not the first, bare request)
        if presented:
            wait = self._throttle.retry_after_s(user.name if user is not None else None, client)
            if wait:
                return Refusal(429, f"too many failed logins: try again in {wait} s", wait)
        if user is not None and basic is not None:
            return self._person(user, basic[1], client)
        if self._disabled:
            return Viewer(None, can_approve=False)
        try:
            principal = self._authenticator.authenticate(CONSOLE, headers, b"")
        except Refused as refused:
            if refused.status == 401 and presented:
                self._failed(None, client)
            return Refusal(refused.status, refused.reason)
        try:
            self._authenticator.authenticate(APPROVALS, headers, b"")
        except Refused:
            return Viewer(principal.identity, can_approve=False)
        return Viewer(principal.identity, can_approve=principal.identity is not None)

    def _person(self, user: ConsoleUser, password: str, client: str | None) -> Viewer | Refusal:
        if self._password_ok(user, password):
            self._throttle.succeeded(user.name, client)
            return Viewer(user.name, user.approve)
        self._failed(user.name, client)
        return Refusal(401, "the console user name and password are not accepted")

    def _failed(self, user: str | None, client: str | None) -> None:
        by_user, by_address = self._throttle.failed(user, client)
        log_event(
            "console.login_failed",
            level=logging.WARNING,
            user=user,  # None: no console user of that name, or another credential
            client=client,
            user_failures=by_user,
            address_failures=by_address,
            retry_after_s=self._throttle.retry_after_s(user, client),
        )

    def _password_ok(self, user: ConsoleUser, password: str) -> bool:
        sent = hmac.new(self._secret, f"{user.name}\0{password}".encode(), hashlib.sha256).digest()
        with self._lock:  # pages are served by several threads at once
            if self._checked.get(sent) == user.password_hash:
                self._checked.move_to_end(sent)
                return True
        if not check_password(user.password_hash, password):  # (the scrypt, outside the lock)
            return False
        with self._lock:
            self._checked[sent] = user.password_hash
            while len(self._checked) > _REMEMBERED:
                self._checked.popitem(last=False)
        return True

    # -- forms ---------------------------------------------------------------------------------

    def token(self, viewer: Viewer) -> str:
        """The token a form of ``viewer`` carries."""
        issued = str(int(self._clock()))
        return f"{issued}.{self._sign(viewer, issued)}"

    def _sign(self, viewer: Viewer, issued: str) -> str:
        message = f"console-form\0{viewer.identity or ''}\0{issued}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def form_refused(self, viewer: Viewer, headers: Mapping[str, str], token: str) -> str | None:
        """Why a POST is refused (cross-site, or no valid token of this viewer), or None."""
        site = headers.get("sec-fetch-site")
        if site is not None and site != "same-origin":
            return f"a form sent from another site ({site}) is refused"
        origin = headers.get("origin")
        if site is None and origin is not None and _netloc(origin) != headers.get("host"):
            return "a form sent from another origin is refused"
        issued, _, signature = token.partition(".")
        expected = self._sign(viewer, issued).encode()
        # ASCII digits only (int() takes "٣"; compare_digest refuses a str that is not ASCII)
        if not (_DIGITS.fullmatch(issued) and hmac.compare_digest(signature.encode(), expected)):
            return "the form's token is missing or not this viewer's: reload the page"
        if not 0 <= self._clock() - int(issued) <= TOKEN_TTL_S:
            return "the form's token expired: reload the page"
        return None
