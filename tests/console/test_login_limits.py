"""Failed console logins are bounded per user and per client address: over real loopback HTTP
against the webhook server ``up`` runs (clients at different loopback addresses, 127.0.0.x),
and the backoff itself on a clock that moves only when told to."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from handler.local.console import _throttle
from handler.local.console._throttle import LoginThrottle
from tests.console.conftest import PASSWORDS, Deployment
from tests.support import FakeClock


def client(address: str) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=10)


@pytest.fixture(autouse=True)
def first_wait(monkeypatch: pytest.MonkeyPatch) -> float:
    """A first wait long enough that a loaded machine's slow requests stay within it."""
    monkeypatch.setattr(_throttle, "FIRST_WAIT_S", 3.0)
    return 3.0


def login(at: httpx.Client, deployed: Deployment, user: str, password: str) -> httpx.Response:
    return at.get(f"{deployed.url}/console", auth=(user, password))


def test_guessing_a_users_password_is_slowed_without_locking_them_out(
    deployed: Deployment, records: list[logging.LogRecord], first_wait: float
) -> None:
    with client("127.0.0.1") as own, client("127.0.0.2") as attacker, client("127.0.0.3") as new_place:
        assert login(own, deployed, "alice", PASSWORDS["alice"]).status_code == 200
        guesses = [login(attacker, deployed, "alice", f"guess-{n}").status_code for n in range(6)]
        assert guesses == [401] * 6  # five free, the sixth starts a wait
        held = login(attacker, deployed, "alice", PASSWORDS["alice"])  # even the right one waits
        assert held.status_code == 429
        assert held.headers["retry-after"] == "3"
        assert "too many failed logins: try again in 3 s" in held.text
        assert held.headers["content-security-policy"]
        # alice, where she logged in before, is not locked out by someone guessing elsewhere
        assert login(own, deployed, "alice", PASSWORDS["alice"]).status_code == 200
        assert login(new_place, deployed, "alice", PASSWORDS["alice"]).status_code == 429
        time.sleep(first_wait)  # the wait is bounded: after it, the right password is checked again
        assert login(new_place, deployed, "alice", PASSWORDS["alice"]).status_code == 200
        # another user is not slowed by alice's wait
        assert login(attacker, deployed, "bob", PASSWORDS["bob"]).status_code == 200
    failed = [r for r in records if r.getMessage() == "console.login_failed"]
    assert len(failed) == 6
    assert all(r.levelno == logging.WARNING for r in failed)
    last = failed[-1].__dict__["fields"]
    assert (last["user"], last["client"], last["user_failures"], last["retry_after_s"]) == (
        "alice",
        "127.0.0.2",
        6,
        3,
    )
    assert not any("guess-" in str(r.__dict__) for r in records)  # no password in any record


def test_an_address_that_fails_for_many_names_waits_but_not_who_logged_in_there(
    deployed: Deployment, records: list[logging.LogRecord]
) -> None:
    with client("127.0.0.4") as attacker, client("127.0.0.5") as elsewhere:
        # bob works behind the same address (a proxy, a NAT) as whoever guesses
        assert login(attacker, deployed, "bob", PASSWORDS["bob"]).status_code == 200
        names = ["mallory", "reader", "bob", "root", "admin", "alice", "x", "y", "z", "w", "v"]
        answers = [login(attacker, deployed, name, "wrong-password").status_code for name in names]
        assert answers == [401] * 11  # ten free per address, the eleventh starts a wait
        held = login(attacker, deployed, "reader", PASSWORDS["reader"])
        assert held.status_code == 429
        assert held.headers["retry-after"] == "3"
        bearer = attacker.get(f"{deployed.url}/console", headers={"Authorization": "Bearer guess"})
        assert bearer.status_code == 429  # a guessed token waits as a guessed password does
        assert login(elsewhere, deployed, "reader", PASSWORDS["reader"]).status_code == 200
        assert login(attacker, deployed, "bob", PASSWORDS["bob"]).status_code == 200  # not locked out
        # bob's success cleared nothing: the address still holds who is not known there
        assert login(attacker, deployed, "reader", PASSWORDS["reader"]).status_code == 429
        assert attacker.get(f"{deployed.url}/console").status_code == 401  # asking to log in is free
    failed = [r.__dict__["fields"] for r in records if r.getMessage() == "console.login_failed"]
    assert {f["user"] for f in failed} == {None, "reader", "bob", "alice"}  # unknown names are not logged
    assert not any("mallory" in str(r.__dict__) for r in records)


def test_the_backoff_doubles_up_to_a_bound_and_is_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_throttle, "FIRST_WAIT_S", 1.0)
    clock = FakeClock()
    throttle = LoginThrottle(clock)
    waits = []
    for _ in range(_throttle.FREE_PER_USER + 12):
        throttle.failed("alice", None)
        waits.append(throttle.retry_after_s("alice", None))
        clock.advance(throttle.retry_after_s("alice", None))  # the next attempt comes when allowed
    free = _throttle.FREE_PER_USER
    assert waits[:free] == [0] * free
    assert waits[free : free + 6] == [1, 2, 4, 8, 16, 32]
    assert max(waits) == _throttle.MAX_WAIT_S == waits[-1]  # never longer
    clock.advance(_throttle.FORGET_S + 1)
    throttle.failed("alice", None)
    assert throttle.retry_after_s("alice", None) == 0  # a fresh start


def test_who_is_held_where_and_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_throttle, "FIRST_WAIT_S", 1.0)
    throttle = LoginThrottle(FakeClock())
    shared = "10.0.0.1"  # a proxy, a NAT: alice and bob log in from it
    throttle.succeeded("alice", shared)
    throttle.succeeded("bob", shared)
    for _ in range(_throttle.FREE_PER_ADDRESS + 1):  # someone there guesses names
        throttle.failed(None, shared)
    assert throttle.retry_after_s(None, shared) == 1  # the guesser waits
    assert throttle.retry_after_s("carol", shared) == 1  # so does a user never seen there
    assert throttle.retry_after_s("alice", shared) == 0  # not the people who log in there
    throttle.succeeded("bob", shared)
    assert throttle.retry_after_s(None, shared) == 1  # a success clears nobody's count
    for n in range(_throttle.FREE_PER_USER + 1):  # alice's password guessed from elsewhere
        throttle.failed("alice", f"10.9.0.{n}")
    assert throttle.retry_after_s("alice", "10.0.0.2") == 1  # held where she is not known
    assert throttle.retry_after_s(None, "10.0.0.2") == 0  # (that address itself did nothing)
    assert throttle.retry_after_s("alice", "10.9.0.0") == 1
    assert throttle.retry_after_s("bob", shared) == 0
    # her free failures spent, the address's wait holds her too: a guess at her from an
    # address she is known at is bounded by that address
    assert throttle.retry_after_s("alice", shared) == 1
    for n in range(_throttle.KNOWN_ADDRESSES):  # bob logs in from many places: the oldest is forgotten
        throttle.succeeded("bob", f"10.1.0.{n}")
    assert throttle.retry_after_s("bob", shared) == 1
    monkeypatch.setattr(_throttle, "MAX_KEYS", 3)
    for n in range(5):
        throttle.failed(None, f"10.2.0.{n}")
    assert len(throttle._addresses._keys) == 3
