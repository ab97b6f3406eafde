"""Races: many callers, one key or one lock, exactly one winner."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import pytest

from handler.store import ClaimState, SqliteStore, Store
from tests.store.conftest import Backend

THREADS = 16
CALLS = 1000


@pytest.mark.parametrize("shared", [True, False], ids=["one-instance", "instance-per-thread"])
def test_one_of_a_thousand_concurrent_begins_is_new(backend: Backend, shared: bool) -> None:
    stores = [backend.make()] * THREADS if shared else [backend.make() for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def race(index: int) -> list[ClaimState]:
        store = stores[index]
        start.wait()
        calls = range(index, CALLS, THREADS)  # 1,000 calls over all threads
        return [store.begin("k", "fp", in_progress_ttl_s=60).state for _ in calls]

    with ThreadPoolExecutor(THREADS) as pool:
        states = Counter(state for result in pool.map(race, range(THREADS)) for state in result)

    assert states == {ClaimState.NEW: 1, ClaimState.IN_PROGRESS: CALLS - 1}


def test_one_of_many_owners_racing_for_a_lock_holds_it(backend: Backend) -> None:
    stores = [backend.make() for _ in range(THREADS)]
    owners = 4  # per thread
    start = threading.Barrier(THREADS)

    def race(index: int) -> list[str]:
        start.wait()
        return [
            f"owner-{index}-{n}"
            for n in range(owners)
            if stores[index].acquire("server:p:s", f"owner-{index}-{n}", ttl_s=60)
        ]

    with ThreadPoolExecutor(THREADS) as pool:
        winners = [owner for result in pool.map(race, range(THREADS)) for owner in result]

    assert len(winners) == 1
    assert stores[0].holder("server:p:s") == winners[0]


def _race_in_process(path: str, calls: int, start: Barrier, results: Any) -> None:
    """One process of the SQLite race: open the (maybe new) file, begin ``calls`` times, lock."""
    store: Store = SqliteStore(path)
    try:
        start.wait(timeout=60)
        states = [store.begin("k", "fp", in_progress_ttl_s=60).state.value for _ in range(calls)]
        won = store.acquire("server:p:s", f"owner-{os.getpid()}", ttl_s=60)
    finally:
        store.close()
    results.put((states, won))


def test_sqlite_processes_race_for_one_key_and_one_lock(tmp_path: Path) -> None:
    processes = 4
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    results = context.Queue()
    path = str(tmp_path / "store.db")
    workers = [
        context.Process(target=_race_in_process, args=(path, CALLS // processes, start, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0

    states = Counter(state for worker_states, _ in outcomes for state in worker_states)
    assert states == {"new": 1, "in_progress": CALLS - 1}
    assert sum(won for _, won in outcomes) == 1
