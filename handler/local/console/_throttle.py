"""A bound on failed console logins: exponential backoff per user and per client address.

Kept in memory by each instance (several instances behind one address each count their own):
a few failures are free, then each further one makes the key wait twice as long as the last
(1 s, 2 s, 4 s … at most ``MAX_WAIT_S``). While a key waits, a login is answered 429 without
its password being checked, so a wait is never extended by the attempts made during it and an
attacker can fail at most once per wait: no lock lasts longer than ``MAX_WAIT_S`` after its
last failure, and a key forgets its failures ``FORGET_S`` after the last one. A successful
login clears its address's count.

A user's wait does not apply at the addresses they last logged in from (``KNOWN_ADDRESSES``
of them): someone guessing a person's password from elsewhere cannot lock that person out of
the console they are using. An address's own wait applies to everyone at it.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_PER_USER = 5
FREE_PER_ADDRESS = 10
FIRST_WAIT_S = 1.0
MAX_WAIT_S = 300.0
FORGET_S = 900.0
KNOWN_ADDRESSES = 8
MAX_KEYS = 10_000  # users and addresses remembered at most; the oldest are forgotten first


@dataclass
class _Failures:
    count: int
    last_at: float
    until: float  # no login is checked before this


class _Backoff:
    """Failures per key, most recently failed last, at most ``MAX_KEYS``."""

    def __init__(self, free: int) -> None:
        self._free = free
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    def wait_s(self, key: str, now: float) -> float:
        """How long ``key`` must still wait (0: it may try now)."""
        failures = self._current(key, now)
        return 0.0 if failures is None else max(0.0, failures.until - now)

    def fail(self, key: str, now: float) -> int:
        """Count a failure of ``key``; the number of failures it has now."""
        failures = self._current(key, now) or _Failures(0, now, now)
        failures.count += 1
        failures.last_at = now
        beyond = failures.count - self._free
        if beyond > 0:
            failures.until = now + min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** min(beyond - 1, 32))
        self._keys[key] = failures
        self._keys.move_to_end(key)
        while len(self._keys) > MAX_KEYS:
            self._keys.popitem(last=False)
        return failures.count

    def clear(self, key: str) -> None:
        self._keys.pop(key, None)

    def _current(self, key: str, now: float) -> _Failures | None:
        failures = self._keys.get(key)
        if failures is not None and now - failures.last_at > FORGET_S:
            del self._keys[key]
            return None
        return failures


class LoginThrottle:
    """Safe to share between threads (pages are served by several at once)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._users = _Backoff(FREE_PER_USER)
        self._addresses = _Backoff(FREE_PER_ADDRESS)
        self._known: dict[str, OrderedDict[str, None]] = {}  # user → addresses they logged in from

    def retry_after_s(self, user: str | None, address: str | None) -> int:
        """Whole seconds before a login of ``user`` from ``address`` is checked (0: now)."""
        now = self._clock()
        with self._lock:
            wait = self._addresses.wait_s(address, now) if address is not None else 0.0
            if user is not None and address not in self._known.get(user, ()):
                wait = max(wait, self._users.wait_s(user, now))
        return math.ceil(wait)

    def failed(self, user: str | None, address: str | None) -> tuple[int, int]:
        """Count a failed login; the failures of the user and of the address so far."""
        now = self._clock()
        with self._lock:
            by_user = self._users.fail(user, now) if user is not None else 0
            by_address = self._addresses.fail(address, now) if address is not None else 0
        return by_user, by_address

    def succeeded(self, user: str, address: str | None) -> None:
        """A login of ``user`` from ``address`` was right: the address's count is cleared and
        the address is known to be theirs. The user's count is not cleared (whoever guesses
        their password elsewhere gets no new free attempts by their logging in)."""
        if address is None:
            return
        with self._lock:
            self._addresses.clear(address)
            known = self._known.setdefault(user, OrderedDict())
            known[address] = None
            known.move_to_end(address)
            while len(known) > KNOWN_ADDRESSES:
                known.popitem(last=False)
