"""Exactly once on at-least-once delivery: idempotency records and per-server/volume locks.

Both functions take a ``Guard`` (required: a one-off tool passes ``Guard.in_memory()``, by
name). A request's key is its explicit
``idempotency_key`` (sources derive one from the webhook id, the CloudEvent source and id,
the Alertmanager fingerprint and startsAt…), else ``{project}/{server}/{volume or device}``.
Its fingerprint is the content that matters (project, server, disk, force): the same key with
other content is refused. Locks (``server:…`` and ``volume:…``, owned by the key) are held from
before the detach call until the poll function sees the job end, because the cloud refuses
parallel detaches on one server; a request that finds them held is queued: its record is
parked with the queue's progress until its turn (``park``), then taken over.

A key's record is also the poll function's reference: a job event is trusted only when the
record of its key names its job (``names_job``), so a forged or stale event changes nothing.
"""

import contextlib
import hashlib
import json
from collections.abc import Iterable
from typing import Any, NamedTuple

from handler.core.models import DetachRequest
from handler.store import Acquired, Claim, ClaimLost, ClaimState, SqliteStore, Store, Taken


class Locks(NamedTuple):
    names: tuple[str, ...]
    owner: str


def request_key(request: DetachRequest, project_id: str) -> str:
    disk = request.volume_id or request.device
    return request.idempotency_key or f"{project_id}/{request.server_id}/{disk}"


def fingerprint(request: DetachRequest, project_id: str) -> str:
    content = [project_id, request.server_id, request.volume_id, request.device, request.delete_flag]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()


class Guard:
    def __init__(
        self, store: Store, *, in_progress_ttl_s: float, record_ttl_s: float, lock_ttl_s: float
    ) -> None:
        self._store = store
        self._in_progress_ttl_s = in_progress_ttl_s
        self._record_ttl_s = record_ttl_s
        self._lock_ttl_s = lock_ttl_s

    @classmethod
    def in_memory(cls, *, ttl_s: float = 3600.0) -> "Guard":
        """A guard whose records live in this process only (SQLite in memory): for one-off
        tools and tests that truly want no shared store. Duplicates across processes are not
        recognised."""
        return cls(SqliteStore(":memory:"), in_progress_ttl_s=ttl_s, record_ttl_s=ttl_s, lock_ttl_s=ttl_s)

    @property
    def store(self) -> Store:
        return self._store

    def claim(
        self, key: str, request: DetachRequest, project_id: str, *, resume: dict[str, Any] | None = None
    ) -> Claim:
        """Claim ``key``; with ``resume``, a NEW claim with no progress yet notes it resumable in
        the same step (``Store.begin``), as ``note(key, resume, resume=True)`` would."""
        return self._store.begin(
            key,
            fingerprint(request, project_id),
            in_progress_ttl_s=self._in_progress_ttl_s,
            resume=resume,
        )

    def note(self, key: str, progress: dict[str, Any], *, outbox: bool = False, resume: bool = False) -> None:
        """Note ``progress``; with ``outbox``, the key waits in the outbox until it completes;
        with ``resume``, the relay takes it once its claim lapses (``Store.note``)."""
        self._store.note(key, progress, outbox=outbox, resume=resume)

    def take_outbox(self, *, older_than_s: float, limit: int) -> list[Taken]:
        """Claim the keys that have waited in the outbox ``older_than_s`` (``Store.take_outbox``)."""
        return self._store.take_outbox(
            older_than_s=older_than_s, in_progress_ttl_s=self._in_progress_ttl_s, limit=limit
        )

    def complete(self, key: str, record: dict[str, Any], *, synced: bool = True) -> None:
        """Keep ``record`` as the key's outcome (``synced``: ``Store.complete``)."""
        self._store.complete(key, record, ttl_s=self._record_ttl_s, synced=synced)

    def release(self, key: str) -> None:
        self._store.release(key)

    def park(self, key: str, progress: dict[str, Any]) -> None:
        """Keep ``key`` in progress with ``progress``, for the next invocation to take over."""
        self._store.park(key, progress)

    def names_job(self, key: str | None, job_id: str) -> bool:
        """Whether the record of ``key`` says that its request started job ``job_id`` (noted in
        progress right after the detach call, or kept in the completed record)."""
        if not key:
            return False
        seen = self._store.peek(key)
        if seen is None:
            return False
        known = seen.record if seen.state is ClaimState.DONE else seen.progress
        return (known or {}).get("job_id") == job_id

    @staticmethod
    def locks(project_id: str, server_id: str, volume_id: str, owner: str) -> Locks:
        return Locks((f"server:{project_id}:{server_id}", f"volume:{project_id}:{volume_id}"), owner)

    def acquire(
        self, locks: Locks, *, slots: Iterable[str] | None = None, slot_ttl_s: float = 0.0
    ) -> Acquired:
        """Both locks, and with ``slots`` one of them (a blast-radius slot, ``BlastRadius.slots``),
        or nothing (``Store.acquire_all``: on SQLite one transaction)."""
        return self._store.acquire_all(
            locks.names, locks.owner, ttl_s=self._lock_ttl_s, slots=slots, slot_ttl_s=slot_ttl_s
        )

    def unlock(self, locks: Locks) -> None:
        for name in locks.names:
            self._store.release_lock(name, locks.owner)

    def claim_result(self, job_id: str) -> Claim:
        """NEW: report job ``job_id`` now; DONE: it was reported (a redelivered poll);
        IN_PROGRESS: another poll is reporting it right now (come back later)."""
        return self._store.begin(f"result:{job_id}", "result", in_progress_ttl_s=self._in_progress_ttl_s)

    def release_result(self, job_id: str) -> None:
        """The result of ``job_id`` could not be published: the next look reports it."""
        self._store.release(f"result:{job_id}")

    def result_reported(self, job_id: str, key: str, result: dict[str, Any]) -> None:
        self._store.complete(f"result:{job_id}", result, ttl_s=self._record_ttl_s)
        # The request's record gains the result, for duplicates that arrive later; it may have
        # expired already, then there is nothing to update.
        with contextlib.suppress(ClaimLost):
            self._store.complete(key, result, ttl_s=self._record_ttl_s)
