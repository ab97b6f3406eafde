"""Approvals, kept durably next to the idempotency records (the same SQLite file or Redis).

An approval is written once when its request starts waiting (``put``); its one decision is a
compare-and-set from ``pending`` (``decide``: a second click, or a decision racing the expiry,
finds it decided and changes nothing); what became of its request is noted last (``settle``).
The request's idempotency key is parked meanwhile (its progress names the approval), so a
duplicate is answered ``pending_approval`` and the detach function takes it up once decided.

* SQLite: the table ``approvals`` in the store's own file (created when first used), written
  in the store's transactions, on the store's clock.
* Redis: a hash ``{prefix}approval:{id}`` (``data``, ``state``, ``decision``, ``outcome``),
  expiring ``keep_s`` after the approval does, and the sorted set ``{prefix}approvals`` (by
  creation time) that lists them. The decision is one Lua script: atomic.

Kept ``keep_s`` (the record TTL) after the approval's expiry, for ``ecs-detach approvals``.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from handler.core.approval import Approval, ApprovalState, Decision
from handler.store._base import Store, StoreError
from handler.store.sqlite import SqliteStore

_SQLITE_TABLE = """
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    keep_until REAL NOT NULL,   -- the row counts as absent from then on
    state TEXT NOT NULL,
    data TEXT NOT NULL,         -- the Approval as created (JSON)
    decision TEXT,              -- {"by", "at", "comment"} once decided (JSON)
    outcome TEXT
)
"""


class ApprovalBook(Protocol):
    def put(self, approval: Approval, *, keep_s: float) -> None:
        """Keep ``approval`` (pending) until ``keep_s`` after its expiry; a second put of the
        same id changes nothing."""
        ...

    def get(self, approval_id: str) -> Approval | None: ...

    def recent(self, limit: int = 100) -> list[Approval]:
        """The newest approvals first, decided or not."""
        ...

    def decide(
        self, approval_id: str, state: ApprovalState, decision: Decision
    ) -> tuple[Approval | None, bool]:
        """Set the state of a pending approval (approved, denied, expired, superseded); the
        approval as it is now, and whether this call decided it (False: it was decided
        already, or there is no such approval)."""
        ...

    def settle(self, approval_id: str, outcome: str) -> None:
        """Note what became of the approval's request."""
        ...


def _assemble(data: str, state: str, decision: str | None, outcome: str | None) -> Approval:
    fields: dict[str, Any] = {"state": state, "outcome": outcome}
    if decision:
        made = json.loads(decision)
        fields |= {"decided_by": made["by"], "decided_at": made["at"], "comment": made["comment"]}
    return Approval.model_validate(json.loads(data) | fields)


def _decision_json(decision: Decision) -> str:
    return json.dumps({"by": decision.by, "at": decision.at.isoformat(), "comment": decision.comment})


class SqliteApprovalBook:
    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        with store._transaction() as (conn, _):
            conn.execute(_SQLITE_TABLE)

    def put(self, approval: Approval, *, keep_s: float) -> None:
        with self._store._transaction() as (conn, _):
            conn.execute(
                "INSERT OR IGNORE INTO approvals (id, created_at, keep_until, state, data)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    approval.id,
                    approval.created_at.timestamp(),
                    approval.expires_at.timestamp() + keep_s,
                    approval.state.value,
                    approval.model_dump_json(),
                ),
            )

    def get(self, approval_id: str) -> Approval | None:
        with self._store._read() as (conn, now):
            row = conn.execute(
                "SELECT data, state, decision, outcome FROM approvals WHERE id = ? AND keep_until > ?",
                (approval_id, now),
            ).fetchone()
        return None if row is None else _assemble(*row)

    def recent(self, limit: int = 100) -> list[Approval]:
        with self._store._read() as (conn, now):
            rows = conn.execute(
                "SELECT data, state, decision, outcome FROM approvals WHERE keep_until > ?"
                " ORDER BY created_at DESC LIMIT ?",
                (now, limit),
            ).fetchall()
        return [_assemble(*row) for row in rows]

    def decide(
        self, approval_id: str, state: ApprovalState, decision: Decision
    ) -> tuple[Approval | None, bool]:
        with self._store._transaction() as (conn, now):
            changed = conn.execute(
                "UPDATE approvals SET state = ?, decision = ? WHERE id = ? AND state = ? AND keep_until > ?",
                (state.value, _decision_json(decision), approval_id, ApprovalState.PENDING.value, now),
            ).rowcount
        return self.get(approval_id), bool(changed)

    def settle(self, approval_id: str, outcome: str) -> None:
        with self._store._transaction() as (conn, _):
            conn.execute("UPDATE approvals SET outcome = ? WHERE id = ?", (outcome, approval_id))


# KEYS approval hash; ARGV state, decision. Returns 1 if it decided, 0 if not pending (or gone).
_DECIDE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'pending' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'decision', ARGV[2])
return 1
"""


class RedisApprovalBook:
    def __init__(self, store: Any) -> None:  # a RedisStore (imported lazily: the redis extra)
        self._store = store
        with store._redis() as client:
            self._decide = client.register_script(_DECIDE)
        self._index = f"{store.prefix}approvals"

    def _key(self, approval_id: str) -> str:
        return f"{self._store.prefix}approval:{approval_id}"

    def put(self, approval: Approval, *, keep_s: float) -> None:
        key = self._key(approval.id)
        with self._store._redis() as client:
            if not client.hsetnx(key, "data", approval.model_dump_json()):
                return
            client.hset(key, "state", approval.state.value)
            client.expireat(key, int(approval.expires_at.timestamp() + keep_s) + 1)
            client.zadd(self._index, {approval.id: approval.created_at.timestamp()})

    def get(self, approval_id: str) -> Approval | None:
        with self._store._redis() as client:
            found = client.hmget(self._key(approval_id), "data", "state", "decision", "outcome")
        if found[0] is None or found[1] is None:
            return None
        return _assemble(found[0], found[1], found[2], found[3])

    def recent(self, limit: int = 100) -> list[Approval]:
        with self._store._redis() as client:
            ids = client.zrevrange(self._index, 0, limit - 1)
        approvals = []
        gone = []
        for approval_id in ids:
            approval = self.get(approval_id)
            if approval is None:
                gone.append(approval_id)
            else:
                approvals.append(approval)
        if gone:
            with self._store._redis() as client:
                client.zrem(self._index, *gone)
        return approvals

    def decide(
        self, approval_id: str, state: ApprovalState, decision: Decision
    ) -> tuple[Approval | None, bool]:
        with self._store._redis():
            changed = self._decide(
                keys=[self._key(approval_id)], args=[state.value, _decision_json(decision)]
            )
        return self.get(approval_id), bool(changed)

    def settle(self, approval_id: str, outcome: str) -> None:
        key = self._key(approval_id)
        with self._store._redis() as client:
            if client.exists(key):
                client.hset(key, "outcome", outcome)


def open_book(store: Store) -> ApprovalBook:
    """The approvals kept next to ``store``'s records."""
    if isinstance(store, SqliteStore):
        return SqliteApprovalBook(store)
    from handler.store.redis import RedisStore  # noqa: PLC0415 (needs the redis extra)

    if isinstance(store, RedisStore):
        return RedisApprovalBook(store)
    raise StoreError(f"approvals need a SQLite or Redis store, not {type(store).__name__}")


__all__ = ["ApprovalBook", "RedisApprovalBook", "SqliteApprovalBook", "open_book"]
