"""The detach function: one validated request → one detach call → ``ecs-detach.accepted``.

Steps, in order: resolve the project; the policy's scope rules (no cloud call); the
idempotency claim (a duplicate gets the original job reference, no second call); resolve a
device to its volume; read the server and its disks and apply the policy's disk rules (never
the system disk…); take the server and volume locks; then, unless dry-run, the one mutating
call. Every request ends in exactly one of: a job handed to the jobs topic (accepted), a
result event (already_detached, rejected, dry_run), a duplicate of an earlier request, or
``retry`` for the caller to try again later (throttled, server busy or locked, no answer).
Nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from handler.cloud import ApiError, DetachAnswer, TransportError
from handler.core.errors import Disposition, classify_detach_error
from handler.core.models import (
    EVENT_ACCEPTED,
    DetachAccepted,
    DetachRequest,
    DetachResult,
    Outcome,
    envelope,
    result_event,
    utcnow,
)
from handler.core.policy import (
    DiskFacts,
    SafetyPolicy,
    Verdict,
    check_disk,
    check_scope,
    needs_block_devices,
    volume_at,
)
from handler.core.polling import PollSchedule
from handler.core.resources import BlockDevice
from handler.functions.ports import DetachApi, Publisher, VolumeApi
from handler.guards.blast import BlastRadius
from handler.guards.idempotency import Guard, Locks, request_key
from handler.store import Claim, ClaimState
from handler.support.log import log_event

_RETRY_SOON_S = 5.0  # throttling or no answer: the first backoff step


class DetachStatus(str, Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # the same request was handled before: its job reference, no new call
    ALREADY_DETACHED = "already_detached"
    REJECTED = "rejected"
    DRY_RUN = "dry_run"
    RETRY = "retry"


_STATUS = {
    Outcome.ALREADY_DETACHED: DetachStatus.ALREADY_DETACHED,
    Outcome.REJECTED: DetachStatus.REJECTED,
    Outcome.DRY_RUN: DetachStatus.DRY_RUN,
}


@dataclass(frozen=True)
class DetachOutcome:
    status: DetachStatus
    request: DetachRequest
    accepted: DetachAccepted | None = None  # ACCEPTED
    result: DetachResult | None = None  # ALREADY_DETACHED, REJECTED, DRY_RUN
    job_id: str | None = None  # ACCEPTED, DUPLICATE
    retry_after_s: float | None = None  # RETRY
    reason: str = ""


@dataclass
class _Call:
    """One request on its way through the steps."""

    request: DetachRequest
    project_id: str
    key: str
    locks: Locks | None = None
    progress: dict[str, Any] = field(default_factory=dict)


def request_fields(message: DetachRequest) -> dict[str, object]:
    """The request part of any message of the flow, to carry it into the next one."""
    return message.model_dump(include=set(DetachRequest.model_fields))


def publish_result(results: Publisher, result: DetachResult, *, source: str) -> None:
    results.publish(result_event(result, source=source).model_dump_json())
    log_event(
        "detach.result",
        outcome=result.outcome.value,
        server_id=result.server_id,
        volume_id=result.volume_id,
        job_id=result.job_id,
        error_code=result.error_code,
        fail_reason=result.fail_reason,
        polls=result.polls,
        duration_s=result.duration_s,
        idempotency_key=result.idempotency_key,
        alert_id=result.alert_id,
        request_id=result.request_id,
    )


class DetachFunction:
    def __init__(
        self,
        ecs: DetachApi,
        jobs: Publisher,
        results: Publisher,
        *,
        default_project_id: str | None,
        source: str,
        schedule: PollSchedule,
        poll_timeout_s: float,
        busy_retry_s: float,
        policy: SafetyPolicy | None = None,
        guard: Guard | None = None,
        volumes: VolumeApi | None = None,
        blast: BlastRadius | None = None,
        dry_run: bool = False,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ecs = ecs
        self._jobs = jobs
        self._results = results
        self._default_project_id = default_project_id
        self._source = source
        self._schedule = schedule
        self._poll_timeout = timedelta(seconds=poll_timeout_s)
        self._busy_retry_s = busy_retry_s
        self._policy = policy or SafetyPolicy()
        self._guard = guard
        self._volumes = volumes
        self._blast = blast
        self._dry_run = dry_run
        self._clock = clock

    def __call__(self, request: DetachRequest) -> DetachOutcome:
        project_id = request.project_id or self._default_project_id
        log_event(
            "detach.requested",
            server_id=request.server_id,
            volume_id=request.volume_id,
            device=request.device,
            project_id=project_id,
            force=bool(request.delete_flag),
            dry_run=request.dry_run or self._dry_run,
            idempotency_key=request.idempotency_key,
            alert_id=request.alert_id,
        )
        if project_id is None:
            return self._finish(
                request, Outcome.REJECTED, "MissingProjectId", "no project_id in the request or credentials"
            )
        request = request.model_copy(update={"project_id": project_id})
        refused = check_scope(request, project_id, self._policy)
        if not refused.allowed:
            return self._refused(request, refused)
        if self._blast is not None and self._blast.breaker_open(project_id):
            reason = (
                f"too many detach jobs failed recently in project {project_id}: not acting until they age out"
            )
            return self._refused(request, Verdict(False, "CircuitOpen", reason))
        call = _Call(request, project_id, request_key(request, project_id))
        if self._guard is not None:
            earlier = self._earlier(call, self._guard.claim(call.key, request, project_id))
            if earlier is not None:
                return earlier
        outcome = self._detach(call)
        self._settle(call, outcome)
        return outcome

    def _earlier(self, call: _Call, claim: Claim) -> DetachOutcome | None:
        """The answer when this request was (or is being) handled already; None to go on."""
        request = call.request
        if claim.state is ClaimState.CONFLICT:
            reason = f"idempotency key {call.key!r} was used before for a different request"
            return self._finish(request, Outcome.REJECTED, "IdempotencyConflict", reason)
        known = claim.record if claim.state is ClaimState.DONE else claim.progress
        job_id = (known or {}).get("job_id")
        if claim.state is ClaimState.DONE or (claim.state is ClaimState.IN_PROGRESS and job_id):
            log_event("detach.duplicate", idempotency_key=call.key, job_id=job_id, state=claim.state.value)
            return DetachOutcome(
                DetachStatus.DUPLICATE, request, job_id=job_id, reason=str((known or {}).get("outcome", ""))
            )
        if claim.state is ClaimState.IN_PROGRESS:
            wait = min(max(claim.expires_in_s or _RETRY_SOON_S, 1.0), self._busy_retry_s)
            return self._retry(request, wait, f"the same request is being handled (key {call.key!r})")
        call.progress = claim.progress
        return None

    def _detach(self, call: _Call) -> DetachOutcome:
        if "job_id" in call.progress:  # an earlier attempt died after the detach call: resume
            log_event("detach.resumed", idempotency_key=call.key, job_id=call.progress["job_id"])
            answer = DetachAnswer(str(call.progress["job_id"]), call.progress.get("request_id"), 0)
            call.request = call.request.model_copy(update={"volume_id": call.progress["volume_id"]})
            return self._accepted(call, answer)
        resolved = self._resolve_and_check(call)
        if resolved is not None:
            return resolved
        request = call.request
        assert request.volume_id is not None  # resolved above
        if request.dry_run or self._dry_run:
            return self._finish(
                request,
                Outcome.DRY_RUN,
                "DryRun",
                f"would detach volume {request.volume_id} from server {request.server_id}"
                + (" (force)" if request.delete_flag else ""),
            )
        return self._mutate(call)

    def _mutate(self, call: _Call) -> DetachOutcome:
        """The one mutating call, within the blast radius; its job id noted before publishing."""
        request = call.request
        assert request.volume_id is not None
        if self._blast is not None and not self._blast.take(call.project_id, call.key):
            reason = (
                f"the blast-radius limit of project {call.project_id} is reached: no more detaches for now"
            )
            return self._refused(request, Verdict(False, "BlastRadiusLimit", reason))
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
        if self._guard is not None:  # before publishing: a crash now is resumed, not repeated
            progress = {
                "job_id": answer.job_id,
                "request_id": answer.request_id,
                "volume_id": request.volume_id,
            }
            self._guard.note(call.key, progress)
        return self._accepted(call, answer)

    def _resolve_and_check(self, call: _Call) -> DetachOutcome | None:
        """Resolve the volume, read the server and its disks, apply the policy, take the locks."""
        try:
            refused = self._check(call)
        except ApiError as error:
            return self._on_error(call.request, error)
        except TransportError as error:
            return self._retry(call.request, _RETRY_SOON_S, f"no answer from the cloud: {error}")
        return refused or self._lock(call)

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
        # Read EVS only when the policy asks about shared disks: one call fewer when it does not.
        shared = not self._policy.allow_shared_disks and self._shared(volume_id, call.project_id)
        facts = DiskFacts(server, devices, shared=shared)
        verdict = check_disk(request, volume_id, facts, self._policy)
        return None if verdict.allowed else self._refused(request, verdict)

    def _lock(self, call: _Call) -> DetachOutcome | None:
        """The server and volume locks, or ``retry``: another detach there is in progress."""
        if self._guard is None:
            return None
        request = call.request
        assert request.volume_id is not None
        locks = self._guard.locks(call.project_id, request.server_id, request.volume_id, call.key)
        if not self._guard.acquire(locks):
            reason = (
                f"another detach on server {request.server_id} or volume {request.volume_id} is in progress"
            )
            return self._retry(request, self._busy_retry_s, reason)
        call.locks = locks
        return None

    def _not_detached(self, call: _Call, outcome: DetachOutcome) -> DetachOutcome:
        """The detach call failed: it does not count towards the blast radius."""
        if self._blast is not None:
            self._blast.give_back(call.project_id, call.key)
        return outcome

    def _shared(self, volume_id: str, project_id: str) -> bool:
        """A multi-attach volume, or one attached to several servers (EVS knows; without an EVS
        client the cloud's own refusal is the only guard)."""
        if self._volumes is None:
            return False
        volume = self._volumes.show_volume(volume_id, project_id=project_id)
        return volume.multiattach or len({a.server_id for a in volume.attachments}) > 1

    def _settle(self, call: _Call, outcome: DetachOutcome) -> None:
        """Record the outcome for duplicates; give back what a finished request held."""
        if self._guard is None:
            return
        if outcome.status is DetachStatus.ACCEPTED:  # the poll function unlocks when the job ends
            self._guard.complete(call.key, {"job_id": outcome.job_id, "outcome": "accepted"})
            return
        if call.locks is not None:
            self._guard.unlock(call.locks)
        if outcome.status is DetachStatus.RETRY:
            self._guard.release(call.key)
        elif outcome.result is not None:
            self._guard.complete(call.key, {"outcome": outcome.result.outcome.value})

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
        self._jobs.publish(event.model_dump_json(), delay=first.total_seconds())
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

    def _on_error(self, request: DetachRequest, error: ApiError) -> DetachOutcome:
        disposition = classify_detach_error(error.status, error.code, error.message)
        if disposition in (Disposition.BUSY, Disposition.RETRY):
            delay = self._busy_retry_s if disposition is Disposition.BUSY else _RETRY_SOON_S
            return self._retry(request, delay, f"{error.code}: {error.message}")
        outcome = (
            Outcome.ALREADY_DETACHED if disposition is Disposition.ALREADY_DETACHED else Outcome.REJECTED
        )
        return self._finish(request, outcome, error.code, error.message, request_id=error.request_id)

    def _refused(self, request: DetachRequest, verdict: Verdict) -> DetachOutcome:
        log_event(
            "detach.refused_by_policy", server_id=request.server_id, code=verdict.code, reason=verdict.reason
        )
        return self._finish(request, Outcome.REJECTED, verdict.code, verdict.reason)

    def _retry(self, request: DetachRequest, delay: float, reason: str) -> DetachOutcome:
        log_event(
            "detach.retry_later",
            server_id=request.server_id,
            volume_id=request.volume_id,
            retry_after_s=delay,
            reason=reason,
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
        result = DetachResult(
            **request_fields(request),
            outcome=outcome,
            request_id=request_id,
            error_code=code,
            fail_reason=reason,
        )
        publish_result(self._results, result, source=self._source)
        return DetachOutcome(_STATUS[outcome], request, result=result, reason=f"{code}: {reason}")
