"""Who may look at the console and whether a form is theirs, on the authenticator alone."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import pytest

from handler.local.console import _auth
from handler.local.console._auth import TOKEN_TTL_S, ConsoleAuth, Refusal, Viewer
from handler.security import ConsoleUser, WebhookAuthConfig, WebhookAuthenticator, hash_password
from tests.support import FakeClock

DECIDER = {"secret": "tok-decider-0123456789", "routes": ["/console", "/approvals"], "name": "carol"}


def basic(user: str, password: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def auth(*, disabled: bool = False, clock: FakeClock | None = None) -> ConsoleAuth:
    users = [ConsoleUser(name="alice", password_hash=hash_password("pw-alice"), approve=True)]
    config = WebhookAuthConfig(disabled=disabled, bearer_tokens=[DECIDER])
    return ConsoleAuth(
        users, WebhookAuthenticator(config), auth_disabled=disabled, clock=clock or FakeClock()
    )


def test_people_and_credentials() -> None:
    console = auth()
    assert console.viewer(basic("alice", "pw-alice")) == Viewer("alice", can_approve=True)
    assert console.viewer(basic("alice", "nope")) == Refusal(
        401, "the console user name and password are not accepted"
    )
    # a credential naming /console and /approvals decides as its name
    assert console.viewer({"authorization": "Bearer tok-decider-0123456789"}) == Viewer("carol", True)
    for malformed in ("Basic ###", "Basic " + base64.b64encode(b"no-colon").decode(), "Basic //79"):
        refused = console.viewer({"authorization": malformed})
        assert isinstance(refused, Refusal)
        assert refused.status == 401


def test_with_webhook_authentication_disabled_anyone_reads_and_nobody_decides() -> None:
    console = auth(disabled=True)
    assert console.viewer({}) == Viewer(None, can_approve=False)
    assert console.viewer(basic("alice", "pw-alice")) == Viewer("alice", can_approve=True)  # still herself


def test_a_password_checked_once_is_remembered_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    console = auth()
    checks = []
    real = _auth.check_password

    def counting(stored: str, password: str) -> bool:
        checks.append(password)
        return real(stored, password)

    monkeypatch.setattr(_auth, "check_password", counting)
    monkeypatch.setattr(_auth, "_REMEMBERED", 1)
    for _ in range(3):
        assert console.viewer(basic("alice", "pw-alice")) == Viewer("alice", True)
    assert checks == ["pw-alice"]  # one scrypt for three requests
    assert isinstance(console.viewer(basic("alice", "wrong")), Refusal)  # never remembered
    assert isinstance(console.viewer(basic("alice", "wrong")), Refusal)
    assert checks == ["pw-alice", "wrong", "wrong"]


def headers(**more: str) -> Mapping[str, str]:
    return {"host": "console.example:8080", **more}


def test_a_form_must_be_the_viewers_own_from_the_consoles_origin() -> None:
    clock = FakeClock()
    console = auth(clock=clock)
    alice, bob = Viewer("alice", True), Viewer("bob", True)
    token = console.token(alice)
    assert console.form_refused(alice, headers(**{"sec-fetch-site": "same-origin"}), token) is None
    assert console.form_refused(alice, headers(origin="http://console.example:8080"), token) is None
    assert console.form_refused(alice, headers(), token) is None  # an old browser: the token alone
    assert "another site (same-site)" in str(
        console.form_refused(alice, headers(**{"sec-fetch-site": "same-site"}), token)
    )
    assert "another origin" in str(console.form_refused(alice, headers(origin="null"), token))
    assert "not this viewer's" in str(console.form_refused(bob, headers(), token))
    assert "not this viewer's" in str(console.form_refused(alice, headers(), "abc.def"))
    assert "not this viewer's" in str(console.form_refused(alice, headers(), ""))
    clock.advance(TOKEN_TTL_S + 1)
    assert "expired" in str(console.form_refused(alice, headers(), token))
    assert console.form_refused(alice, headers(), console.token(alice)) is None
