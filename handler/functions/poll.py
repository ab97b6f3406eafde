"""The poll function: look at a detach job once, then either finish or come back later.

It never sleeps: a job still running yields a continuation (the same message, one attempt on,
due after the schedule's delay) that the runner puts back on the jobs topic. A finished job
yields exactly one result event:

- SUCCESS, confirmed by the server's block devices no longer listing the volume → succeeded
  (while it is still listed, the disk side has not settled: look again shortly);
- FAIL → failed, with the job's error code and reason;
- job gone (404, finished jobs are deleted after a day) → already_detached if the volume is
  not attached, else failed;
- past the deadline → timed_out.

Every event is checked against the idempotency record of its key first: an event for a job the
detach function never accepted (forged, or naming another request's key) or whose key now names
another job changes nothing — no cloud call, no result, no breaker count, no lock released — and
is logged as ``poll.untrusted``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from handler.cloud import ApiError, TransportError
from handler.core.errors import is_retryable
from handler.core.followups import DetachResult
from handler.core.jobs import Job, JobStatus
from handler.core.models import DetachAccepted, Outcome, utcnow
from handler.core.polling import PollSchedule
from handler.functions.ports import JobApi, Publisher
from handler.functions.results import publish_result, request_fields
from handler.guards.blast import BlastRadius
from handler.guards.idempotency import Guard
from handler.store import ClaimState
from handler.support.log import log_event
from handler.topics import TopicError

_RETRY_SOON_S = 5.0  # the results topic did not answer: the next look


@dataclass(frozen=True)
class PollOutcome:
    """Either ``result`` (finished, already published) or ``next`` due after ``delay_s``; neither
    when the event was not trusted (``untrusted``: dropped, nothing changed). ``contended``: the
    job ended and another delivery is reporting it right now; ``delay_s`` is then when its claim
    lapses, the latest a queue needs to look again, while a caller who waits at a terminal for
    the result (the CLI's ``detach --wait``) looks again soon: the other delivery usually
    reports within milliseconds."""

    result: DetachResult | None = None
    next: DetachAccepted | None = None
    delay_s: float = 0.0
    untrusted: str | None = None
    contended: bool = False


class PollFunction:
    def __init__(
        self,
        ecs: JobApi,
        results: Publisher,
        *,
        source: str,
        schedule: PollSchedule,
        guard: Guard,
        blast: BlastRadius,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ecs = ecs
        self._results = results
        self._source = source
        self._schedule = schedule
        self._guard = guard
        self._blast = blast
        self._clock = clock

    def __call__(self, message: DetachAccepted) -> PollOutcome:
        if not self._guard.names_job(message.idempotency_key, message.job_id):
            return self._untrusted(message)
        now = self._clock()
        if now < message.not_before:  # delivered early (a backend without delays): wait
            return PollOutcome(next=message, delay_s=(message.not_before - now).total_seconds())
        return self._look(message, now)

    def _look(self, message: DetachAccepted, now: datetime) -> PollOutcome:
        """One look at the job: its result, or when to look again."""
        polled = message.model_copy(update={"attempt": message.attempt + 1})
        job = self._show_job(polled, now)
        if isinstance(job, PollOutcome):
            return job
        log_event(
            "poll.status",
            job_id=message.job_id,
            status=job.status.value,
            attempt=polled.attempt,
            server_id=message.server_id,
            volume_id=message.volume_id,
            idempotency_key=message.idempotency_key,
        )
        if job.status is JobStatus.FAIL:
            code, reason = job.failure()
            return self._finish(polled, Outcome.FAILED, job, code, reason)
        if job.status is JobStatus.SUCCESS:
            if self._still_attached(polled):
                return self._later(polled, now, reason="job SUCCESS, volume still attached", settle=True)
            return self._finish(polled, Outcome.SUCCEEDED, job, None, None)
        return self._later(polled, now, reason=f"job {job.status.value}", job=job)

    @staticmethod
    def _untrusted(message: DetachAccepted) -> PollOutcome:
        """A forged or stale event: logged, and nothing else happens."""
        reason = f"no request with key {message.idempotency_key!r} started job {message.job_id}"
        log_event(
            "poll.untrusted",
            level=logging.WARNING,
            job_id=message.job_id,
            idempotency_key=message.idempotency_key,
            reason=reason,
        )
        return PollOutcome(untrusted=reason)

    def _show_job(self, message: DetachAccepted, now: datetime) -> Job | PollOutcome:
        """The job, or the outcome when it cannot be read now (gone, or a passing failure)."""
        try:
            return self._ecs.show_job(message.job_id, project_id=message.project_id)
        except ApiError as error:
            if error.status == 404:
                return self._job_gone(message)
            if not is_retryable(error.status, error.code):
                raise
            return self._later(message, now, reason=f"{error.code}: {error.message}")
        except TransportError as error:
            return self._later(message, now, reason=str(error))

    def _later(
        self,
        message: DetachAccepted,
        now: datetime,
        *,
        reason: str,
        settle: bool = False,
        job: Job | None = None,
    ) -> PollOutcome:
        if now >= message.deadline:
            code = "JobSettling" if settle else "PollDeadline"
            return self._finish(message, Outcome.TIMED_OUT, job, code, f"deadline passed: {reason}")
        age = (now - message.accepted_at).total_seconds()
        delay = self._schedule.settle_delay_s if settle else self._schedule.next_delay(message.attempt, age)
        delay = min(delay, max((message.deadline - now).total_seconds(), 0.0))
        return PollOutcome(
            next=message.model_copy(update={"not_before": now + timedelta(seconds=delay)}),
            delay_s=delay,
        )

    def _still_attached(self, message: DetachAccepted) -> bool:
        devices = self._ecs.list_block_devices(message.server_id, project_id=message.project_id)
        return any(device.volume_id == message.volume_id for device in devices)

    def _job_gone(self, message: DetachAccepted) -> PollOutcome:
        if self._still_attached(message):
            return self._finish(
                message,
                Outcome.FAILED,
                None,
                "JobNotFound",
                "job gone and the volume is still attached",
            )
        return self._finish(message, Outcome.ALREADY_DETACHED, None, None, None)

    def _finish(
        self,
        message: DetachAccepted,
        outcome: Outcome,
        job: Job | None,
        code: str | None,
        reason: str | None,
    ) -> PollOutcome:
        now = self._clock()
        key = message.idempotency_key or ""  # trusted events carry one (names_job)
        claim = self._guard.claim_result(message.job_id)
        if claim.state is ClaimState.IN_PROGRESS:  # another delivery is reporting it right now
            wait = max(claim.expires_in_s or 1.0, 1.0)
            return PollOutcome(next=message, delay_s=wait, contended=True)
        if claim.state is ClaimState.DONE:  # reported before this delivery came back: once only
            log_event("poll.already_reported", job_id=message.job_id, idempotency_key=message.idempotency_key)
            self._unlock(message)
            return PollOutcome(result=DetachResult.model_validate(claim.record))
        result = DetachResult(
            **request_fields(message),
            outcome=outcome,
            job_id=message.job_id,
            request_id=message.request_id,
            status=job.status.value if job else None,
            error_code=code,
            fail_reason=reason,
            polls=message.attempt,
            duration_s=round((now - message.accepted_at).total_seconds(), 3),
            finished_at=now,
        )
        try:
            publish_result(self._results, result, source=self._source)
        except TopicError as error:  # the results topic is down: report it on the next poll
            self._guard.release_result(message.job_id)
            log_event(
                "poll.result_not_published", level=logging.WARNING, job_id=message.job_id, error=str(error)
            )
            return PollOutcome(next=message, delay_s=_RETRY_SOON_S)
        if outcome in (Outcome.FAILED, Outcome.TIMED_OUT):
            self._blast.record_failure(message.project_id, key or message.job_id)
        self._guard.result_reported(message.job_id, key, result.model_dump(mode="json"))
        self._unlock(message)
        return PollOutcome(result=result)

    def _unlock(self, message: DetachAccepted) -> None:
        """The job ended: the server and the volume are free for the next detach."""
        owner = message.idempotency_key or ""
        self._guard.unlock(self._guard.locks(message.project_id, message.server_id, message.volume_id, owner))
