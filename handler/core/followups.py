"""The flow's messages that follow a request, other than its acceptance: a request waiting for
its turn (``ecs-detach.queued``), an approval's turn (``ecs-detach.approval_turn``), and how a
detach ended (``ecs-detach.{outcome}``). Apart from ``models.py`` so that a detach cold start,
which ends in an acceptance, creates none of these classes (about 2 ms; docs/performance.md).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import Field

from handler.core.models import (
    AnyEvent,
    CloudEvent,
    DetachRequest,
    Matching,
    Outcome,
    ProjectIdStr,
    UuidStr,
    result_event_type,
    utcnow,
)


class DetachQueued(DetachRequest):
    """A request waiting for another detach on its server or volume to end
    (``ecs-detach.queued``, on the jobs topic): the detach function takes it up again when due."""

    project_id: ProjectIdStr
    idempotency_key: str = Field(min_length=1, max_length=256)
    queued_at: datetime
    attempt: int = Field(default=0, ge=0, description="Times its turn was tried so far")
    not_before: datetime = Field(description="Try again no earlier than this")
    deadline: datetime = Field(description="Give up (rejected, QueueTimeout) after this")


class ApprovalTurn(DetachRequest):
    """A request kept for an approval, to take up again (``ecs-detach.approval_turn``, on the
    jobs topic): at once when it is decided, and at its expiry when nobody decided it."""

    project_id: ProjectIdStr
    volume_id: UuidStr
    idempotency_key: str = Field(min_length=1, max_length=256)
    approval_id: Annotated[str, Matching(r"^[0-9a-f]{32}$")]
    expires_at: datetime = Field(description="Undecided at this time: rejected (ApprovalExpired)")
    by_device: bool = Field(
        default=False, description="The request named its disk by device: its key's fingerprint has no volume"
    )


class DetachResult(DetachRequest):
    """How a detach ended (``ecs-detach.{outcome}``), for the next workflow step."""

    outcome: Outcome
    job_id: str | None = None
    request_id: str | None = None
    status: str | None = Field(default=None, description="Last job status seen")
    error_code: str | None = None
    fail_reason: str | None = None
    polls: int = 0
    duration_s: float | None = Field(default=None, description="From acceptance to this result")
    finished_at: datetime = Field(default_factory=utcnow)


def result_event(result: DetachResult, *, source: str) -> CloudEvent[Any]:
    """The result as a CloudEvent whose id is derived from what it reports (the request, the
    job, the outcome): a result published again after a crash is the same event (same source
    and id), which consumers de-duplicate as CloudEvents prescribe."""
    identity = [
        result.idempotency_key,
        result.subject,
        result.job_id,
        result.outcome.value,
        result.error_code,
    ]
    event_id = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:32]
    return AnyEvent(
        id=event_id,
        source=source,
        type=result_event_type(result.outcome),
        subject=result.subject,
        data=result,
    )
