"""The behaviour every store shares, run against SQLite and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from handler.store import Acquired, Claim, ClaimLost, ClaimState, Store, StoreError
from tests.store.conftest import Backend

LONG = 60.0  # s: a claim or lock that does not lapse during a test
SHORT = 0.3  # s: one that lapses when the test lets time pass
PAST_SHORT = 0.35


def test_a_fresh_key_is_new_and_owned(store: Store) -> None:
    assert store.begin("k", "fp", in_progress_ttl_s=LONG) == Claim(ClaimState.NEW, attempt=1)


def test_a_duplicate_finds_the_key_in_progress(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    first.begin("k", "fp", in_progress_ttl_s=LONG)

    claim = second.begin("k", "fp", in_progress_ttl_s=LONG)

    assert claim.state is ClaimState.IN_PROGRESS
    assert claim.attempt == 1
    assert claim.progress == {}
    assert claim.expires_in_s is not None
    assert 0 < claim.expires_in_s <= LONG


def test_a_duplicate_sees_the_progress_noted_so_far(store: Store) -> None:
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    store.note("k", {"job_id": "job-1"})

    claim = store.begin("k", "fp", in_progress_ttl_s=LONG)

    assert claim.state is ClaimState.IN_PROGRESS
    assert claim.progress == {"job_id": "job-1"}


def test_notes_merge_at_the_top_level(store: Store) -> None:
    store.begin("k", "fp", in_progress_ttl_s=SHORT)
    store.note("k", {"job_id": "job-1", "phase": "called"})
    store.note("k", {"phase": "published", "at": {"s": 1}})
    store.note("k", {})

    assert store.begin("k", "fp", in_progress_ttl_s=LONG).progress == {
        "job_id": "job-1",
        "phase": "published",
        "at": {"s": 1},
    }


def test_the_same_key_with_other_content_is_a_conflict(store: Store) -> None:
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    assert store.begin("k", "other", in_progress_ttl_s=LONG) == Claim(ClaimState.CONFLICT)

    store.complete("k", {"job_id": "job-1"}, ttl_s=LONG)
    assert store.begin("k", "other", in_progress_ttl_s=LONG) == Claim(ClaimState.CONFLICT)
    assert store.begin("k", "fp", in_progress_ttl_s=LONG).state is ClaimState.DONE


def test_a_lapsed_claim_is_taken_over_with_its_progress(backend: Backend) -> None:
    """The crash between the detach call and the publish: the next claimant gets the job id."""
    dead, heir = backend.make(), backend.make()
    dead.begin("k", "fp", in_progress_ttl_s=SHORT)
    dead.note("k", {"job_id": "job-1"})
    backend.advance(PAST_SHORT)

    claim = heir.begin("k", "fp", in_progress_ttl_s=LONG)

    assert claim == Claim(ClaimState.NEW, progress={"job_id": "job-1"}, attempt=2)
    again = dead.begin("k", "fp", in_progress_ttl_s=LONG)
    assert again.state is ClaimState.IN_PROGRESS
    assert again.attempt == 2
    assert again.progress == {"job_id": "job-1"}


def test_a_lapsed_claim_without_notes_is_new_again(backend: Backend) -> None:
    store = backend.make()
    store.begin("k", "fp", in_progress_ttl_s=SHORT)
    backend.advance(PAST_SHORT)

    assert store.begin("k", "fp", in_progress_ttl_s=LONG) == Claim(ClaimState.NEW, attempt=2)


def test_a_lapsed_claim_is_forgotten_after_keep_abandoned(backend: Backend) -> None:
    store = backend.make(keep_abandoned_s=SHORT)
    store.begin("k", "fp", in_progress_ttl_s=SHORT)
    store.note("k", {"job_id": "job-1"})
    backend.advance(SHORT + PAST_SHORT)

    assert store.begin("k", "other", in_progress_ttl_s=LONG) == Claim(ClaimState.NEW, attempt=1)


def test_a_completed_key_returns_its_record(backend: Backend) -> None:
    record: dict[str, Any] = {"job_id": "job-1", "result": None, "tags": ["a", "é"], "n": 1.5}
    first = backend.make()
    first.begin("k", "fp", in_progress_ttl_s=LONG)
    first.note("k", {"job_id": "job-1"})
    first.complete("k", record, ttl_s=LONG)

    assert backend.make().begin("k", "fp", in_progress_ttl_s=LONG) == Claim(ClaimState.DONE, record=record)


def test_complete_replaces_an_earlier_record(store: Store) -> None:
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    store.complete("k", {"job_id": "job-1"}, ttl_s=LONG)
    store.complete("k", {"job_id": "job-1", "result": "detached"}, ttl_s=LONG)

    claim = store.begin("k", "fp", in_progress_ttl_s=LONG)
    assert claim.record == {"job_id": "job-1", "result": "detached"}


def test_a_completed_record_expires_after_its_ttl(backend: Backend) -> None:
    store = backend.make()
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    store.complete("k", {"job_id": "job-1"}, ttl_s=SHORT)
    assert store.begin("k", "fp", in_progress_ttl_s=LONG).state is ClaimState.DONE
    backend.advance(PAST_SHORT)

    assert store.begin("k", "other", in_progress_ttl_s=LONG) == Claim(ClaimState.NEW, attempt=1)


def test_release_drops_a_claim_and_its_progress(store: Store) -> None:
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    store.note("k", {"job_id": "job-1"})
    store.release("k")

    assert store.begin("k", "other", in_progress_ttl_s=LONG) == Claim(ClaimState.NEW, attempt=1)


def test_release_keeps_a_completed_record_and_ignores_unknown_keys(store: Store) -> None:
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    store.complete("k", {"job_id": "job-1"}, ttl_s=LONG)
    store.release("k")
    store.release("unknown")

    assert store.begin("k", "fp", in_progress_ttl_s=LONG).state is ClaimState.DONE


def test_note_needs_an_in_progress_record(store: Store) -> None:
    with pytest.raises(ClaimLost):
        store.note("unknown", {"job_id": "job-1"})
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    store.complete("k", {"job_id": "job-1"}, ttl_s=LONG)
    with pytest.raises(ClaimLost):
        store.note("k", {"job_id": "job-2"})
    assert store.begin("k", "fp", in_progress_ttl_s=LONG).record == {"job_id": "job-1"}


def test_complete_needs_a_record(store: Store) -> None:
    with pytest.raises(ClaimLost):
        store.complete("unknown", {"job_id": "job-1"}, ttl_s=LONG)
    assert store.begin("unknown", "fp", in_progress_ttl_s=LONG).state is ClaimState.NEW


def test_a_slow_owner_can_still_note_and_complete_a_lapsed_claim(backend: Backend) -> None:
    store = backend.make()
    store.begin("k", "fp", in_progress_ttl_s=SHORT)
    backend.advance(PAST_SHORT)
    store.note("k", {"job_id": "job-1"})
    store.complete("k", {"job_id": "job-1"}, ttl_s=LONG)

    assert store.begin("k", "fp", in_progress_ttl_s=LONG).record == {"job_id": "job-1"}


def test_a_parked_claim_is_taken_over_at_once_with_its_progress(backend: Backend) -> None:
    """A queued request: its record stays, and the invocation that takes its turn claims it."""
    first, heir = backend.make(), backend.make()
    first.begin("k", "fp", in_progress_ttl_s=LONG)
    first.note("k", {"volume_id": "v-1"})
    first.park("k", {"queued": {"since": 1}})

    claim = heir.begin("k", "fp", in_progress_ttl_s=LONG)

    assert claim == Claim(ClaimState.NEW, progress={"volume_id": "v-1", "queued": {"since": 1}}, attempt=2)
    assert first.begin("k", "fp", in_progress_ttl_s=LONG).state is ClaimState.IN_PROGRESS


def test_a_parked_record_keeps_its_fingerprint_and_lasts_keep_abandoned(backend: Backend) -> None:
    store = backend.make(keep_abandoned_s=SHORT)
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    store.park("k", {"queued": True})

    assert store.begin("k", "other", in_progress_ttl_s=LONG) == Claim(ClaimState.CONFLICT)
    store.park("k", {})
    backend.advance(PAST_SHORT)
    assert store.peek("k") is None


def test_park_needs_an_in_progress_record(store: Store) -> None:
    with pytest.raises(ClaimLost):
        store.park("k", {"queued": True})
    store.begin("k", "fp", in_progress_ttl_s=LONG)
    store.complete("k", {"outcome": "accepted"}, ttl_s=LONG)
    with pytest.raises(ClaimLost):
        store.park("k", {"queued": True})


def test_peek_shows_a_record_without_claiming_it(backend: Backend) -> None:
    store = backend.make()
    assert store.peek("k") is None
    store.begin("k", "fp", in_progress_ttl_s=SHORT)
    store.note("k", {"job_id": "job-1"})

    seen = store.peek("k")
    assert seen is not None
    assert seen.state is ClaimState.IN_PROGRESS
    assert seen.progress == {"job_id": "job-1"}
    assert seen.expires_in_s is not None
    assert 0 < seen.expires_in_s <= SHORT
    backend.advance(PAST_SHORT)
    lapsed = store.peek("k")
    assert lapsed is not None
    assert lapsed.expires_in_s == 0
    assert lapsed.attempt == 1  # peeking took nothing over
    assert store.begin("k", "fp", in_progress_ttl_s=LONG).attempt == 2

    store.complete("k", {"job_id": "job-1", "outcome": "accepted"}, ttl_s=LONG)
    assert store.peek("k") == Claim(ClaimState.DONE, record={"job_id": "job-1", "outcome": "accepted"})


def test_keys_and_locks_are_independent(store: Store) -> None:
    assert store.begin("a", "fp", in_progress_ttl_s=LONG).state is ClaimState.NEW
    assert store.begin("b", "fp", in_progress_ttl_s=LONG).state is ClaimState.NEW
    assert store.acquire("a", "owner", ttl_s=LONG)
    assert store.begin("a", "fp", in_progress_ttl_s=LONG).state is ClaimState.IN_PROGRESS


def test_a_lock_is_exclusive(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    assert first.holder("server:p:s1") is None
    assert first.acquire("server:p:s1", "req-1", ttl_s=LONG)

    assert not second.acquire("server:p:s1", "req-2", ttl_s=LONG)
    assert second.acquire("server:p:s2", "req-2", ttl_s=LONG)
    assert second.holder("server:p:s1") == "req-1"
    assert second.holder("server:p:s2") == "req-2"


def test_a_lock_is_reentrant_for_its_owner_and_refreshed(backend: Backend) -> None:
    store = backend.make()
    assert store.acquire("volume:p:v", "req-1", ttl_s=0.5)
    backend.advance(0.3)
    assert store.acquire("volume:p:v", "req-1", ttl_s=0.5)
    backend.advance(0.3)  # past the first expiry, within the refreshed one

    assert store.holder("volume:p:v") == "req-1"
    assert not store.acquire("volume:p:v", "req-2", ttl_s=LONG)


def test_only_the_owner_releases_a_lock(store: Store) -> None:
    store.acquire("server:p:s", "req-1", ttl_s=LONG)

    assert not store.release_lock("server:p:s", "req-2")
    assert store.holder("server:p:s") == "req-1"
    assert store.release_lock("server:p:s", "req-1")
    assert store.holder("server:p:s") is None
    assert not store.release_lock("server:p:s", "req-1")
    assert store.acquire("server:p:s", "req-2", ttl_s=LONG)


def test_an_expired_lock_frees_itself(backend: Backend) -> None:
    store = backend.make()
    store.acquire("server:p:s", "req-1", ttl_s=SHORT)
    backend.advance(PAST_SHORT)

    assert store.holder("server:p:s") is None
    assert not store.release_lock("server:p:s", "req-1")
    assert store.acquire("server:p:s", "req-2", ttl_s=LONG)
    assert store.holder("server:p:s") == "req-2"


def test_acquire_all_takes_every_lock_or_none(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    assert first.acquire("volume:p:v2", "req-1", ttl_s=LONG)

    assert not second.acquire_all(["server:p:s", "volume:p:v2"], "req-2", ttl_s=LONG)
    assert second.holder("server:p:s") is None  # not left held by the refused call
    assert second.holder("volume:p:v2") == "req-1"
    assert second.acquire_all(["server:p:s", "volume:p:v1"], "req-2", ttl_s=LONG)
    assert first.holder("server:p:s") == first.holder("volume:p:v1") == "req-2"
    assert not first.acquire_all(["server:p:s"], "req-1", ttl_s=LONG)


def test_acquire_all_is_reentrant_and_refreshes_every_lock(backend: Backend) -> None:
    store = backend.make()
    names = ["server:p:s", "volume:p:v"]
    assert store.acquire_all(names, "req-1", ttl_s=0.5)
    backend.advance(0.3)
    assert store.acquire_all(names, "req-1", ttl_s=0.5)
    backend.advance(0.3)  # past the first expiry, within the refreshed one

    assert [store.holder(name) for name in names] == ["req-1", "req-1"]
    assert not store.acquire_all(["volume:p:v"], "req-2", ttl_s=LONG)


def test_acquire_all_takes_expired_locks_over(backend: Backend) -> None:
    store = backend.make()
    assert store.acquire_all(["server:p:s", "volume:p:v"], "req-1", ttl_s=SHORT)
    backend.advance(PAST_SHORT)

    assert store.acquire_all(["server:p:s", "volume:p:v"], "req-2", ttl_s=LONG)
    assert store.holder("server:p:s") == store.holder("volume:p:v") == "req-2"


def test_acquire_all_with_slots_takes_the_first_free_one_with_the_locks(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    assert first.acquire("slot:a", "req-1", ttl_s=LONG)
    offered: list[str] = []

    def slots() -> Iterator[str]:
        for slot in ("slot:a", "slot:b", "slot:c"):
            offered.append(slot)
            yield slot

    taken = second.acquire_all(["server:p:s"], "req-2", ttl_s=LONG, slots=slots(), slot_ttl_s=SHORT)
    assert taken is Acquired.TAKEN
    assert offered == ["slot:a", "slot:b"]  # the rest is not looked at
    assert [second.holder(name) for name in ("server:p:s", "slot:a", "slot:b", "slot:c")] == [
        "req-2",
        "req-1",
        "req-2",
        None,
    ]
    backend.advance(PAST_SHORT)  # the slot is held for its own time, the lock for its own
    assert (second.holder("slot:b"), second.holder("server:p:s")) == (None, "req-2")


def test_acquire_all_with_slots_takes_nothing_unless_all(backend: Backend) -> None:
    first, second = backend.make(), backend.make()
    assert first.acquire_all(["volume:p:v"], "req-1", ttl_s=LONG, slots=["slot:a"], slot_ttl_s=LONG)
    names = ["server:p:s", "volume:p:v2"]

    assert second.acquire_all(["volume:p:v"], "req-2", ttl_s=LONG, slots=["slot:b"], slot_ttl_s=LONG) is (
        Acquired.LOCKED
    )
    assert second.holder("slot:b") is None
    assert second.acquire_all(names, "req-2", ttl_s=LONG, slots=["slot:a"], slot_ttl_s=LONG) is (
        Acquired.NO_SLOT
    )
    assert [bool(acquired) for acquired in Acquired] == [True, False, False]  # only TAKEN is true
    assert [second.holder(name) for name in names] == [None, None]  # not left held
    assert second.acquire_all(names, "req-1", ttl_s=LONG, slots=["slot:a"], slot_ttl_s=LONG)  # its own


@pytest.mark.parametrize("ttl", [0.0, -1.0, float("inf"), float("nan")])
def test_ttls_must_be_positive_and_finite(store: Store, ttl: float) -> None:
    with pytest.raises(ValueError, match="seconds > 0"):
        store.begin("k", "fp", in_progress_ttl_s=ttl)
    with pytest.raises(ValueError, match="seconds > 0"):
        store.complete("k", {}, ttl_s=ttl)
    with pytest.raises(ValueError, match="seconds > 0"):
        store.acquire("l", "o", ttl_s=ttl)
    with pytest.raises(ValueError, match="seconds > 0"):
        store.acquire_all(["l"], "o", ttl_s=ttl)
    with pytest.raises(ValueError, match="seconds > 0"):
        store.acquire_all(["l"], "o", ttl_s=LONG, slots=["s"], slot_ttl_s=ttl)


def test_keys_names_and_owners_must_not_be_empty(store: Store) -> None:
    with pytest.raises(ValueError, match="key"):
        store.begin("", "fp", in_progress_ttl_s=LONG)
    with pytest.raises(ValueError, match="fingerprint"):
        store.begin("k", "", in_progress_ttl_s=LONG)
    with pytest.raises(ValueError, match="owner"):
        store.acquire("l", "", ttl_s=LONG)
    with pytest.raises(ValueError, match="lock name"):
        store.acquire_all(["l", ""], "o", ttl_s=LONG)
    with pytest.raises(ValueError, match="lock name"):
        store.acquire_all(["l"], "o", ttl_s=LONG, slots=[""], slot_ttl_s=LONG)
    with pytest.raises(ValueError, match="lock name"):
        store.holder("")


def test_a_closed_store_refuses_calls(backend: Backend) -> None:
    store = backend.make()
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.begin("k", "fp", in_progress_ttl_s=LONG)
    with pytest.raises(StoreError, match="closed"):
        store.holder("l")


# -- the outbox ------------------------------------------------------------------------------

AGE = 0.3  # s: how long a record waits in the outbox before it is taken
PAST_AGE = 0.35


def _noted(store: Store, key: str, *, outbox: bool = True, ttl: float = LONG) -> None:
    store.begin(key, "fp", in_progress_ttl_s=ttl)
    store.note(key, {"job_id": f"job-{key}"}, outbox=outbox)


def _take(store: Store, limit: int = 10) -> list[tuple[str, dict[str, Any], int]]:
    taken = store.take_outbox(older_than_s=AGE, in_progress_ttl_s=LONG, limit=limit)
    return [(t.key, t.progress, t.attempt) for t in taken]


def test_a_record_in_the_outbox_is_taken_after_its_age_though_its_owner_holds_it(
    backend: Backend,
) -> None:
    """A crashed owner's claim holds for the function timeout; its noted work does not wait that long."""
    owner, relay = backend.make(), backend.make()
    _noted(owner, "k")
    assert _take(relay) == []  # not yet: the owner is probably publishing right now

    backend.advance(PAST_AGE)

    assert _take(relay) == [("k", {"job_id": "job-k"}, 2)]
    claim = owner.begin("k", "fp", in_progress_ttl_s=LONG)  # the relay owns it now
    assert claim.state is ClaimState.IN_PROGRESS
    assert claim.attempt == 2
    assert claim.expires_in_s is not None
    assert claim.expires_in_s > LONG - 5


def test_a_taken_record_is_not_taken_again_before_its_age_passes_again(backend: Backend) -> None:
    """Two relays do not race for one record; a relay that died is followed by the next one."""
    first, second = backend.make(), backend.make()
    _noted(first, "k")
    backend.advance(PAST_AGE)
    assert [key for key, _, _ in _take(first)] == ["k"]

    assert _take(second) == []
    backend.advance(PAST_AGE)
    assert _take(second) == [("k", {"job_id": "job-k"}, 3)]


def test_completed_and_released_records_leave_the_outbox(backend: Backend) -> None:
    store = backend.make()
    for key in ("done", "released", "kept"):
        _noted(store, key)
    store.complete("done", {"outcome": "accepted"}, ttl_s=LONG)
    store.release("released")
    backend.advance(PAST_AGE)

    assert [key for key, _, _ in _take(store)] == ["kept"]
    assert store.begin("done", "fp", in_progress_ttl_s=LONG).state is ClaimState.DONE


def test_only_notes_into_the_outbox_enter_it(backend: Backend) -> None:
    store = backend.make()
    _noted(store, "plain", outbox=False)
    store.begin("fresh", "fp", in_progress_ttl_s=LONG)
    backend.advance(PAST_AGE)

    assert _take(store) == []


def test_a_parked_or_taken_over_record_stays_in_the_outbox(backend: Backend) -> None:
    """A failed publish parks the record; a sender's retry may take it over and die too."""
    store, heir = backend.make(), backend.make()
    _noted(store, "parked")
    store.park("parked", {"tries": 1})
    _noted(store, "lapsed", ttl=SHORT)
    backend.advance(PAST_SHORT)
    assert heir.begin("lapsed", "fp", in_progress_ttl_s=LONG).state is ClaimState.NEW

    taken = sorted(_take(heir))

    assert taken == [
        ("lapsed", {"job_id": "job-lapsed"}, 3),
        ("parked", {"job_id": "job-parked", "tries": 1}, 2),
    ]


def test_the_outbox_gives_the_oldest_first_up_to_the_limit(backend: Backend) -> None:
    store = backend.make()
    _noted(store, "first")
    backend.advance(0.05)
    _noted(store, "second")
    backend.advance(0.05)
    _noted(store, "third")
    backend.advance(PAST_AGE)

    assert [key for key, _, _ in _take(store, limit=2)] == ["first", "second"]
    assert [key for key, _, _ in _take(store, limit=2)] == ["third"]


def test_a_record_gone_after_keep_abandoned_leaves_the_outbox(backend: Backend) -> None:
    store = backend.make(keep_abandoned_s=SHORT)
    _noted(store, "k", ttl=SHORT)
    backend.advance(PAST_SHORT + SHORT)

    assert _take(store) == []
    assert store.begin("k", "fp", in_progress_ttl_s=LONG).progress == {}


def test_take_outbox_checks_its_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="older_than_s"):
        store.take_outbox(older_than_s=-1, in_progress_ttl_s=LONG, limit=1)
    with pytest.raises(ValueError, match="in_progress_ttl_s"):
        store.take_outbox(older_than_s=AGE, in_progress_ttl_s=0, limit=1)
    with pytest.raises(ValueError, match="limit"):
        store.take_outbox(older_than_s=AGE, in_progress_ttl_s=LONG, limit=0)


# -- resumable records -----------------------------------------------------------------------


CLAIM = 1.0  # s: a claim that outlasts the outbox age


def _claimed(store: Store, key: str, *, ttl: float = SHORT) -> None:
    store.begin(key, "fp", in_progress_ttl_s=ttl)
    store.note(key, {"request": {"volume_id": key}}, resume=True)


def test_a_resumable_record_is_taken_only_once_its_owners_claim_lapses(backend: Backend) -> None:
    """Its owner may be calling the cloud right now: running it twice could detach twice."""
    owner, relay = backend.make(), backend.make()
    _claimed(owner, "k", ttl=CLAIM)
    backend.advance(PAST_AGE)
    assert _take(relay) == []  # past the outbox age, but the owner's claim holds

    backend.advance(CLAIM)

    assert _take(relay) == [("k", {"request": {"volume_id": "k"}}, 2)]
    assert owner.begin("k", "fp", in_progress_ttl_s=LONG).state is ClaimState.IN_PROGRESS  # the relay's now


def test_a_taken_resumable_record_is_taken_again_only_when_the_takers_claim_lapses(backend: Backend) -> None:
    store = backend.make()
    _claimed(store, "k")
    backend.advance(PAST_SHORT)
    assert len(store.take_outbox(older_than_s=AGE, in_progress_ttl_s=CLAIM, limit=10)) == 1

    backend.advance(PAST_AGE)
    assert _take(store) == []  # the outbox age has passed, the taker's claim has not
    backend.advance(CLAIM)
    assert [key for key, _, _ in _take(store)] == ["k"]


def test_a_claim_taken_over_by_a_sender_retry_is_resumed_after_that_claim(backend: Backend) -> None:
    store, heir = backend.make(), backend.make()
    _claimed(store, "k")
    backend.advance(PAST_SHORT)
    retry = heir.begin("k", "fp", in_progress_ttl_s=SHORT)
    assert retry.state is ClaimState.NEW
    assert retry.progress == {"request": {"volume_id": "k"}}

    assert _take(store) == []
    backend.advance(PAST_SHORT)
    assert [(key, attempt) for key, _, attempt in _take(store)] == [("k", 3)]


def test_parked_completed_and_released_records_are_not_resumed(backend: Backend) -> None:
    """A parked request waits for its turn (a queued event, an approval), not for a relay."""
    store = backend.make()
    for key in ("parked", "done", "released", "kept", "plain"):
        _claimed(store, key)
    store.park("parked", {"queued": {"since": "now"}})
    store.complete("done", {"outcome": "accepted"}, ttl_s=LONG)
    store.release("released")
    store.note("plain", {"more": 1})  # a note without resume keeps the mark
    backend.advance(PAST_SHORT)

    assert sorted(key for key, _, _ in _take(store)) == ["kept", "plain"]


def test_a_resumable_record_noted_into_the_outbox_is_taken_by_its_age(backend: Backend) -> None:
    """Once the job is noted, its event may be published beside a live owner."""
    store = backend.make()
    _claimed(store, "k", ttl=LONG)
    store.note("k", {"job_id": "job-k"}, outbox=True)
    backend.advance(PAST_AGE)

    assert _take(store) == [("k", {"request": {"volume_id": "k"}, "job_id": "job-k"}, 2)]


def test_a_fresh_claim_notes_its_resume_data_with_it(backend: Backend) -> None:
    """``begin(resume=…)`` is ``begin`` then ``note(…, resume=True)``, for a claim with no progress."""
    owner, relay = backend.make(), backend.make()
    claim = owner.begin("k", "fp", in_progress_ttl_s=CLAIM, resume={"request": {"volume_id": "k"}})
    assert claim.state is ClaimState.NEW
    assert claim.progress == {}  # what was noted before this claim
    seen = relay.peek("k")
    assert seen is not None
    assert seen.progress == {"request": {"volume_id": "k"}}
    backend.advance(PAST_AGE)
    assert _take(relay) == []  # resumable: not beside its live owner

    backend.advance(CLAIM)

    assert _take(relay) == [("k", {"request": {"volume_id": "k"}}, 2)]


def test_a_claim_that_finds_progress_notes_no_resume_data(backend: Backend) -> None:
    """A lapsed claim's progress goes to the caller, which decides what to note (and when)."""
    store = backend.make()
    store.begin("k", "fp", in_progress_ttl_s=SHORT)
    store.note("k", {"queued": {"since": "now"}})
    backend.advance(PAST_SHORT)

    claim = store.begin("k", "fp", in_progress_ttl_s=SHORT, resume={"request": {"volume_id": "k"}})

    assert (claim.state, claim.progress) == (ClaimState.NEW, {"queued": {"since": "now"}})
    backend.advance(PAST_SHORT)
    assert _take(store) == []  # not marked resumable
    assert store.begin("k", "fp", in_progress_ttl_s=LONG).progress == {"queued": {"since": "now"}}


def test_resume_data_is_not_noted_on_a_key_in_progress_or_done(backend: Backend) -> None:
    store = backend.make()
    store.begin("busy", "fp", in_progress_ttl_s=LONG)
    store.begin("done", "fp", in_progress_ttl_s=LONG)
    store.complete("done", {"outcome": "accepted"}, ttl_s=LONG)

    for key in ("busy", "done"):
        assert (
            store.begin(key, "fp", in_progress_ttl_s=LONG, resume={"request": {}}).state is not ClaimState.NEW
        )
    busy = store.peek("busy")
    assert busy is not None
    assert busy.progress == {}
    assert store.peek("done") == Claim(ClaimState.DONE, record={"outcome": "accepted"})
