"""The blast radius over a real store: never more than N holders, re-entrant, cheap at any N."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pytest

from handler.guards.blast import MAX_PROBES, BlastRadius
from handler.store import Acquired, SqliteStore, Store
from tests.support import FakeClock

PID = "0123456789abcdef0123456789abcdef"


class Counting(SqliteStore):
    """The SQLite store, counting lock operations and the slots they look at."""

    calls = 0
    probes = 0

    def acquire(self, name: str, owner: str, *, ttl_s: float) -> bool:
        self.calls += 1
        return super().acquire(name, owner, ttl_s=ttl_s)

    def acquire_all(
        self,
        names: Sequence[str],
        owner: str,
        *,
        ttl_s: float,
        slots: Iterable[str] | None = None,
        slot_ttl_s: float = 0.0,
    ) -> Acquired:
        self.calls += 1

        def probed(offered: Iterable[str]) -> Iterator[str]:
            for slot in offered:
                self.probes += 1
                yield slot

        looked = None if slots is None else probed(slots)
        return super().acquire_all(names, owner, ttl_s=ttl_s, slots=looked, slot_ttl_s=slot_ttl_s)

    def release_lock(self, name: str, owner: str) -> bool:
        self.calls += 1
        return super().release_lock(name, owner)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Counting]:
    opened = Counting(str(tmp_path / "store.db"))
    yield opened
    opened.close()


def _radius(store: Counting, limit: int) -> BlastRadius:
    return BlastRadius(store, max_per_window=limit, window_s=60, breaker_failures=3, breaker_window_s=60)


def take(radius: BlastRadius, store: Store, project_id: str, owner: str) -> bool:
    """A detach slot alone, as a detach takes it with its locks (``Guard.acquire``)."""
    slots = radius.slots(project_id, owner)
    return bool(store.acquire_all((), owner, ttl_s=radius.window_s, slots=slots, slot_ttl_s=radius.window_s))


def test_never_more_than_the_limit(store: Counting) -> None:
    radius = _radius(store, 5)
    taken = [owner for owner in (f"alert-{i}" for i in range(20)) if take(radius, store, PID, owner)]
    assert len(taken) == 5
    assert take(radius, store, PID, taken[0])  # re-entrant: its own slot again
    radius.give_back(PID, taken[0])
    assert take(radius, store, PID, "alert-late")  # the slot given back is free for another
    assert not take(radius, store, PID, "alert-later")


def test_taking_and_giving_back_cost_one_store_call_at_any_limit(store: Counting) -> None:
    radius = _radius(store, 10**9)  # a limit this large used to build and scan that many slots
    assert take(radius, store, PID, "alert-1")
    assert (store.calls, store.probes) == (1, 1)
    radius.give_back(PID, "alert-1")
    assert store.calls == 2


def test_a_nearly_full_window_costs_a_bounded_number_of_probes(store: Counting) -> None:
    limit = MAX_PROBES * 2
    radius = _radius(store, limit)
    granted, costs = 0, []
    for i in range(limit * 3):
        before = store.calls, store.probes
        granted += take(radius, store, PID, f"alert-{i}")
        costs.append((store.calls - before[0], store.probes - before[1]))
    assert limit * 0.9 <= granted <= limit  # never more; at worst a little early
    assert {calls for calls, _ in costs} == {1}  # one store call (one SQLite transaction) each
    assert max(probes for _, probes in costs) == MAX_PROBES


def test_the_breaker_opens_when_every_failure_slot_is_held(store: Counting) -> None:
    radius = _radius(store, 10)
    for i in range(2):
        radius.record_failure(PID, f"job-{i}")
    assert not radius.breaker_open(PID)
    radius.record_failure(PID, "job-2")
    assert radius.breaker_open(PID)


def test_an_owner_on_its_second_choice_gives_back_its_own_slot(store: Counting) -> None:
    radius = _radius(store, 2)
    assert take(radius, store, PID, "alert-0")  # its first choice is slot 0
    assert take(radius, store, PID, "alert-2")  # slot 0 is its first choice too: it holds slot 1
    radius.give_back(PID, "alert-2")

    assert store.holder(f"detaches:{PID}:0") == "alert-0"  # the other owner keeps its slot
    assert take(radius, store, PID, "alert-late")  # the slot given back is free
    assert not take(radius, store, PID, "alert-later")


def test_giving_back_without_a_slot_frees_nothing(store: Counting) -> None:
    radius = _radius(store, 2)
    assert take(radius, store, PID, "alert-0")
    assert take(radius, store, PID, "alert-1")
    radius.give_back(PID, "alert-never-took-one")

    assert not take(radius, store, PID, "alert-late")  # the window is still full


def test_failures_past_an_open_breaker_keep_it_open_for_its_window() -> None:
    clock = FakeClock()
    store = SqliteStore(":memory:", clock=clock)
    radius = BlastRadius(store, max_per_window=10, window_s=60, breaker_failures=2, breaker_window_s=60)
    for job in ("job-0", "job-1", "job-2"):  # one more failure than the breaker counts
        radius.record_failure(PID, job)
    assert radius.breaker_open(PID)
    clock.advance(59)
    assert radius.breaker_open(PID)
    clock.advance(2)
    assert not radius.breaker_open(PID)  # the window passed: closed again, nothing lingers
    store.close()


def test_what_is_used_is_counted_per_project_and_lapses_with_the_window() -> None:
    """What the console's safety page shows: slots held now, failures held now, the limits."""
    clock = FakeClock()
    store = SqliteStore(":memory:", clock=clock)
    radius = BlastRadius(store, max_per_window=4, window_s=60, breaker_failures=2, breaker_window_s=120)
    assert radius.limits == (4, 60, 2, 120)
    assert take(radius, store, PID, "alert-0")
    assert take(radius, store, PID, "alert-1")
    assert take(radius, store, PID, "alert-1")  # re-entrant: still one slot
    assert take(radius, store, "another-project", "alert-2")
    radius.record_failure(PID, "job-0")
    assert (radius.used(PID), radius.failures(PID)) == (2, 1)
    assert (radius.used("another-project"), radius.failures("another-project")) == (1, 0)
    radius.give_back(PID, "alert-0")
    assert radius.used(PID) == 1
    clock.advance(61)
    assert (radius.used(PID), radius.failures(PID)) == (0, 1)  # the breaker's window is longer
    clock.advance(60)
    assert radius.failures(PID) == 0
    store.close()


@pytest.mark.parametrize(("max_per_window", "breaker_failures"), [(0, 3), (5, 0)])
def test_a_limit_below_one_is_refused(store: Counting, max_per_window: int, breaker_failures: int) -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        BlastRadius(
            store,
            max_per_window=max_per_window,
            window_s=60,
            breaker_failures=breaker_failures,
            breaker_window_s=60,
        )
