"""One mapping from a detach outcome to an HTTP-style status and JSON body, for every entrypoint."""

from __future__ import annotations

from typing import Any

from handler.core.validation import InvalidInput
from handler.detach import DetachOutcome, DetachStatus

_HTTP_STATUS = {
    DetachStatus.ACCEPTED: 202,
    DetachStatus.ALREADY_DETACHED: 200,
    DetachStatus.REJECTED: 409,
    DetachStatus.RETRY: 503,
}


def outcome_body(outcome: DetachOutcome) -> tuple[int, dict[str, Any]]:
    request = outcome.request
    body: dict[str, Any] = {
        "status": outcome.status.value,
        "server_id": request.server_id,
        "volume_id": request.volume_id,
    }
    if outcome.accepted is not None:
        body.update(
            job_id=outcome.accepted.job_id,
            request_id=outcome.accepted.request_id,
            project_id=outcome.accepted.project_id,
            deadline=outcome.accepted.deadline.isoformat(),
        )
    if outcome.result is not None:
        body.update(error_code=outcome.result.error_code, detail=outcome.result.fail_reason)
    if outcome.retry_after_s is not None:
        body.update(retry_after_s=outcome.retry_after_s, detail=outcome.reason)
    return _HTTP_STATUS[outcome.status], body


def problem(status: int, title: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


def invalid_problem(error: InvalidInput, status: int = 422) -> dict[str, Any]:
    return problem(
        status,
        error.summary,
        str(error),
        errors=[{"field": e.field, "reason": e.reason} for e in error.errors],
    )
