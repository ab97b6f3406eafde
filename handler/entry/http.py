"""The webhook endpoint: ``POST /`` a detach request (JSON or a CloudEvent), get the job reference.

Answers: 202 accepted (job id), 200 already detached, 409 refused by the cloud, 503 retry later
(with ``Retry-After``); RFC 9457 problem documents for bad input (400 malformed JSON, 413 too
large, 415 not JSON, 422 invalid fields, each with the field path and reason).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handler.core.validation import InvalidInput, MalformedInput
from handler.detach import DetachFunction
from handler.entry._outcomes import invalid_problem, outcome_body, problem
from handler.log import log_event
from handler.sources import parse_request

PROBLEM_JSON = "application/problem+json"
MAX_BODY_BYTES = 256 * 1024


def _problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_JSON, headers=headers)


def create_app(detach: DetachFunction, *, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise HTTPException(413, f"body over {max_body_bytes} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise HTTPException(413, f"body over {max_body_bytes} bytes")
        return bytes(body)

    async def submit(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.split(";")[0].strip().lower().endswith(("/json", "+json")):
            raise HTTPException(415, f"expected application/json, got {content_type or 'no content type'}")
        raw = await read_body(request)
        try:
            detach_request = parse_request(raw)
        except InvalidInput as error:
            status = 400 if isinstance(error, MalformedInput) else 422
            return _problem_response(invalid_problem(error, status))
        outcome = await run_in_threadpool(detach, detach_request)
        status, body = outcome_body(outcome)
        headers = {}
        if outcome.retry_after_s is not None:
            headers["Retry-After"] = str(math.ceil(outcome.retry_after_s))
        return JSONResponse(body, status_code=status, headers=headers)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def server_error(_: Request, exc: Exception) -> Response:
        # The cause goes to the log (without secrets: errors here carry none); the caller gets
        # a problem document, not a traceback.
        log_event("http.error", level=logging.ERROR, error=f"{type(exc).__name__}: {exc}")
        return _problem_response(problem(500, "Internal Server Error", "the request could not be handled"))

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        headers = dict(exc.headers or {})
        return _problem_response(
            problem(exc.status_code, _TITLES.get(exc.status_code, "Error"), exc.detail), headers
        )

    return Starlette(
        routes=[
            Route("/", submit, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )


_TITLES = {
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
}
