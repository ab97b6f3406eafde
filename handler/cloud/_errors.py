"""One typed exception for every error body the ECS endpoint can answer with (docs/cloud-api.md §3.1)."""

from __future__ import annotations

from typing import Any

import httpx

from handler.core.backoff import retry_after_seconds
from handler.core.validation import MalformedInput, load_json
from handler.errors import EcsDetachError


class CloudError(EcsDetachError):
    """Any failure of a cloud call."""


class TransportError(CloudError):
    """No usable HTTP answer: connection refused or reset, DNS, TLS, timeout."""

    def __init__(self, message: str, *, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


class CallBudgetSpent(TransportError):
    """The request's budget of cloud calls is spent (``call_budget``): the call was not sent.
    Its record is answered ``retry``; the sender's next try finds the rest done or duplicate."""


class ApiError(CloudError):
    """The API answered with an error status.

    ``code`` is the API's error code (``Ecs.0111``, ``APIGW.0308``, ``itemNotFound``…) or the
    HTTP status as text when the body carries none.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        details: list[dict[str, Any]] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"HTTP {status} {code}: {message}" + (f" [{request_id}]" if request_id else ""))
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.details = details or []
        self.retry_after_s = retry_after_s

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        request_id = response.headers.get("x-request-id")
        try:
            body = load_json(response.content)
        except MalformedInput:
            body = None
        code, message, details = _parse_body(body)
        if isinstance(body, dict) and not request_id and isinstance(body.get("request_id"), str):
            request_id = body["request_id"]
        if code is None:
            code = str(response.status_code)
            message = message or response.text[:500] or response.reason_phrase
        return cls(
            response.status_code,
            code,
            message,
            request_id=request_id,
            details=details,
            retry_after_s=retry_after_seconds(response.headers.get("retry-after")),
        )


def _parse_body(body: Any) -> tuple[str | None, str, list[dict[str, Any]]]:
    """Find (code, message, details) in any of the documented shapes."""
    if not isinstance(body, dict):
        return None, "", []
    for code_key, message_key in (
        ("error_code", "error_msg"),  # API gateway, IAM
        ("errorCode", "errorMsg"),
        ("code", "message"),  # SMN, and the inside of ECS/Nova shapes
    ):
        code = body.get(code_key)
        if isinstance(code, str) and code:
            return code, str(body.get(message_key) or ""), _details(body)
    for key, inner in body.items():  # {"error": {...}} (ECS v1), {"itemNotFound": {...}} (Nova)
        if isinstance(inner, dict):
            code, message, details = _parse_body(inner)
            if code is None and "message" in inner:
                code, message = key, str(inner["message"])  # Nova: code is the HTTP number
            if code is not None:
                return code, message, details
    return None, "", []


def _details(body: dict[str, Any]) -> list[dict[str, Any]]:
    details = body.get("details")
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []
