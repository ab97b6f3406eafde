"""The detach function: one validated request → one detach call → ``ecs-detach.accepted``.

Every request ends in exactly one of: a job handed to the jobs topic (accepted), a result on
the results topic (already_detached, rejected), or ``retry`` for the caller to try again later
(throttled, server busy, no answer). Nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from handler.cloud import ApiError, DetachAnswer, TransportError
from handler.core.errors import Disposition, classify_detach_error
from handler.core.models import (
    EVENT_ACCEPTED,
    DetachAccepted,
    DetachRequest,
    DetachResult,
    Outcome,
    envelope,
    result_event_type,
    utcnow,
)
from handler.core.polling import PollSchedule
from handler.log import log_event
from handler.ports import DetachApi, Publisher

_RETRY_SOON_S = 5.0  # throttling or no answer: the first backoff step


class DetachStatus(str, Enum):
    ACCEPTED = "accepted"
    ALREADY_DETACHED = "already_detached"
    REJECTED = "rejected"
    RETRY = "retry"


@dataclass(frozen=True)
class _Resolved:
    """A request whose volume is known."""

    request: DetachRequest
    volume_id: str

    @property
    def server_id(self) -> str:
        return self.request.server_id

    @property
    def delete_flag(self) -> int:
        return self.request.delete_flag


@dataclass(frozen=True)
class DetachOutcome:
    status: DetachStatus
    request: DetachRequest
    accepted: DetachAccepted | None = None  # ACCEPTED
    result: DetachResult | None = None  # ALREADY_DETACHED, REJECTED
    retry_after_s: float | None = None  # RETRY
    reason: str = ""


def request_fields(message: DetachRequest) -> dict[str, object]:
    """The request part of any message of the flow, to carry it into the next one."""
    return message.model_dump(include=set(DetachRequest.model_fields))


def publish_result(results: Publisher, result: DetachResult, *, source: str) -> None:
    event = envelope(result, type_=result_event_type(result.outcome), source=source)
    results.publish(event.model_dump_json())
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
            idempotency_key=request.idempotency_key,
            alert_id=request.alert_id,
        )
        if project_id is None:
            return self._finish(
                request, Outcome.REJECTED, "MissingProjectId", "no project_id in the request or credentials"
            )
        resolved = self._resolve_volume(request, project_id)
        if isinstance(resolved, DetachOutcome):
            return resolved
        try:
            answer = self._ecs.detach_volume(
                resolved.server_id,
                resolved.volume_id,
                project_id=project_id,
                force=bool(resolved.delete_flag),
            )
        except ApiError as error:
            return self._on_error(resolved.request, project_id, error)
        except TransportError as error:
            return self._retry(resolved.request, _RETRY_SOON_S, f"no answer from ECS: {error}")
        return self._accepted(resolved, project_id, answer)

    def _resolve_volume(self, request: DetachRequest, project_id: str) -> _Resolved | DetachOutcome:
        """The request with its volume ID, looked up by device on the server when only that is known."""
        if request.volume_id is not None:
            return _Resolved(request, request.volume_id)
        try:
            devices = self._ecs.list_block_devices(request.server_id, project_id=project_id)
        except ApiError as error:
            return self._on_error(request, project_id, error)
        except TransportError as error:
            return self._retry(request, _RETRY_SOON_S, f"no answer from ECS: {error}")
        volume_id = next((d.volume_id for d in devices if d.device == request.device), None)
        if volume_id is None:
            return self._finish(
                request,
                Outcome.REJECTED,
                "DeviceNotAttached",
                f"no disk is attached at {request.device} on server {request.server_id}",
                project_id=project_id,
            )
        log_event("detach.resolved", server_id=request.server_id, device=request.device, volume_id=volume_id)
        return _Resolved(request.model_copy(update={"volume_id": volume_id}), volume_id)

    def _accepted(self, resolved: _Resolved, project_id: str, answer: DetachAnswer) -> DetachOutcome:
        request = resolved.request
        now = self._clock()
        first = timedelta(seconds=self._schedule.next_delay(0, 0.0))
        accepted = DetachAccepted(
            **{**request_fields(request), "project_id": project_id, "volume_id": resolved.volume_id},
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
            volume_id=resolved.volume_id,
            job_id=answer.job_id,
            request_id=answer.request_id,
            http_status=answer.status_code,
        )
        return DetachOutcome(DetachStatus.ACCEPTED, request, accepted=accepted)

    def _on_error(self, request: DetachRequest, project_id: str, error: ApiError) -> DetachOutcome:
        disposition = classify_detach_error(error.status, error.code, error.message)
        if disposition in (Disposition.BUSY, Disposition.RETRY):
            delay = self._busy_retry_s if disposition is Disposition.BUSY else _RETRY_SOON_S
            return self._retry(request, delay, f"{error.code}: {error.message}")
        outcome = (
            Outcome.ALREADY_DETACHED if disposition is Disposition.ALREADY_DETACHED else Outcome.REJECTED
        )
        return self._finish(
            request,
            outcome,
            error.code,
            error.message,
            project_id=project_id,
            request_id=error.request_id,
        )

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
        project_id: str | None = None,
        request_id: str | None = None,
    ) -> DetachOutcome:
        result = DetachResult(
            **{**request_fields(request), "project_id": project_id},
            outcome=outcome,
            request_id=request_id,
            error_code=code,
            fail_reason=reason,
        )
        publish_result(self._results, result, source=self._source)
        status = (
            DetachStatus.ALREADY_DETACHED if outcome is Outcome.ALREADY_DETACHED else DetachStatus.REJECTED
        )
        return DetachOutcome(status, request, result=result, reason=f"{code}: {reason}")
