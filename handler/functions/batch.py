"""Run every record of a parsed event through the detach function, each on its own.

One bad or refused record never stops the others; the report says what became of each, so an
entrypoint can answer precisely (HTTP status, FunctionGraph return value, broker ack/nack).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from handler.core.validation import FieldError
from handler.functions.detach import DetachFunction, DetachStatus
from handler.sources._base import Parsed
from handler.support.log import log_event

INVALID = "invalid"
IGNORED = "ignored"


@dataclass(frozen=True)
class RecordReport:
    ref: str
    status: str  # accepted, duplicate, already_detached, rejected, dry_run, retry, invalid, ignored
    server_id: str | None = None
    volume_id: str | None = None
    job_id: str | None = None
    error_code: str | None = None
    detail: str | None = None
    errors: list[FieldError] = field(default_factory=list)
    retry_after_s: float | None = None

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"ref": self.ref, "status": self.status}
        for key in ("server_id", "volume_id", "job_id", "error_code", "detail", "retry_after_s"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.errors:
            body["errors"] = [{"field": e.field, "reason": e.reason} for e in self.errors]
        return body


@dataclass(frozen=True)
class BatchReport:
    source: str
    records: list[RecordReport]

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.status == status)

    @property
    def retry_after_s(self) -> float | None:
        delays = [r.retry_after_s for r in self.records if r.retry_after_s is not None]
        return min(delays) if delays else None

    def http_status(self) -> int:
        """503 if anything must be retried (the sender retries; duplicates are harmless), 422 if
        every record is invalid, 409 if the cloud refused all, else 202 (or 200: nothing to do)."""
        statuses = {r.status for r in self.records}
        if DetachStatus.RETRY.value in statuses:
            return 503
        if statuses == {INVALID}:
            return 422
        if statuses == {DetachStatus.REJECTED.value}:
            return 409
        started = {DetachStatus.ACCEPTED.value, DetachStatus.DUPLICATE.value}
        return 202 if statuses & started else 200

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "accepted": self.count(DetachStatus.ACCEPTED.value),
            "job_ids": [r.job_id for r in self.records if r.job_id],
            "records": [r.as_dict() for r in self.records],
        }


def process(parsed: Parsed, detach: DetachFunction) -> BatchReport:
    reports: list[RecordReport] = []
    for record in parsed.records:
        if record.request is not None:
            outcome = detach(record.request)
            result = outcome.result
            reports.append(
                RecordReport(
                    record.ref,
                    outcome.status.value,
                    server_id=record.request.server_id,
                    volume_id=outcome.accepted.volume_id if outcome.accepted else record.request.volume_id,
                    job_id=outcome.job_id,
                    error_code=result.error_code if result else None,
                    detail=(result.fail_reason if result else None) or outcome.reason or None,
                    retry_after_s=outcome.retry_after_s,
                )
            )
        elif record.error is not None:
            log_event(
                "detach.invalid",
                level=logging.WARNING,
                source=parsed.source,
                ref=record.ref,
                reason=str(record.error),
            )
            reports.append(
                RecordReport(record.ref, INVALID, detail=record.error.summary, errors=record.error.errors)
            )
        else:
            log_event("detach.ignored", source=parsed.source, ref=record.ref, reason=record.ignored)
            reports.append(RecordReport(record.ref, IGNORED, detail=record.ignored))
    return BatchReport(parsed.source, reports)
