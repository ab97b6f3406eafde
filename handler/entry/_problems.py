"""RFC 9457 problem documents, the one error shape of every entrypoint."""

from __future__ import annotations

from typing import Any

from handler.core.validation import InvalidInput


def problem(status: int, title: str, detail: str = "", **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return body


def too_many_records(count: int, limit: int) -> dict[str, Any]:
    """413 for a request or event with more records than ``ECS_DETACH_MAX_RECORDS``."""
    detail = f"{count} records; at most {limit} per request (ECS_DETACH_MAX_RECORDS)"
    return problem(413, "Too many records", detail, max_records=limit)


def invalid_problem(error: InvalidInput, status: int = 422) -> dict[str, Any]:
    return problem(
        status,
        error.summary,
        str(error),
        errors=[{"field": e.field, "reason": e.reason} for e in error.errors],
    )
