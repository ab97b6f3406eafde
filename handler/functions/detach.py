"""The detach function: one validated request → one detach call → ``ecs-detach.accepted``.

Steps, in order: resolve the project; a dry run checks everything and reports (it claims no
key, takes no lock and no slot); the idempotency claim (a duplicate gets the original outcome,
no second call); the policy's scope rules; the circuit breaker; resolve a device to its volume,
read the server and its disks and apply the policy's disk rules (never the system disk…); the
server and volume locks (held by another running detach: the request is *queued*); the blast
radius; then the one mutating call, whose job id is noted before the accepted event is
published.

Every request ends in one ``DetachStatus`` (``handler.core.outcomes``):

* final — ``ACCEPTED`` (a job handed to the jobs topic), ``ALREADY_DETACHED`` or ``REJECTED``
  (with a result event): kept under the request's key, and every duplicate is answered with it;
* ``QUEUED`` — kept durably (the key's record is parked, an ``ecs-detach.queued`` event waits
  on the jobs topic) until its turn (``take_turn``), which ends like any request;
* ``DRY_RUN`` (with a result event) and ``RETRY`` (throttled, busy, no answer, blast radius,
  circuit open, a topic down) leave the key free for the real or the retried request.

Nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from handler.cloud import ApiError, DetachAnswer, TransportError
from handler.core.errors import Disposition, classify_detach_error
from handler.core.models import (
    EVENT_ACCEPTED,
    EVENT_QUEUED,
    DetachAccepted,
    DetachRequest,
    Outcome,
    envelope,
    utcnow,
)
from handler.core.outcomes import DetachStatus, completes_key
from handler.core.policy import (
    DiskFacts,
    SafetyPolicy,
    Verdict,
    check_disk,
    check_scope,
    is_system_disk,
    needs_block_devices,
    volume_at,
)
from handler.core.polling import PollSchedule
from handler.core.resources import BlockDevice, Volume
from handler.functions.ports import DetachApi, Publisher, VolumeApi
from handler.functions.results import publish_result, request_fields
from handler.guards.blast import BlastRadius
from handler.guards.idempotency import Guard, Locks, request_key
from handler.store import Acquired, Claim, ClaimState, Taken
from handler.support.log import log_event
from handler.topics import TopicError

if TYPE_CHECKING:
    # Only a function whose approval policy may ask for approvals has a desk (built, and its
    # module imported, by handler.entry.runtime.build_desk): a cold start without one skips it,
    # and the approvals (handler.core.approval), imported by the steps that need a desk. The
    # flow's later messages (handler.core.followups) likewise: a detach that is accepted makes
    # none, so only the steps that make one import them.
    from handler.core.approval import Approval
    from handler.core.followups import ApprovalTurn, DetachQueued, DetachResult
    from handler.functions.approvals import ApprovalDesk

_RETRY_SOON_S = 5.0  # throttling or no answer: the first backoff step

_STATUS = {
    Outcome.ALREADY_DETACHED: DetachStatus.ALREADY_DETACHED,
    Outcome.REJECTED: DetachStatus.REJECTED,
    Outcome.DRY_RUN: DetachStatus.DRY_RUN,
}


class DetachOutcome(NamedTuple):
    status: DetachStatus
    request: DetachRequest
    accepted: DetachAccepted | None = None  # ACCEPTED
    result: DetachResult | None = None  # ALREADY_DETACHED, REJECTED, DRY_RUN
    job_id: str | None = None  # ACCEPTED, DUPLICATE
    retry_after_s: float | None = None  # RETRY; QUEUED: when its turn is tried again
    reason: str = ""
    original: str | None = None  # DUPLICATE: the original request's outcome
    error_code: str | None = None  # REJECTED, and a DUPLICATE of a refusal
    queued: DetachQueued | None = None  # QUEUED during a turn: the event to try again later
    approval_id: str | None = None  # PENDING_APPROVAL, and a DUPLICATE of a pending request

    @property
    def key_record(self) -> dict[str, Any]:
        """What the request's key keeps when this outcome is final (``completes_key``)."""
        record: dict[str, Any] = {"outcome": self.status.value}
        if self.job_id:
            record["job_id"] = self.job_id
        if self.error_code:
            record["error_code"] = self.error_code
        return record


# A plain class, not a dataclass: it is made at import on a detach cold start, where a
# dataclass costs about 0.55 ms to create. Nothing compares or prints a call, so it has no
# __eq__ or __repr__.
class _Call:
    """One request on its way through the steps."""

    __slots__ = (
        "attempt",
        "by_device",
        "facts",
        "key",
        "locks",
        "progress",
        "project_id",
        "request",
        "resumed",
        "turn",
    )

    def __init__(
        self,
        request: DetachRequest,
        project_id: str,
        key: str,
        *,
        turn: DetachQueued | None = None,
        progress: Mapping[str, Any] | None = None,
        attempt: int = 1,
        by_device: bool = False,
        resumed: bool = False,
    ) -> None:
        self.request = request
        self.project_id = project_id
        self.key = key
        self.turn = turn  # a queued request taking its turn
        self.locks: Locks | None = None
        self.progress: Mapping[str, Any] = {} if progress is None else progress
        self.attempt = attempt  # above 1: an earlier owner of the key died, maybe holding its locks
        self.facts: DiskFacts | None = None  # what the disk rules were checked on (for an approval)
        self.by_device = by_device  # the request named a device: its volume was resolved (for an approval)
        self.resumed = resumed  # taken by the relay: not ending now leaves its record for a later sweep


class ApprovalStep(NamedTuple):
    """What an approval turn did: ``what`` (the request's status, or ``stale``/``waiting``),
    its ``outcome`` when the request went on, and the turn to send again after ``delay_s``."""

    what: str
    outcome: DetachOutcome | None = None
    again: ApprovalTurn | None = None
    delay_s: float = 0.0


def _waiting(progress: Mapping[str, Any]) -> str:
    """What a parked request waits for, as its duplicates are told."""
    if "queued" in progress:
        return "queued"
    return "pending_approval" if "approval" in progress else "accepted"


class DetachFunction:
    def __init__(
        self,
        ecs: DetachApi,
        volumes: VolumeApi,
        jobs: Publisher,
        results: Publisher,
        *,
        policy: SafetyPolicy,
        guard: Guard,
        blast: BlastRadius,
        default_project_id: str | None,
        source: str,
        schedule: PollSchedule,
        poll_timeout_s: float,
        busy_retry_s: float,
        queue_timeout_s: float,
        queue_check_s: float,
        dry_run: bool = False,
        approvals: ApprovalDesk | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ecs = ecs
        self._volumes = volumes
        self._jobs = jobs
        self._results = results
        self._policy = policy
        self._guard = guard
        self._blast = blast
        self._default_project_id = default_project_id
        self._source = source
        self._schedule = schedule
        self._poll_timeout = timedelta(seconds=poll_timeout_s)
        self._busy_retry_s = busy_retry_s
        self._queue_timeout = timedelta(seconds=queue_timeout_s)
        self._queue_check_s = queue_check_s
        self._dry_run = dry_run
        self._approvals = approvals
        self._clock = clock

    @property
    def guard(self) -> Guard:
        """The idempotency guard, whose outbox the relay sweeps (``handler.functions.relay``)."""
        return self._guard

    def __call__(self, request: DetachRequest) -> DetachOutcome:
        log_event(
            "detach.requested",
            server_id=request.server_id,
            volume_id=request.volume_id,
            device=request.device,
            project_id=request.project_id or self._default_project_id,
            force=bool(request.delete_flag),
            dry_run=request.dry_run or self._dry_run,
            idempotency_key=request_key(request, p)
            if (p := request.project_id or self._default_project_id)
            else None,
            alert_id=request.alert_id,
            origin=request.origin,
            reason=request.reason,
        )
        project_id = request.project_id or self._default_project_id
        if project_id is None:
            reason = "no project_id in the request or credentials"
            return self._finish(request, Outcome.REJECTED, "MissingProjectId", reason)
        request = request.model_copy(update={"project_id": project_id})
        if request.dry_run or self._dry_run:
            return self._rehearse(request, project_id)
        call = _Call(request, project_id, request_key(request, project_id))
        # The request, noted with its claim: should this instance die before the job is noted
        # and nobody send the request again, the relay resumes it once the claim lapses. A
        # fresh claim notes it in the same step; one that found progress notes it below, once
        # ``_earlier`` has seen what that progress says.
        noted = {"request": request.model_dump(mode="json")}
        claim = self._guard.claim(call.key, request, project_id, resume=noted)
        outcome = self._earlier(call, claim)
        if outcome is None:
            if claim.progress:
                self._guard.note(call.key, noted, resume=True)
            outcome = self._steps(call)
            self._settle(call, outcome)
        return outcome

    def take_turn(self, queued: DetachQueued) -> DetachOutcome:
        """The turn of a queued request (an ``ecs-detach.queued`` event of the jobs topic): make
        its detach now if the server and volume are free, else it stays queued (``QUEUED`` with
        the event to try again). Ends like any request, in exactly one result. A turn delivered
        before its ``not_before`` (a backend without delays) touches nothing and comes back then."""
        request = DetachRequest.model_validate(request_fields(queued))
        early_s = (queued.not_before - self._clock()).total_seconds()
        if early_s > 0:
            reason = "its turn is not due yet"
            return DetachOutcome(
                DetachStatus.QUEUED, request, retry_after_s=early_s, reason=reason, queued=queued
            )
        call = _Call(request, queued.project_id, queued.idempotency_key, turn=queued)
        claim = self._guard.claim(call.key, request, call.project_id)
        if claim.state is ClaimState.IN_PROGRESS:  # another delivery of this turn is at it
            return self._still_queued(call, max(claim.expires_in_s or 1.0, 1.0), "its record is busy")
        if claim.state is not ClaimState.NEW:  # ended already (or the key was reused): nothing to do
            log_event("detach.turn_stale", idempotency_key=call.key, state=claim.state.value)
            return self._duplicate(call, claim)
        call.progress, call.attempt = claim.progress, claim.attempt
        if "job_id" not in claim.progress and self._clock() >= queued.deadline:
            reason = f"still waiting for another detach on server {request.server_id} at the deadline"
            outcome = self._finish(request, Outcome.REJECTED, "QueueTimeout", reason)
        else:
            outcome = self._steps(call)
            if outcome.status is DetachStatus.RETRY:  # accepted as queued: it stays queued, not dropped
                outcome = self._still_queued(call, outcome.retry_after_s or _RETRY_SOON_S, outcome.reason)
        self._settle(call, outcome)
        return outcome

    def relay(self, taken: Taken) -> DetachOutcome:
        """Go on with a record the outbox relay took (``Guard.take_outbox``). With a job noted,
        its detach call was made, its event maybe never published (the owner died, or its
        publish failed and nobody retried): the event is published. Without one, its owner died
        after claiming the key, maybe during its detach call, and its claim lapsed: the request
        runs again from its checks, which find the disk detaching or gone when that call was
        made (and report it), else make the call. Ends like the owner would have, in one
        result; ``RETRY`` leaves the record for a later sweep (the outbox's age, or this claim)."""
        request = DetachRequest.model_validate(taken.progress["request"])
        assert request.project_id is not None  # noted after the project was resolved
        call = _Call(
            request,
            request.project_id,
            taken.key,
            progress=taken.progress,
            attempt=taken.attempt,
            resumed=True,
        )
        outcome = self._steps(call)
        self._settle(call, outcome)
        return outcome

    # -- approvals (handler/functions/approvals.py, docs/approvals.md) ---------------------------

    @property
    def approvals(self) -> ApprovalDesk | None:
        """The approval desk (None: no request ever waits for an approval)."""
        return self._approvals

    def take_approval(self, turn: ApprovalTurn) -> ApprovalStep:
        """The turn of a request kept for an approval (an ``ecs-detach.approval_turn`` event):
        approved → the policy and the disk are checked again and the detach goes the normal way
        (it may queue); denied → rejected (``ApprovalDenied``); undecided at the expiry →
        rejected (``ApprovalExpired``); undecided before it → nothing yet. Under the key's claim,
        so a request ends in exactly one result however many turns arrive."""
        from handler.core.approval import ApprovalState  # noqa: PLC0415 (with a desk only)

        desk = self._approvals
        approval = desk.get(turn.approval_id) if desk is not None else None
        if desk is None or approval is None:
            log_event("approval.turn_stale", approval_id=turn.approval_id, reason="no such approval")
            return ApprovalStep("stale")
        request = DetachRequest.model_validate(request_fields(turn))
        call = _Call(request, turn.project_id, turn.idempotency_key, by_device=turn.by_device)
        asked = request.model_copy(update={"volume_id": None}) if turn.by_device else request
        claim = self._guard.claim(call.key, asked, call.project_id)  # the key's fingerprint: as asked
        if claim.state is ClaimState.IN_PROGRESS:  # a sender's retry holds the key for a moment
            return ApprovalStep("waiting", again=turn, delay_s=max(claim.expires_in_s or 1.0, 1.0))
        if "queued" in claim.progress:  # approved before and queued: its queued turn goes on
            self._guard.park(call.key, {})
            return ApprovalStep("stale")
        if claim.state is not ClaimState.NEW or claim.progress.get("approval") != approval.id:
            if claim.state is ClaimState.NEW:  # the key waits for something else: leave it so
                self._hand_back(call.key, claim.progress)
            if approval.state is ApprovalState.PENDING:
                desk.supersede(approval)
            log_event("approval.turn_stale", approval_id=approval.id, state=claim.state.value)
            return ApprovalStep("stale")
        call.progress, call.attempt = claim.progress, claim.attempt
        if approval.state is ApprovalState.PENDING:
            if self._clock() < approval.expires_at:  # early (a redelivery, a sweep): not yet
                self._guard.park(call.key, {})
                left = (approval.expires_at - self._clock()).total_seconds()
                return ApprovalStep("waiting", again=turn, delay_s=left)
            approval = desk.expire(approval)
        outcome = self._decided(call, approval)
        approved = approval.state is ApprovalState.APPROVED
        if outcome.status is DetachStatus.RETRY and approved:  # not now: it waits its turn as queued
            if call.locks is not None:
                self._guard.unlock(call.locks)
                call.locks = None
            outcome = self._queue(call, outcome.reason)
        # Not even queued (a topic down), or a denial or an expiry whose result the results topic
        # refused, which is never queued: its queued turn would ask again, or detach the disk once
        # no rule matches any more. The turn comes back, to the same decision.
        if outcome.status is DetachStatus.RETRY:
            self._guard.park(call.key, {})
            raise TopicError(f"approval {approval.id}: {outcome.reason}")
        self._settle(call, outcome)
        desk.settle(approval.id, outcome.status.value)
        return ApprovalStep(outcome.status.value, outcome=outcome)

    def _hand_back(self, key: str, progress: Mapping[str, Any]) -> None:
        """A claim taken only to look: parked again as it was (or freed when it held nothing)."""
        if progress:
            self._guard.park(key, {})
        else:
            self._guard.release(key)

    def _decided(self, call: _Call, approval: Approval) -> DetachOutcome:
        """What a decided approval makes of its request."""
        from handler.core.approval import ApprovalState  # noqa: PLC0415 (with a desk only)

        who = approval.decided_by or "nobody"
        because = f": {approval.comment}" if approval.comment else ""
        if approval.state is ApprovalState.APPROVED:
            log_event("approval.proceeds", approval_id=approval.id, by=who)
            return self._steps(call)
        if approval.state is ApprovalState.DENIED:
            reason = f"denied by {who}{because}"
            return self._finish(call.request, Outcome.REJECTED, "ApprovalDenied", reason)
        reason = f"no decision before {approval.expires_at.isoformat()}"
        return self._finish(call.request, Outcome.REJECTED, "ApprovalExpired", reason)

    def _approval_gate(self, call: _Call) -> DetachOutcome | None:
        """After every check passed: whether a person must approve first. None to go on (no
        approval needed, or this request's approval was given); else ``PENDING_APPROVAL``,
        the request kept with its preview and its key parked."""
        desk = self._approvals
        if desk is None or not desk.policy.enabled:
            return None
        from handler.core.approval import ApprovalState  # noqa: PLC0415 (with a desk only)

        request, facts = call.request, call.facts
        assert request.volume_id is not None
        assert facts is not None
        granted = call.progress.get("approval")
        if granted:
            approval = desk.get(str(granted))
            if approval is not None and approval.state is ApprovalState.APPROVED:
                desk.count_disk(call.project_id, request.server_id, call.key)
                return None
        try:
            volume = self._volumes.show_volume(request.volume_id, project_id=call.project_id)
        except ApiError as error:
            return self._on_error(request, error)
        except TransportError as error:
            return self._retry(request, _RETRY_SOON_S, f"no answer from EVS: {error}")
        return self._ask_approval(call, desk, facts, volume)

    def _ask_approval(
        self, call: _Call, desk: ApprovalDesk, facts: DiskFacts, volume: Volume
    ) -> DetachOutcome | None:
        """The approval rules on what was read; a matching request is kept for its approval."""
        from handler.core.approval import (  # noqa: PLC0415 (with a desk only)
            ApprovalFacts,
            Preview,
            approval_rules,
            passed_checks,
            what_will_happen,
        )

        request = call.request
        assert request.volume_id is not None
        device = next((a.device for a in facts.server.volumes_attached if a.id == request.volume_id), None)
        shared = volume.multiattach or len({a.server_id for a in volume.attachments}) > 1
        seen = ApprovalFacts(
            project_id=call.project_id,
            server=facts.server,
            volume=volume,
            device=device or request.device,
            system_disk=is_system_disk(request.volume_id, facts),
            shared=shared,
            recent_disks=desk.recent_disks(call.project_id, request.server_id, call.key),
        )
        rules = approval_rules(request, seen, desk.policy)
        if not rules:
            desk.count_disk(call.project_id, request.server_id, call.key)
            return None
        preview = Preview(
            server_name=facts.server.name,
            server_status=facts.server.status,
            device=seen.device,
            size_gb=volume.size,
            volume_type=volume.volume_type,
            shared=shared,
            system_disk=seen.system_disk,
            checks_passed=passed_checks(request, seen, self._policy),
            approval_rules=rules,
            will=what_will_happen(request, seen.device),
        )
        try:
            approval = desk.open(request, call.key, preview, by_device=call.by_device)
        except TopicError as error:
            return self._retry(request, _RETRY_SOON_S, f"a topic did not take the approval: {error}")
        self._guard.park(call.key, {"approval": approval.id})
        call.progress = {**call.progress, "approval": approval.id}
        reason = f"waiting for an approval until {approval.expires_at.isoformat()}: {'; '.join(rules)}"
        log_event(
            "detach.pending_approval",
            server_id=request.server_id,
            volume_id=request.volume_id,
            idempotency_key=call.key,
            approval_id=approval.id,
            rules=rules,
            expires_at=approval.expires_at.isoformat(),
        )
        return DetachOutcome(DetachStatus.PENDING_APPROVAL, request, reason=reason, approval_id=approval.id)

    # -- before any step: the key's earlier history ------------------------------------------

    def _earlier(self, call: _Call, claim: Claim) -> DetachOutcome | None:
        """The answer when this request was (or is being) handled already; None to go on."""
        if claim.state is ClaimState.CONFLICT:
            reason = f"idempotency key {call.key!r} was used before for a different request"
            return self._finish(call.request, Outcome.REJECTED, "IdempotencyConflict", reason)
        if claim.state is ClaimState.DONE:
            return self._duplicate(call, claim)
        known = claim.progress
        if claim.state is ClaimState.IN_PROGRESS:
            if "queued" in known or "job_id" in known or "approval" in known:  # waiting / about to publish
                return self._duplicate(call, claim)
            wait = min(max(claim.expires_in_s or _RETRY_SOON_S, 1.0), self._busy_retry_s)
            return self._retry(call.request, wait, f"the same request is being handled (key {call.key!r})")
        if ("queued" in known or "approval" in known) and "job_id" not in known:  # a sender's retry
            self._guard.park(call.key, {})  # the turn (a queued event) takes it over, not this call
            return self._duplicate(call, claim)
        call.progress, call.attempt = known, claim.attempt
        return None

    def _duplicate(self, call: _Call, claim: Claim) -> DetachOutcome:
        known = (claim.record if claim.state is ClaimState.DONE else claim.progress) or {}
        original = str(known.get("outcome") or _waiting(known))
        if claim.state is ClaimState.CONFLICT:  # a queued event whose key now names another request
            original = "conflict"
        job_id = known.get("job_id")
        log_event("detach.duplicate", idempotency_key=call.key, job_id=job_id, original=original)
        return DetachOutcome(
            DetachStatus.DUPLICATE,
            call.request,
            job_id=job_id,
            original=original,
            error_code=known.get("error_code"),
            reason=f"the same request was handled before: {original}",
            approval_id=known.get("approval") if original == "pending_approval" else None,
        )

    # -- the steps -----------------------------------------------------------------------------

    def _steps(self, call: _Call) -> DetachOutcome:
        if "job_id" in call.progress:  # an earlier attempt died (or its publish failed) after the call
            log_event("detach.resumed", idempotency_key=call.key, job_id=call.progress["job_id"])
            answer = DetachAnswer(str(call.progress["job_id"]), call.progress.get("request_id"), 0)
            call.request = call.request.model_copy(update={"volume_id": call.progress["volume_id"]})
            return self._accepted(call, answer)
        refused = check_scope(call.request, call.project_id, self._policy)
        if not refused.allowed:
            return self._refused(call.request, refused, call.key)
        if self._blast.breaker_open(call.project_id):
            reason = f"too many detach jobs failed recently in project {call.project_id}: not acting now"
            return self._retry(call.request, self._busy_retry_s, f"CircuitOpen: {reason}")
        checked = self._resolve_and_check(call)
        if checked is not None:
            return checked
        gated = self._approval_gate(call)
        if gated is not None:
            return gated
        locked = self._lock(call)
        return locked if locked is not None else self._mutate(call)

    def _rehearse(self, request: DetachRequest, project_id: str) -> DetachOutcome:
        """A dry run: every check the real request would meet, then a report of what it would do.
        It claims no key, takes no lock and no blast-radius slot, and calls nothing that changes."""
        call = _Call(request, project_id, request_key(request, project_id))
        refused = check_scope(request, project_id, self._policy)
        if not refused.allowed:
            return self._refused(request, refused, call.key)
        checked = self._resolve_and_check(call)
        if checked is not None:
            return checked
        request = call.request
        reason = f"would detach volume {request.volume_id} from server {request.server_id}" + (
            " (force)" if request.delete_flag else ""
        )
        return self._finish(request, Outcome.DRY_RUN, "DryRun", reason)

    def _resolve_and_check(self, call: _Call) -> DetachOutcome | None:
        """Resolve the volume, read the server and its disks, apply the policy."""
        try:
            return self._check(call)
        except ApiError as error:
            return self._on_error(call.request, error)
        except TransportError as error:
            return self._retry(call.request, _RETRY_SOON_S, f"no answer from the cloud: {error}")

    def _check(self, call: _Call) -> DetachOutcome | None:
        """The policy's disk rules on what the cloud says now; raises the cloud's errors."""
        request = call.request
        server = self._ecs.show_server(request.server_id, project_id=call.project_id)
        devices: list[BlockDevice] = []
        if needs_block_devices(request, server):  # the server's own view settles most requests
            devices = self._ecs.list_block_devices(request.server_id, project_id=call.project_id)
        volume_id = request.volume_id or volume_at(request.device, server, devices)
        if volume_id is None:
            reason = f"no disk is attached at {request.device} on server {request.server_id}"
            return self._finish(request, Outcome.REJECTED, "DeviceNotAttached", reason)
        if request.volume_id is None:
            log_event(
                "detach.resolved", server_id=request.server_id, device=request.device, volume_id=volume_id
            )
            call.request = request = request.model_copy(update={"volume_id": volume_id})
            call.by_device = True
        attached = any(a.id == volume_id for a in server.volumes_attached) or any(
            d.volume_id == volume_id for d in devices
        )
        if not attached:
            return self._not_attached_here(call, volume_id)
        # Read EVS only when the policy asks about shared disks: one call fewer when it does not.
        shared = not self._policy.allow_shared_disks and self._shared(volume_id, call.project_id)
        call.facts = DiskFacts(server, devices, shared=shared)
        verdict = check_disk(request, volume_id, call.facts, self._policy)
        return None if verdict.allowed else self._refused(request, verdict, call.key)

    def _not_attached_here(self, call: _Call, volume_id: str) -> DetachOutcome:
        """The volume is not attached to the server: already detached when EVS says it is
        attached nowhere (or is gone), refused when it sits on another server."""
        request = call.request
        try:
            volume = self._volumes.show_volume(volume_id, project_id=call.project_id)
        except ApiError as error:
            if error.status != 404:
                raise
            return self._finish(request, Outcome.ALREADY_DETACHED, "VolumeNotFound", error.message)
        elsewhere = sorted({a.server_id for a in volume.attachments} - {request.server_id})
        if elsewhere:
            reason = f"volume {volume_id} is not attached to server {request.server_id}; EVS says it is attached to {', '.join(elsewhere)}"  # noqa: E501
            return self._finish(request, Outcome.REJECTED, "VolumeNotAttached", reason)
        reason = f"volume {volume_id} is not attached to any server"
        return self._finish(request, Outcome.ALREADY_DETACHED, "VolumeNotAttached", reason)

    def _shared(self, volume_id: str, project_id: str) -> bool:
        """A multi-attach volume, or one attached to several servers (EVS knows)."""
        volume = self._volumes.show_volume(volume_id, project_id=project_id)
        return volume.multiattach or len({a.server_id for a in volume.attachments}) > 1

    def _lock(self, call: _Call) -> DetachOutcome | None:
        """The server and volume locks and a blast-radius slot, in one store call (nothing is
        taken unless all is): ``QUEUED`` when another detach there is running, ``RETRY`` when the
        project's window is full."""
        request = call.request
        assert request.volume_id is not None
        locks = self._guard.locks(call.project_id, request.server_id, request.volume_id, call.key)
        slots = self._blast.slots(call.project_id, call.key)
        acquired = self._guard.acquire(locks, slots=slots, slot_ttl_s=self._blast.window_s)
        if acquired is Acquired.LOCKED:
            reason = f"another detach on server {request.server_id} or volume {request.volume_id} is running"
            return self._queue(call, reason)
        if acquired is Acquired.NO_SLOT:
            reason = (
                f"the blast-radius limit of project {call.project_id} is reached: no more detaches for now"
            )
            return self._retry(request, self._busy_retry_s, f"BlastRadiusLimit: {reason}")
        call.locks = locks
        return None

    def _mutate(self, call: _Call) -> DetachOutcome:
        """The one mutating call, within the blast radius (its slot taken with the locks); its
        job id noted before publishing."""
        request = call.request
        assert request.volume_id is not None
        try:
            answer = self._ecs.detach_volume(
                request.server_id,
                request.volume_id,
                project_id=call.project_id,
                force=bool(request.delete_flag),
            )
        except ApiError as error:
            return self._not_detached(call, self._on_error(request, error))
        except TransportError as error:
            return self._not_detached(
                call, self._retry(request, _RETRY_SOON_S, f"no answer from ECS: {error}")
            )
        # Before publishing: a crash or a failed publish now is resumed from here, not repeated.
        # The record enters the outbox with the request, so the relay can publish the accepted
        # event from it alone if nobody else does; completing the key takes it out (published).
        call.progress = {
            "job_id": answer.job_id,
            "request_id": answer.request_id,
            "volume_id": request.volume_id,
            "request": request.model_dump(mode="json"),
        }
        self._guard.note(call.key, call.progress, outbox=True)
        return self._accepted(call, answer)

    def _not_detached(self, call: _Call, outcome: DetachOutcome) -> DetachOutcome:
        """The detach call failed: it does not count towards the blast radius."""
        self._blast.give_back(call.project_id, call.key)
        return outcome

    # -- endings -------------------------------------------------------------------------------

    def _settle(self, call: _Call, outcome: DetachOutcome) -> None:
        """Keep a final outcome for duplicates, park a waiting one, free the key otherwise;
        give back the locks unless a job now holds them (the poll function frees them)."""
        if outcome.status is DetachStatus.ACCEPTED:
            # Not synced (one sync, about 80 µs of CPU, less per detach): a power loss that rolls
            # this back leaves the key in progress with its job in the outbox, as a crash right
            # after the publish does, and the relay repairs both alike (it publishes the event
            # again; the poll function claims each job's result once). Everything the
            # guarantees rest on (the claim, the locks, the job's note, the publish) is synced.
            self._guard.complete(call.key, outcome.key_record, synced=False)
            return
        locks = call.locks or self._inherited_locks(call)
        job_runs = "job_id" in call.progress  # its locks are the job's until the poll sees it end
        if locks is not None and outcome.status is not DetachStatus.QUEUED and not job_runs:
            self._guard.unlock(locks)
        if completes_key(outcome.status):
            self._guard.complete(call.key, outcome.key_record)
        elif outcome.status is DetachStatus.QUEUED:
            since = call.turn.queued_at if call.turn is not None else self._clock()
            self._guard.park(call.key, {"queued": {"since": since.isoformat()}})
        elif job_runs:  # the job exists, its event could not be published yet
            self._guard.park(call.key, {})
        elif outcome.status is DetachStatus.RETRY and not call.resumed:
            self._guard.release(call.key)

    def _inherited_locks(self, call: _Call) -> Locks | None:
        """The locks an earlier owner of the key may have died holding (they are the key's, and
        freeing them is a no-op when they are not held): a request that ends without reaching
        its own locks must not leave them to block its server until they expire."""
        volume_id = call.request.volume_id
        if call.attempt <= 1 or volume_id is None:
            return None
        return self._guard.locks(call.project_id, call.request.server_id, volume_id, call.key)

    def _accepted(self, call: _Call, answer: DetachAnswer) -> DetachOutcome:
        request = call.request.model_copy(update={"idempotency_key": call.key})
        now = self._clock()
        first = timedelta(seconds=self._schedule.next_delay(0, 0.0))
        accepted = DetachAccepted(
            **request_fields(request),
            job_id=answer.job_id,
            request_id=answer.request_id,
            accepted_at=now,
            not_before=now + first,
            deadline=now + self._poll_timeout,
        )
        event = envelope(accepted, type_=EVENT_ACCEPTED, source=self._source)
        try:
            self._jobs.publish(event.model_dump_json(), delay=first.total_seconds())
        except TopicError as error:  # the job runs; its event goes out with the next try
            return self._retry(
                request, _RETRY_SOON_S, f"the jobs topic did not take job {answer.job_id}: {error}"
            )
        log_event(
            "detach.accepted",
            server_id=request.server_id,
            volume_id=request.volume_id,
            job_id=answer.job_id,
            request_id=answer.request_id,
            http_status=answer.status_code,
            idempotency_key=call.key,
            alert_id=request.alert_id,
        )
        return DetachOutcome(DetachStatus.ACCEPTED, request, accepted=accepted, job_id=answer.job_id)

    def _queue(self, call: _Call, reason: str) -> DetachOutcome:
        """Wait for the running detach: an ``ecs-detach.queued`` event comes back to try again."""
        from handler.core.followups import DetachQueued  # noqa: PLC0415 (the imports above)

        if call.turn is not None:
            return self._still_queued(call, self._queue_check_s, reason)
        now = self._clock()
        # As asked (by device: no volume), so that its turn's claim matches the key's fingerprint.
        asked = {"volume_id": None} if call.by_device else {}
        request = call.request.model_copy(update={"idempotency_key": call.key, **asked})
        queued = DetachQueued(
            **request_fields(request),
            queued_at=now,
            not_before=now + timedelta(seconds=self._queue_check_s),
            deadline=now + self._queue_timeout,
        )
        event = envelope(queued, type_=EVENT_QUEUED, source=self._source)
        try:
            self._jobs.publish(event.model_dump_json(), delay=self._queue_check_s)
        except TopicError as error:
            return self._retry(
                request, _RETRY_SOON_S, f"the jobs topic did not take the queued request: {error}"
            )
        log_event(
            "detach.queued",
            server_id=request.server_id,
            volume_id=request.volume_id,
            reason=reason,
            idempotency_key=call.key,
        )
        return DetachOutcome(DetachStatus.QUEUED, request, retry_after_s=self._queue_check_s, reason=reason)

    def _still_queued(self, call: _Call, delay: float, reason: str) -> DetachOutcome:
        """A turn that must wait again: the same queued event, one attempt on, due after ``delay``."""
        assert call.turn is not None
        now = self._clock()
        again = call.turn.model_copy(
            update={"attempt": call.turn.attempt + 1, "not_before": now + timedelta(seconds=delay)}
        )
        log_event("detach.still_queued", idempotency_key=call.key, retry_after_s=delay, reason=reason)
        return DetachOutcome(
            DetachStatus.QUEUED, call.request, retry_after_s=delay, reason=reason, queued=again
        )

    def _on_error(self, request: DetachRequest, error: ApiError) -> DetachOutcome:
        disposition = classify_detach_error(error.status, error.code, error.message)
        if disposition is Disposition.UNAUTHORIZED:  # the credentials or their rights, not the request
            log_event("detach.unauthorized", level=logging.ERROR, code=error.code, status=error.status)
        if disposition in (Disposition.BUSY, Disposition.RETRY, Disposition.UNAUTHORIZED):
            delay = _RETRY_SOON_S if disposition is Disposition.RETRY else self._busy_retry_s
            return self._retry(request, delay, f"{error.code}: {error.message}")
        outcome = (
            Outcome.ALREADY_DETACHED if disposition is Disposition.ALREADY_DETACHED else Outcome.REJECTED
        )
        return self._finish(request, outcome, error.code, error.message, request_id=error.request_id)

    def _refused(self, request: DetachRequest, verdict: Verdict, key: str) -> DetachOutcome:
        """``key``: the request's effective idempotency key (its own, or project/server/disk),
        as ``detach.requested`` logs it."""
        log_event(
            "detach.refused_by_policy",
            server_id=request.server_id,
            code=verdict.code,
            reason=verdict.reason,
            idempotency_key=key,
        )
        return self._finish(request, Outcome.REJECTED, verdict.code, verdict.reason)

    def _retry(self, request: DetachRequest, delay: float, reason: str) -> DetachOutcome:
        log_event(
            "detach.retry_later",
            server_id=request.server_id,
            volume_id=request.volume_id,
            retry_after_s=delay,
            reason=reason,
            idempotency_key=request.idempotency_key,
        )
        return DetachOutcome(DetachStatus.RETRY, request, retry_after_s=delay, reason=reason)

    def _finish(
        self,
        request: DetachRequest,
        outcome: Outcome,
        code: str,
        reason: str,
        *,
        request_id: str | None = None,
    ) -> DetachOutcome:
        from handler.core.followups import DetachResult  # noqa: PLC0415 (the imports above)

        result = DetachResult(
            **request_fields(request),
            outcome=outcome,
            request_id=request_id,
            error_code=code,
            fail_reason=reason,
        )
        try:
            publish_result(self._results, result, source=self._source)
        except TopicError as error:  # nothing is kept: the request is answered again on its retry
            return self._retry(request, _RETRY_SOON_S, f"the results topic did not take the result: {error}")
        return DetachOutcome(
            _STATUS[outcome], request, result=result, reason=f"{code}: {reason}", error_code=code
        )
