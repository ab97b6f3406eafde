"""Every error body shape of docs/cloud-api.md §3.1 becomes one ApiError with status, code, message, id."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from handler.cloud import ApiError
from handler.core.errors import Disposition, classify_detach_error


def _response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=headers or {})


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            400,
            {"error": {"code": "Ecs.0111", "message": "volume not attached", "details": []}},
            "Ecs.0111",
            "volume not attached",
        ),
        (
            401,
            {
                "error_code": "APIGW.0301",
                "error_msg": "verify aksk signature fail",
                "request_id": "r1",
            },
            "APIGW.0301",
            "verify aksk signature fail",
        ),
        (
            404,
            {"itemNotFound": {"code": 404, "message": "no such server"}},
            "itemNotFound",
            "no such server",
        ),
        (
            409,
            {"conflictingRequest": {"code": 409, "message": "task_state powering-off"}},
            "conflictingRequest",
            "task_state powering-off",
        ),
        (
            400,
            {"request_id": "r2", "code": "SMN.0010", "message": "topic not found"},
            "SMN.0010",
            "topic not found",
        ),
        (403, {"errorCode": "IAM.0002", "errorMsg": "forbidden"}, "IAM.0002", "forbidden"),
    ],
)
def test_every_documented_shape(status: int, body: Any, code: str, message: str) -> None:
    error = ApiError.from_response(_response(status, body, {"X-Request-Id": "hdr-id"}))
    assert (error.status, error.code, error.message, error.request_id) == (
        status,
        code,
        message,
        "hdr-id",
    )


def test_ecs_details_are_kept() -> None:
    body = {"error": {"code": "Ecs.0005", "message": "bad", "details": [{"code": "x", "message": "y"}]}}
    assert ApiError.from_response(_response(400, body)).details == [{"code": "x", "message": "y"}]


def test_request_id_from_gateway_body_when_no_header() -> None:
    body = {"error_code": "APIGW.0308", "error_msg": "over ratelimit", "request_id": "body-id"}
    error = ApiError.from_response(_response(429, body))
    assert error.request_id == "body-id"
    assert "APIGW.0308" in str(error)
    assert "body-id" in str(error)


@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b"", b"[1, 2]", b'{"unrelated": true}'])
def test_unparseable_bodies_fall_back_to_the_status(body: bytes) -> None:
    error = ApiError.from_response(_response(502, body))
    assert error.status == 502
    assert error.code == "502"
    assert error.message


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (400, "Ecs.0111", "", Disposition.ALREADY_DETACHED),
        (400, "Ecs.1000", "Nova error: itemNotFound volume", Disposition.ALREADY_DETACHED),
        (400, "Ecs.1000", "backend timeout", Disposition.REJECTED),
        (501, "Ecs.0603", "", Disposition.BUSY),
        (409, "conflictingRequest", "", Disposition.BUSY),
        (429, "APIGW.0308", "", Disposition.RETRY),
        (503, "503", "", Disposition.RETRY),
        (400, "Ecs.0100", "", Disposition.REJECTED),
        (404, "Ecs.0114", "", Disposition.REJECTED),
        (401, "APIGW.0301", "", Disposition.UNAUTHORIZED),
        (403, "IAM.0002", "forbidden", Disposition.UNAUTHORIZED),
    ],
)
def test_detach_error_classification(status: int, code: str, message: str, expected: Disposition) -> None:
    assert classify_detach_error(status, code, message) is expected


def test_a_deeply_nested_answer_is_an_error_not_a_crash() -> None:
    """An answer nested deeper than the recursion limit is read like any other body that is
    not JSON: an error answer keeps its HTTP status, a success answer is ``InvalidResponse``."""
    from handler.cloud._client import json_object

    deep = b"[" * 100_000 + b"]" * 100_000
    error = ApiError.from_response(_response(500, deep))
    assert (error.status, error.code) == (500, "500")
    with pytest.raises(ApiError) as caught:
        json_object(_response(200, deep))
    assert caught.value.code == "InvalidResponse"
    assert "nested too deeply" in caught.value.message
