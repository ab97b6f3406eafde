"""The idempotency and lock store: its protocol and value types.

An idempotency key goes through these records:

* none → ``begin`` makes an *in-progress* record owned by the caller until its claim lapses
  (``in_progress_ttl_s``, matched to the function timeout);
* in progress → ``note`` adds progress data (the job id right after the detach call);
  ``complete`` turns it into a *completed* record kept ``ttl_s``; ``release`` deletes it;
  ``park`` adds progress data and lets the claim lapse at once, for another invocation to take
  over (a queued request waiting for its turn);
* a lapsed claim (its owner died) keeps its progress for ``keep_abandoned_s`` so the next
  ``begin`` can take it over and resume; after that the record is gone.

The outbox: ``note(..., outbox=True)`` enters an in-progress record in it (work that must
still be handed on, such as an event to publish); ``complete`` and ``release`` take it out.
``take_outbox`` claims the records that have waited there ``older_than_s``, *whether or not
their owner's claim has lapsed*: a relay resumes a dead owner's work after that short age
instead of the full claim, at the price of doing it a second time when the owner was only
slow (so it is for work that may be done twice, like a publish whose consumer deduplicates).

Resumable records: ``note(..., resume=True)`` marks an in-progress record whose work must not
run beside a live owner (a request whose cloud call may be under way) but must not be left
either when its owner dies and nobody asks again. ``take_outbox`` takes such a record only
once its owner's claim has lapsed, and again only when the taker's own claim lapses; ``park``,
``complete`` and ``release`` end the mark (a parked record waits for something else).

Locks are separate named leases with one owner each, freed by their owner or by their expiry.
"""

import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from handler.errors import EcsDetachError

DEFAULT_RECORD_TTL_S = 24 * 3600.0  # how long callers keep completed records unless configured
DEFAULT_KEEP_ABANDONED_S = 24 * 3600.0  # how long a lapsed claim keeps its progress


class StoreError(EcsDetachError):
    """The store failed (unreachable, corrupt, closed); messages never contain credentials."""


class ClaimLost(StoreError):
    """``note`` found no in-progress record of its key, or ``complete`` no record at all."""


class ClaimState(enum.Enum):
    NEW = "new"
    """The caller owns the key now; ``progress`` holds what an earlier, lapsed owner noted."""
    IN_PROGRESS = "in_progress"
    """Another caller owns the key and its claim has not lapsed; it may have noted ``progress``."""
    DONE = "done"
    """The key was completed with ``record``."""
    CONFLICT = "conflict"
    """The key has a record (in progress, lapsed or completed) with a different fingerprint."""


_NO_PROGRESS: Mapping[str, Any] = MappingProxyType({})


class Claim(NamedTuple):
    """What ``Store.begin`` found, and (for ``NEW``) took."""

    state: ClaimState
    # Read-only: one empty mapping shared by the claims made without progress (a NamedTuple's
    # default is shared), which nothing can change in place.
    progress: Mapping[str, Any] = _NO_PROGRESS
    """NEW, IN_PROGRESS: the data noted so far (empty for a fresh key)."""
    record: dict[str, Any] | None = None
    """DONE: the completed record."""
    attempt: int = 0
    """NEW, IN_PROGRESS: how many times the key has been claimed; above 1, an earlier owner's
    claim lapsed (it may have called the API without noting it)."""
    expires_in_s: float | None = None
    """IN_PROGRESS: seconds until the other owner's claim lapses."""


class Acquired(enum.Enum):
    """What ``Store.acquire_all`` did; true only when it took everything asked for."""

    TAKEN = "taken"
    LOCKED = "locked"
    """Another owner holds one of the locks: nothing was taken."""
    NO_SLOT = "no_slot"
    """Other owners hold every slot offered: nothing was taken."""

    def __bool__(self) -> bool:
        return self is Acquired.TAKEN


class Taken(NamedTuple):
    """A record ``take_outbox`` claimed: the caller owns ``key`` now, like after a ``NEW``."""

    key: str
    progress: dict[str, Any]
    attempt: int


class Store(Protocol):
    """Idempotency records and locks in one backing store, safe for threads and processes.

    Records and progress are JSON objects (``dict[str, Any]`` with JSON-serialisable values).
    """

    def begin(
        self,
        key: str,
        fingerprint: str,
        *,
        in_progress_ttl_s: float,
        resume: dict[str, Any] | None = None,
    ) -> Claim:
        """Claim ``key`` for ``in_progress_ttl_s`` unless someone holds it or completed it.

        A lapsed claim is taken over: ``NEW`` with the progress noted before it lapsed.

        With ``resume``, a ``NEW`` claim that finds no progress noted (a fresh key, or a lapsed
        claim that noted nothing) also notes ``resume`` as ``note(key, resume, resume=True)``
        would: SQLite in the claim's own transaction, Redis right after it. The claim's
        ``progress`` is still what was noted before (empty, then); with progress found, nothing
        is noted and the caller decides what to note.
        """
        ...

    def note(self, key: str, data: dict[str, Any], *, outbox: bool = False, resume: bool = False) -> None:
        """Merge ``data`` into the progress of in-progress ``key`` (top-level keys replace);
        with ``outbox``, the record also enters the outbox, from now, until it is completed or
        released (a ``park`` or a lapsed claim keeps it there); with ``resume``, it is marked
        resumable until it is parked, completed or released (a lapsed claim keeps the mark).

        Raises ``ClaimLost`` if ``key`` has no in-progress record.
        """
        ...

    def take_outbox(self, *, older_than_s: float, in_progress_ttl_s: float, limit: int) -> list[Taken]:
        """Claim (for ``in_progress_ttl_s``) up to ``limit`` in-progress records that entered
        the outbox, or were last taken from it, at least ``older_than_s`` ago, oldest first,
        even if their owner's claim has not lapsed; and resumable records whose owner's claim
        has lapsed. Each one taken counts as a new attempt and its age in the outbox starts
        again: another caller takes it only ``older_than_s`` later (when this one died, or
        failed and left it there), or, if it is only resumable, once this claim lapses."""
        ...

    def complete(self, key: str, record: dict[str, Any], *, ttl_s: float, synced: bool = True) -> None:
        """Store ``record`` as the result of ``key``, kept ``ttl_s``; replaces an earlier one.

        ``synced=False``: the write need not be on the disk when this returns (SQLite commits
        it without a sync, and the next synced commit carries it). A power loss or an operating
        system crash may then roll it back, a crash of this process never: only for a
        completion whose loss leaves a state the flow repairs (``DetachFunction._settle``).
        Backends without that choice ignore it.

        Raises ``ClaimLost`` if ``key`` has no record.
        """
        ...

    def release(self, key: str) -> None:
        """Delete the in-progress record of ``key`` with its progress; completed ones stay."""
        ...

    def park(self, key: str, data: dict[str, Any]) -> None:
        """Merge ``data`` into the progress of in-progress ``key`` and let its claim lapse now:
        the record and its progress stay (``keep_abandoned_s``), and the next ``begin`` takes
        it over (``NEW`` with the progress). For work that continues in another invocation (a
        queued request, a publish to try again). It ends a ``resume`` mark.

        Raises ``ClaimLost`` if ``key`` has no in-progress record.
        """
        ...

    def peek(self, key: str) -> Claim | None:
        """What ``begin`` would find for ``key``, without claiming it: None when there is no
        record; ``DONE`` with the record; ``IN_PROGRESS`` with the progress noted so far
        (``expires_in_s`` 0 when the claim has lapsed)."""
        ...

    def acquire(self, name: str, owner: str, *, ttl_s: float) -> bool:
        """Hold lock ``name`` for ``owner`` for ``ttl_s`` if it is free, expired or already
        ``owner``'s (then its expiry moves); whether ``owner`` holds it now."""
        ...

    def acquire_all(
        self,
        names: Sequence[str],
        owner: str,
        *,
        ttl_s: float,
        slots: Iterable[str] | None = None,
        slot_ttl_s: float = 0.0,
    ) -> Acquired:
        """Every lock of ``names`` as ``acquire`` takes one, and with ``slots`` one of them too
        (the first that is free or ``owner``'s already, held ``slot_ttl_s``; the rest are not
        looked at), or nothing: when another owner holds one of ``names`` (``LOCKED``) or every
        slot (``NO_SLOT``), the ones taken here are given back. SQLite takes them in one
        transaction; Redis one at a time (a lock script touches one key)."""
        ...

    def release_lock(self, name: str, owner: str) -> bool:
        """Free lock ``name`` if ``owner`` holds it; whether it did."""
        ...

    def holder(self, name: str) -> str | None:
        """The owner of lock ``name``, or None if it is free."""
        ...

    def close(self) -> None:
        """Release the connection; further calls raise ``StoreError``."""
        ...


def check_key(what: str, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")


def check_ttl(what: str, value: float) -> None:
    if not 0 < value < math.inf:
        raise ValueError(f"{what} must be a finite number of seconds > 0, got {value!r}")


def check_acquire_all(
    names: Sequence[str], owner: str, ttl_s: float, slots: Iterable[str] | None, slot_ttl_s: float
) -> None:
    """The arguments of ``Store.acquire_all``, checked before anything is taken (the slots'
    names are checked as they are drawn: ``slots`` may be a generator)."""
    for name in names:
        check_key("lock name", name)
    check_key("owner", owner)
    check_ttl("ttl_s", ttl_s)
    if slots is not None:
        check_ttl("slot_ttl_s", slot_ttl_s)


def check_age(what: str, value: float) -> None:
    if not 0 <= value < math.inf:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, got {value!r}")


def check_limit(value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"limit must be an integer >= 1, got {value!r}")


def check_keep(value: float) -> None:
    if not 0 <= value < math.inf:
        raise ValueError(f"keep_abandoned_s must be a finite number of seconds >= 0, got {value!r}")
