"""The approval desk: opens an approval for a request that must wait, takes the decisions, and
hands decided (or expired) requests back to the detach function through the jobs topic.

Where things are kept (docs/approvals.md): the approval itself in the store's approval book
(``handler.store.approvals``: SQLite table or Redis hash, survives restarts); the request's
idempotency key stays parked (like a queued request) with ``{"approval": id}`` in its progress,
so duplicates are answered ``pending_approval`` and nothing else can take the key over.

Every path ends through one ``ecs-detach.approval_turn`` event on the jobs topic, taken by
``DetachFunction.take_approval`` under the key's claim (so exactly one result is published):
published with a delay of the expiry when the approval is opened (expiry needs no human and no
timer), and at once when someone decides. A decision is a compare-and-set on the approval
(a double click, or a click racing the expiry, is one decision); four eyes: an identity that
asked for the request may not decide it (``handler.core.approval.self_approval``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from handler.core.approval import (
    Approval,
    ApprovalState,
    Decision,
    LinkRefused,
    Preview,
    read_link,
    requesters,
    self_approval,
    sign_link,
)
from handler.core.approval_policy import ApprovalPolicy
from handler.core.followups import ApprovalTurn
from handler.core.models import (
    EVENT_APPROVAL_REQUESTED,
    EVENT_APPROVAL_TURN,
    AnyEvent,
    CloudEvent,
    DetachRequest,
    envelope,
    utcnow,
)
from handler.functions.ports import Publisher
from handler.functions.results import request_fields
from handler.store import ClaimState, Store
from handler.store.approvals import ApprovalBook
from handler.support.log import log_event

SYSTEM = "ecs-detach"  # who decides an expiry


class Answer(str, Enum):
    """What became of a decision someone sent."""

    DECIDED = "decided"  # this decision was taken
    ALREADY = "already"  # the same decision was taken before (a second click)
    CONFLICT = "conflict"  # the approval was decided otherwise before (or expired)
    UNKNOWN = "unknown"  # no such approval (or it is no longer kept)
    SELF_APPROVAL = "self_approval"  # four eyes: the decider asked for the request
    EXPIRED = "expired"  # too late: its expiry passed
    NO_IDENTITY = "no_identity"  # the decider is nobody (unauthenticated)


_HTTP = {
    Answer.DECIDED: 200,
    Answer.ALREADY: 200,
    Answer.CONFLICT: 409,
    Answer.UNKNOWN: 404,
    Answer.SELF_APPROVAL: 403,
    Answer.EXPIRED: 409,
    Answer.NO_IDENTITY: 403,
}


@dataclass(frozen=True)
class DecisionAnswer:
    answer: Answer
    approval: Approval | None
    detail: str

    @property
    def http_status(self) -> int:
        return _HTTP[self.answer]

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"result": self.answer.value, "detail": self.detail}
        if self.approval is not None:
            body["approval"] = summary(self.approval)
        return body


def summary(approval: Approval) -> dict[str, Any]:
    """An approval as the routes and the CLI show it (JSON-ready)."""
    request = approval.request
    data: dict[str, Any] = {
        "id": approval.id,
        "state": approval.state.value,
        "server_id": request.server_id,
        "volume_id": request.volume_id,
        "project_id": request.project_id,
        "force": bool(request.delete_flag),
        "reason": request.reason,
        "origin": request.origin,
        "requested_by": approval.requested_by,
        "created_at": approval.created_at.isoformat(),
        "expires_at": approval.expires_at.isoformat(),
        "preview": approval.preview.model_dump(mode="json"),
    }
    for name in ("decided_by", "comment", "outcome"):
        if getattr(approval, name) is not None:
            data[name] = getattr(approval, name)
    if approval.decided_at is not None:
        data["decided_at"] = approval.decided_at.isoformat()
    return data


class ApprovalDesk:
    def __init__(
        self,
        policy: ApprovalPolicy,
        book: ApprovalBook,
        store: Store,
        jobs: Publisher,
        results: Publisher,
        *,
        source: str,
        keep_s: float,
        link_secret: bytes | None = None,
        base_url: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.policy = policy
        self._book = book
        self._store = store
        self._jobs = jobs
        self._results = results
        self._source = source
        self._keep_s = keep_s
        self._link_secret = link_secret
        self._base_url = base_url.rstrip("/") if base_url else None
        self._clock = clock

    # -- the window of the rule "more than N disks of one server" -----------------------------

    def _slots(self, project_id: str, server_id: str) -> list[str]:
        limit = self.policy.rules.max_disks_per_server or 0
        return [f"approval-window:{project_id}:{server_id}:{index}" for index in range(limit)]

    def recent_disks(self, project_id: str, server_id: str, key: str) -> int:
        """Disks of this server other requests took ahead within the window."""
        holders = (self._store.holder(slot) for slot in self._slots(project_id, server_id))
        return sum(1 for holder in holders if holder is not None and holder != key)

    def count_disk(self, project_id: str, server_id: str, key: str) -> None:
        """This request goes ahead: one of the server's slots for the window (re-entrant)."""
        window = self.policy.rules.window_s
        for slot in self._slots(project_id, server_id):
            if self._store.acquire(slot, key, ttl_s=window):
                return

    # -- opening -------------------------------------------------------------------------------

    def open(self, request: DetachRequest, key: str, preview: Preview, *, by_device: bool) -> Approval:
        """Keep ``request`` for an approval: the approval, its expiry turn on the jobs topic and
        ``ecs-detach.approval_requested`` on the results topic (raise what the topics raise)."""
        now = self._clock()
        approval = Approval(
            id=uuid.uuid4().hex,
            key=key,
            request=request.model_copy(update={"idempotency_key": key}),
            preview=preview,
            requested_by=requesters(request),
            by_device=by_device,
            created_at=now,
            expires_at=now + timedelta(seconds=self.policy.expiry_s),
        )
        self._book.put(approval, keep_s=self._keep_s)
        self._turn(approval, delay_s=self.policy.expiry_s)
        self._results.publish(self.requested_event(approval).model_dump_json())
        log_event(
            "approval.requested",
            approval_id=approval.id,
            server_id=request.server_id,
            volume_id=request.volume_id,
            rules=preview.approval_rules,
            requested_by=approval.requested_by,
            expires_at=approval.expires_at.isoformat(),
        )
        return approval

    def requested_event(self, approval: Approval) -> CloudEvent[Any]:
        """``ecs-detach.approval_requested``: the approval, with the link to its page when a base
        URL is configured (the page itself asks for a signed link or credentials)."""
        event = AnyEvent(
            id=f"approval-{approval.id}",
            source=self._source,
            type=EVENT_APPROVAL_REQUESTED,
            subject=approval.subject,
            time=approval.created_at,
            data=approval,
        )
        if self._base_url:
            event = event.model_copy(update={"approvalurl": f"{self._base_url}/approvals/{approval.id}"})
        return event

    def _turn(self, approval: Approval, *, delay_s: float) -> None:
        request = approval.request
        turn = ApprovalTurn(
            **request_fields(request),
            approval_id=approval.id,
            expires_at=approval.expires_at,
            by_device=approval.by_device,
        )
        self._jobs.publish(
            envelope(turn, type_=EVENT_APPROVAL_TURN, source=self._source).model_dump_json(), delay=delay_s
        )

    # -- reading ---------------------------------------------------------------------------

    def get(self, approval_id: str) -> Approval | None:
        return self._book.get(approval_id)

    def recent(self, limit: int = 100) -> list[Approval]:
        return self._book.recent(limit)

    # -- deciding --------------------------------------------------------------------------

    def decide(self, approval_id: str, *, approve: bool, by: str, comment: str | None) -> DecisionAnswer:
        """Take one decision (four eyes, once). A decided approval's turn is published again on
        every repeat while its request has not ended, so a turn lost to a failed publish is
        sent by the next click."""
        approval = self._book.get(approval_id)
        refused = self._refusal(approval_id, approval, approve=approve, by=by)
        if refused is not None:
            return refused
        decision = Decision(approve, by, (comment or "").strip()[:1024] or None, self._clock())
        current, decided = self._book.decide(approval_id, decision.state, decision)
        if current is None:
            return DecisionAnswer(Answer.UNKNOWN, None, f"no approval {approval_id}")
        if current.outcome is None and current.state in (ApprovalState.APPROVED, ApprovalState.DENIED):
            self._turn(current, delay_s=0.0)
        if not decided:
            same = Answer.ALREADY if current.state is decision.state else Answer.CONFLICT
            by_whom = f" by {current.decided_by}" if current.decided_by else ""
            return DecisionAnswer(same, current, f"approval {approval_id} is {current.state.value}{by_whom}")
        log_event(
            "approval.decided",
            approval_id=approval_id,
            state=current.state.value,
            by=by,
            comment=decision.comment,
        )
        # The request's audit trail (docs/history.md): who decided, joined by the request's key.
        log_event(
            "detach.approved" if approve else "detach.denied",
            idempotency_key=current.key,
            approval_id=approval_id,
            by=by,
            comment=decision.comment,
        )
        what = "approved: the detach proceeds" if approve else "denied: the request is rejected"
        return DecisionAnswer(Answer.DECIDED, current, f"{what} ({by})")

    def _refusal(
        self, approval_id: str, approval: Approval | None, *, approve: bool, by: str
    ) -> DecisionAnswer | None:
        """Why this decision cannot be taken at all (nobody, no such approval, four eyes, too
        late, replaced by another approval of its request); None when it can."""
        if not by.strip():
            return DecisionAnswer(Answer.NO_IDENTITY, None, "a decision needs the approver's identity")
        if approval is None:
            return DecisionAnswer(Answer.UNKNOWN, None, f"no approval {approval_id}")
        if approve and self_approval(by, approval):
            log_event("approval.self_approval_refused", level=logging.WARNING, approval_id=approval_id, by=by)
            detail = f"{by} asked for this detach and may not approve it (four eyes)"
            return DecisionAnswer(Answer.SELF_APPROVAL, approval, detail)
        return self._too_late(approval) if approval.state is ApprovalState.PENDING else None

    def _too_late(self, approval: Approval) -> DecisionAnswer | None:
        """Why a pending approval can no longer be decided: its expiry passed, or its request
        came again and waits for another approval; None when it can."""
        if self._clock() >= approval.expires_at:
            self._turn(approval, delay_s=0.0)  # its expiry turn may be late: end it now
            detail = f"approval {approval.id} expired at {approval.expires_at.isoformat()}"
            return DecisionAnswer(Answer.EXPIRED, approval, detail)
        waiting_for = self._waiting_for(approval.key)
        if waiting_for not in (None, approval.id):
            # The sender's retry opened another approval for the same request: deciding this one
            # would change nothing (its turn finds the request waiting for the other), so it ends
            # now, as its turn would end it, and the approver is told which one counts.
            self.supersede(approval)
            detail = f"approval {approval.id} was replaced by approval {waiting_for} (its request came again)"
            return DecisionAnswer(Answer.CONFLICT, self._book.get(approval.id) or approval, detail)
        return None

    def _waiting_for(self, key: str) -> str | None:
        """The approval the request of ``key`` waits for, as its record names it (None: none)."""
        claim = self._store.peek(key)
        if claim is None or claim.state is ClaimState.DONE:
            return None
        named = claim.progress.get("approval")
        return str(named) if named else None

    def expire(self, approval: Approval) -> Approval:
        """Its expiry passed undecided: expired (unless a decision got there first)."""
        decision = Decision(False, SYSTEM, f"no decision within {self.policy.expiry_s:g} s", self._clock())
        current, _ = self._book.decide(approval.id, ApprovalState.EXPIRED, decision)
        return current or approval

    def supersede(self, approval: Approval) -> None:
        """Its request's key no longer waits for it (a crash between opening it and parking
        the key, then a retry that opened another): it ends without a result of its own."""
        decision = Decision(False, SYSTEM, "its request was taken over by another approval", self._clock())
        self._book.decide(approval.id, ApprovalState.SUPERSEDED, decision)

    def settle(self, approval_id: str, outcome: str) -> None:
        self._book.settle(approval_id, outcome)

    def sweep(self) -> int:
        """Publish the turn of every pending approval past its expiry (a timer's backstop for a
        lost expiry turn); how many."""
        now = self._clock()
        overdue = [
            a for a in self._book.recent(1000) if a.state is ApprovalState.PENDING and now >= a.expires_at
        ]
        for approval in overdue:
            self._turn(approval, delay_s=0.0)
        return len(overdue)

    # -- the signed link -------------------------------------------------------------------

    @property
    def links(self) -> bool:
        return self._link_secret is not None

    def link(self, approval_id: str, who: str, *, ttl_s: float | None = None) -> str:
        """The path (with the base URL when configured) of a one-time link by which ``who``
        decides ``approval_id``; valid until the approval expires (or ``ttl_s``)."""
        if self._link_secret is None:
            raise LinkRefused("signed links are off: set ECS_DETACH_APPROVAL_LINK_SECRET")
        approval = self._book.get(approval_id)
        if approval is None:
            raise LinkRefused(f"no approval {approval_id}")
        expires = approval.expires_at.timestamp()
        if ttl_s is not None:
            expires = min(expires, self._clock().timestamp() + ttl_s)
        token = sign_link(self._link_secret, approval_id, who, int(expires))
        return f"{self._base_url or ''}/approvals/{approval_id}/link/{token}"

    def link_identity(self, approval_id: str, token: str) -> str:
        """Whom the link was made for (``LinkRefused`` when it does not verify)."""
        if self._link_secret is None:
            raise LinkRefused("signed links are off")
        return read_link(self._link_secret, approval_id, token, self._clock().timestamp())
