"""A bound on failed console logins: exponential backoff per user and per client address.

Kept in memory by each instance (several instances behind one address each count their own):
a few failures are free, then each further one makes the key wait twice as long as the last
(1 s, 2 s, 4 s … at most ``MAX_WAIT_S``). While a key waits, a login is answered 429 without
its password being checked, so a wait is never extended by the attempts made during it and an
attacker can fail at most once per wait: no lock lasts longer than ``MAX_WAIT_S`` after its
last failure, and a key forgets its failures ``FORGET_S`` after the last one (a success clears
nothing: where people and a guesser share an address, the people's logins would otherwise
give the guesser new free attempts).

Where a user last logged in from (``KNOWN_ADDRESSES`` addresses) they are not held by their
own wait, so someone guessing their password elsewhere cannot lock them out; nor by the
address's wait while their own failures are within the free ones, so someone guessing other
names from the same address (behind one proxy, a NAT) cannot lock them out either. A guess at
a user from an address where they are known is bounded by that address's wait once the user's
free failures are spent.
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

    def failures(self, key: str, now: float) -> int:
        failures = self._current(key, now)
        return 0 if failures is None else failures.count

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
            known = user is not None and address in self._known.get(user, ())
            waits = [0.0]
            if user is not None and not known:
                waits.append(self._users.wait_s(user, now))
            clean = known and user is not None and self._users.failures(user, now) <= FREE_PER_USER
            if address is not None and not clean:
                waits.append(self._addresses.wait_s(address, now))
        return math.ceil(max(waits))

    def failed(self, user: str | None, address: str | None) -> tuple[int, int]:
        """Count a failed login; the failures of the user and of the address so far."""
        now = self._clock()
        with self._lock:
            by_user = self._users.fail(user, now) if user is not None else 0
            by_address = self._addresses.fail(address, now) if address is not None else 0
        return by_user, by_address

    def succeeded(self, user: str, address: str | None) -> None:
        """A login of ``user`` from ``address`` was right: the address is known to be theirs."""
        if address is None:
            return
        with self._lock:
            known = self._known.setdefault(user, OrderedDict())
            known[address] = None
            known.move_to_end(address)
            while len(known) > KNOWN_ADDRESSES:
                known.popitem(last=False)
