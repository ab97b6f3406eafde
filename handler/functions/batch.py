"""Run every record of a parsed event through the detach function, each on its own.

One bad or refused record never stops the others; the report says what became of each, and
``handler.core.outcomes`` turns that into the answer of every entry point (HTTP status,
FunctionGraph return value, broker ack/requeue/dead-letter).
"""

import logging
from collections.abc import Sequence
from typing import NamedTuple

from handler.cloud import call_budget
from handler.core.outcomes import (
    DetachStatus,
    QueueAction,
    batch_disposition,
    batch_http_status,
    record_http_status,
)
from handler.core.validation import FieldError
from handler.functions.detach import DetachFunction
from handler.sources._base import Parsed, Record
from handler.support.log import log_event


class RecordReport(NamedTuple):
    ref: str
    status: DetachStatus
    server_id: str | None = None
    volume_id: str | None = None
    job_id: str | None = None
    error_code: str | None = None
    detail: str | None = None
    errors: Sequence[FieldError] = ()
    retry_after_s: float | None = None
    original: str | None = None  # a duplicate's original outcome
    approval_id: str | None = None  # pending_approval (or a duplicate of it)

    @property
    def http_status(self) -> int:
        return record_http_status(self.status, self.original)

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"ref": self.ref, "status": self.status.value}
        names = ("original", "server_id", "volume_id", "job_id", "approval_id", "error_code", "detail")
        for key in (*names, "retry_after_s"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.errors:
            body["errors"] = [{"field": e.field, "reason": e.reason} for e in self.errors]
        return body


class BatchReport(NamedTuple):
    source: str
    records: list[RecordReport]

    def count_of(self, status: DetachStatus) -> int:  # not count(), which is the tuple's own
        return sum(1 for r in self.records if r.status is status)

    @property
    def retry_after_s(self) -> float | None:
        """The smallest delay of the records that must be retried (None: nothing to retry)."""
        delays = [
            r.retry_after_s
            for r in self.records
            if r.status is DetachStatus.RETRY and r.retry_after_s is not None
        ]
        return min(delays) if delays else None

    def http_status(self) -> int:
        return batch_http_status(r.http_status for r in self.records)

    def disposition(self) -> QueueAction:
        return batch_disposition(r.status for r in self.records)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "accepted": self.count_of(DetachStatus.ACCEPTED),
            "queued": self.count_of(DetachStatus.QUEUED),
            "pending_approval": self.count_of(DetachStatus.PENDING_APPROVAL),
            "job_ids": [r.job_id for r in self.records if r.job_id],
            "records": [r.as_dict() for r in self.records],
        }


def process(parsed: Parsed, detach: DetachFunction, *, max_cloud_calls: int) -> BatchReport:
    """Every record through ``detach``, within a budget of ``max_cloud_calls`` cloud calls for the
    whole request (policy reads included): records past it are answered ``retry``."""
    with call_budget(max_cloud_calls):
        return BatchReport(
            parsed.source, [_record(parsed.source, record, detach) for record in parsed.records]
        )


def _record(source: str, record: Record, detach: DetachFunction) -> RecordReport:
    if record.request is not None:
        outcome = detach(record.request)
        result = outcome.result
        return RecordReport(
            record.ref,
            outcome.status,
            server_id=record.request.server_id,
            volume_id=outcome.accepted.volume_id if outcome.accepted else outcome.request.volume_id,
            job_id=outcome.job_id,
            error_code=outcome.error_code,
            detail=(result.fail_reason if result else None) or outcome.reason or None,
            retry_after_s=outcome.retry_after_s if outcome.status is DetachStatus.RETRY else None,
            original=outcome.original,
            approval_id=outcome.approval_id,
        )
    if record.error is not None:
        log_event(
            "detach.invalid", level=logging.WARNING, source=source, ref=record.ref, reason=str(record.error)
        )
        return RecordReport(
            record.ref, DetachStatus.INVALID, detail=record.error.summary, errors=record.error.errors
        )
    log_event("detach.ignored", source=source, ref=record.ref, reason=record.ignored)
    return RecordReport(record.ref, DetachStatus.IGNORED, detail=record.ignored)
