"""Blast radius: at most N detaches per window per project, and a circuit breaker.

Both are kept in the idempotency store with its leases, so every instance of the functions
shares them. A detach takes one of ``max_per_window`` slots of its project for ``window_s``
(a slot is given back when the call did not detach anything). A failed or timed-out job takes
one of ``breaker_failures`` failure slots for ``breaker_window_s``; while all of them are held
the breaker is open and no detach is made in that project. Since at most ``max_per_window``
detaches happen per window, an open breaker means a failure rate of at least
``breaker_failures / max_per_window`` among the recent detaches.

A detach takes its slot with its server and volume locks, in one store call
(``Guard.acquire(locks, slots=radius.slots(...))``: one SQLite transaction). Slots are probed
in an order of the owner's own (seeded by its key): its first choice comes first, so taking
again (re-entrant) and giving back look at one slot in the common case, and concurrent owners
rarely meet. At most ``MAX_PROBES`` detach slots are tried, so the cost
of a detach does not grow with the limit: a window at least ~90 % full may refuse a little
early (never late: there are never more than ``max_per_window`` holders). Failure slots are
counted exactly: the breaker opens when all of them are held, not before.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

from handler.store import Store

MAX_PROBES = 64


class BlastRadius:
    def __init__(
        self,
        store: Store,
        *,
        max_per_window: int,
        window_s: float,
        breaker_failures: int,
        breaker_window_s: float,
    ) -> None:
        if max_per_window < 1 or breaker_failures < 1:
            raise ValueError("max_per_window and breaker_failures must be at least 1")
        self._store = store
        self._max = max_per_window
        self._window_s = window_s
        self._failures = breaker_failures
        self._breaker_window_s = breaker_window_s

    def slots(self, project_id: str, owner: str) -> Iterator[str]:
        """The project's detach slots ``owner`` may take (``Store.acquire_all``; one is held
        for ``window_s``): up to ``MAX_PROBES`` distinct names, in the order of ``owner``, drawn
        as they are asked for: the first one usually settles it, and drawing all of them up
        front (a sample of ``MAX_PROBES``) cost more than the one store call."""
        seed = int.from_bytes(hashlib.blake2b(owner.encode(), digest_size=8).digest(), "big")
        draw = random.Random(seed).randrange  # noqa: S311 (spreading, not secrecy)
        seen: set[int] = set()
        for _ in range(min(self._max, MAX_PROBES)):
            index = draw(self._max)
            while index in seen:
                index = draw(self._max)
            seen.add(index)
            yield f"detaches:{project_id}:{index}"

    @property
    def window_s(self) -> float:
        return self._window_s

    def breaker_open(self, project_id: str) -> bool:
        """Every failure slot is held (checked in order: the first free one ends it)."""
        return all(self._store.holder(f"failures:{project_id}:{i}") for i in range(self._failures))

    def used(self, project_id: str) -> int:
        """How many detach slots of the project's window are held now (one look per slot)."""
        return sum(1 for i in range(self._max) if self._store.holder(f"detaches:{project_id}:{i}"))

    def failures(self, project_id: str) -> int:
        """How many failure slots are held now (all of them: the breaker is open)."""
        return sum(1 for i in range(self._failures) if self._store.holder(f"failures:{project_id}:{i}"))

    @property
    def limits(self) -> tuple[int, float, int, float]:
        """Detaches per window, the window, failures that open the breaker, the breaker's window."""
        return self._max, self._window_s, self._failures, self._breaker_window_s

    def give_back(self, project_id: str, owner: str) -> None:
        """The call detached nothing: its slot is free again."""
        for slot in self.slots(project_id, owner):
            if self._store.release_lock(slot, owner):
                return

    def record_failure(self, project_id: str, owner: str) -> None:
        """A job failed or timed out (a failure slot for the window; none left: already open)."""
        for index in range(self._failures):
            if self._store.acquire(f"failures:{project_id}:{index}", owner, ttl_s=self._breaker_window_s):
                return
