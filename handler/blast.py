"""Blast radius: at most N detaches per window per project, and a circuit breaker.

Both are kept in the idempotency store with its leases, so every instance of the functions
shares them. A detach takes one of ``max_per_window`` slots of its project for ``window_s``
(a slot is given back when the call did not detach anything). A failed or timed-out job takes
one of ``breaker_failures`` failure slots for ``breaker_window_s``; while all of them are held
the breaker is open and no detach is made in that project. Since at most ``max_per_window``
detaches happen per window, an open breaker means a failure rate of at least
``breaker_failures / max_per_window`` among the recent detaches.
"""

from __future__ import annotations

from handler.store import Store


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

    def _slots(self, kind: str, project_id: str, count: int) -> list[str]:
        return [f"{kind}:{project_id}:{i}" for i in range(count)]

    def breaker_open(self, project_id: str) -> bool:
        return all(self._store.holder(slot) for slot in self._slots("failures", project_id, self._failures))

    def take(self, project_id: str, owner: str) -> bool:
        """One detach slot for ``owner`` (re-entrant), or False when the window is full."""
        return any(
            self._store.acquire(slot, owner, ttl_s=self._window_s)
            for slot in self._slots("detaches", project_id, self._max)
        )

    def give_back(self, project_id: str, owner: str) -> None:
        """The call detached nothing: its slot is free again."""
        for slot in self._slots("detaches", project_id, self._max):
            self._store.release_lock(slot, owner)

    def record_failure(self, project_id: str, owner: str) -> None:
        """A job failed or timed out (a failure slot for the window; none left: already open)."""
        for slot in self._slots("failures", project_id, self._failures):
            if self._store.acquire(slot, owner, ttl_s=self._breaker_window_s):
                return
