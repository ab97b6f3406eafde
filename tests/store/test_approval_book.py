"""The approval book on both stores: kept across instances (a restart), one decision each even
when many race, listed newest first."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from handler.core.approval import Approval, ApprovalState, Decision, Preview
from handler.core.models import DetachRequest
from handler.store.approvals import open_book
from tests.store.conftest import Backend

SERVER = "1b3c5e7f-0000-4000-8000-00000000aaaa"
VOLUME = "2c4d6e8f-0000-4000-8000-00000000bbbb"


def approval(number: int, *, created: datetime | None = None) -> Approval:
    at = created or datetime.now(timezone.utc)
    return Approval(
        id=f"{number:032x}",
        key=f"key-{number}",
        request=DetachRequest(server_id=SERVER, volume_id=VOLUME, idempotency_key=f"key-{number}"),
        preview=Preview(
            server_name="web-1",
            server_status="ACTIVE",
            device="/dev/vdb",
            size_gb=100,
            volume_type="SSD",
            shared=False,
            system_disk=False,
            checks_passed=["not the system disk"],
            approval_rules=["force detach"],
            will="volume is detached",
        ),
        requested_by=["alerts"],
        created_at=at,
        expires_at=at + timedelta(hours=1),
    )


def decision(by: str, *, approve: bool = True) -> Decision:
    return Decision(approve, by, f"from {by}", datetime.now(timezone.utc))


def test_an_approval_is_kept_for_another_instance(backend: Backend) -> None:
    made = approval(1)
    open_book(backend.make()).put(made, keep_s=60)
    again = open_book(backend.make())  # a restart: a new connection to the same data

    assert again.get(made.id) == made
    assert again.get(f"{2:032x}") is None


def test_a_second_put_changes_nothing(backend: Backend) -> None:
    book = open_book(backend.make())
    book.put(approval(1), keep_s=60)
    book.decide(f"{1:032x}", ApprovalState.DENIED, decision("bob", approve=False))
    book.put(approval(1), keep_s=60)

    kept = book.get(f"{1:032x}")
    assert kept is not None
    assert (kept.state, kept.decided_by, kept.comment) == (ApprovalState.DENIED, "bob", "from bob")


def test_one_decision_only_and_the_outcome_noted_after(backend: Backend) -> None:
    book = open_book(backend.make())
    book.put(approval(1), keep_s=60)

    first, decided = book.decide(f"{1:032x}", ApprovalState.APPROVED, decision("alice"))
    second, again = book.decide(f"{1:032x}", ApprovalState.DENIED, decision("bob", approve=False))
    book.settle(f"{1:032x}", "accepted")

    assert (decided, again) == (True, False)
    assert first is not None
    assert second is not None
    assert (second.state, second.decided_by) == (ApprovalState.APPROVED, "alice")
    kept = book.get(f"{1:032x}")
    assert kept is not None
    assert kept.outcome == "accepted"
    assert book.decide(f"{9:032x}", ApprovalState.APPROVED, decision("alice")) == (None, False)


def test_racing_decisions_make_exactly_one(backend: Backend) -> None:
    open_book(backend.make()).put(approval(1), keep_s=60)
    books = [open_book(backend.make()) for _ in range(8)]

    def decide(index: int) -> bool:
        state = ApprovalState.APPROVED if index % 2 else ApprovalState.EXPIRED
        return books[index].decide(f"{1:032x}", state, decision(f"user-{index}"))[1]

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(decide, range(8)))

    assert won.count(True) == 1
    kept = books[0].get(f"{1:032x}")
    assert kept is not None
    assert kept.decided_by == f"user-{won.index(True)}"


def test_recent_lists_the_newest_first(backend: Backend) -> None:
    book = open_book(backend.make())
    start = datetime.now(timezone.utc)
    for number in (1, 2, 3):
        book.put(approval(number, created=start + timedelta(seconds=number)), keep_s=60)

    assert [a.id for a in book.recent()] == [f"{n:032x}" for n in (3, 2, 1)]
    assert [a.id for a in book.recent(2)] == [f"{n:032x}" for n in (3, 2)]
