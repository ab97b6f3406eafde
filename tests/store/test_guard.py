"""``Guard.in_memory()``: the guard a one-off tool passes by name when it wants no shared store."""

from __future__ import annotations

from handler.core.models import DetachRequest
from handler.guards.idempotency import Guard, request_key
from handler.store import ClaimState
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS

REQUEST = DetachRequest(server_id=WEB1, volume_id=WEB1_DATA)
KEY = request_key(REQUEST, PID)


def test_an_in_memory_guard_answers_duplicates_within_its_process() -> None:
    guard = Guard.in_memory()
    assert guard.claim(KEY, REQUEST, PID).state is ClaimState.NEW
    guard.complete(KEY, {"outcome": "accepted", "job_id": "0" * 32})

    again = guard.claim(KEY, REQUEST, PID)
    assert (again.state, again.record) == (ClaimState.DONE, {"outcome": "accepted", "job_id": "0" * 32})
    other = DetachRequest(server_id=WEB1, volume_id=WEB1_LOGS)
    assert guard.claim(KEY, other, PID).state is ClaimState.CONFLICT  # same key, other disk
    assert guard.names_job(KEY, "0" * 32)
    locks = guard.locks(PID, WEB1, WEB1_DATA, KEY)
    assert guard.acquire(locks)
    assert not guard.acquire(guard.locks(PID, WEB1, WEB1_LOGS, "another request"))  # the server is held
    guard.store.close()


def test_in_memory_guards_share_nothing() -> None:
    first, second = Guard.in_memory(), Guard.in_memory()
    first.claim(KEY, REQUEST, PID)
    first.complete(KEY, {"outcome": "accepted"})

    assert second.claim(KEY, REQUEST, PID).state is ClaimState.NEW  # another process would not know
    assert second.store.peek(KEY) is not None
    assert first.store is not second.store
    first.store.close()
    second.store.close()
