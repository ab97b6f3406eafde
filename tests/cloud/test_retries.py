"""Retries where safe, with backoff and Retry-After, never past the time budget (real HTTP)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from handler.cloud import ApiError, EcsClient, time_budget
from handler.core.backoff import Backoff, RetryPolicy
from handler.local._serve import BackgroundServer
from tests.conftest import DEMO_CREDENTIALS
from tests.support import WEB1, WEB1_DATA

JOB_ID = "ff80808288d41e1b018917ae93d3044c"
JOB = {"job_id": JOB_ID, "status": "RUNNING"}


@dataclass
class FlakyCloud:
    """Answers each request with the next scripted (status, body, headers), then 200."""

    script: list[tuple[int, dict[str, object], dict[str, str]]] = field(default_factory=list)
    seen: list[float] = field(default_factory=list)

    def app(self) -> Starlette:
        async def answer(request: Request) -> Response:
            self.seen.append(time.monotonic())
            if self.script:
                status, body, headers = self.script.pop(0)
                return JSONResponse(body, status_code=status, headers=headers)
            return JSONResponse(JOB)

        return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "DELETE"])])


@pytest.fixture
def cloud() -> Iterator[tuple[FlakyCloud, EcsClient]]:
    flaky = FlakyCloud()
    fast = RetryPolicy(max_attempts=3, backoff=Backoff(base_s=0.05, cap_s=0.1))
    with BackgroundServer(flaky.app()) as server, EcsClient(server.url, DEMO_CREDENTIALS, retry=fast) as ecs:
        yield flaky, ecs


THROTTLED = (429, {"error_code": "APIGW.0308", "error_msg": "over ratelimit"}, {"Retry-After": "1"})
UNAVAILABLE = (503, {"error_code": "APIG.0201", "error_msg": "backend unavailable"}, {})
BUSY = (501, {"error": {"code": "Ecs.0603", "message": "other commands are executing"}}, {})
BAD = (400, {"error": {"code": "Ecs.0005", "message": "bad parameter"}}, {})


def test_throttling_is_retried_after_retry_after(cloud: tuple[FlakyCloud, EcsClient]) -> None:
    flaky, ecs = cloud
    flaky.script = [THROTTLED]
    assert ecs.show_job(JOB_ID).job_id == JOB_ID
    assert len(flaky.seen) == 2
    assert flaky.seen[1] - flaky.seen[0] >= 1.0  # Retry-After: 1 honoured over the short backoff


def test_server_errors_are_retried_until_the_tries_run_out(cloud: tuple[FlakyCloud, EcsClient]) -> None:
    flaky, ecs = cloud
    flaky.script = [UNAVAILABLE, UNAVAILABLE]
    assert ecs.show_job(JOB_ID).job_id == JOB_ID
    flaky.script = [UNAVAILABLE] * 3
    with pytest.raises(ApiError) as caught:
        ecs.show_job(JOB_ID)
    assert caught.value.status == 503
    assert len(flaky.seen) == 3 + 3


@pytest.mark.parametrize("answer", [BUSY, BAD])
def test_busy_servers_and_client_errors_are_not_retried_in_the_call(
    cloud: tuple[FlakyCloud, EcsClient], answer: tuple[int, dict[str, object], dict[str, str]]
) -> None:
    flaky, ecs = cloud
    flaky.script = [answer]
    with pytest.raises(ApiError):
        ecs.detach_volume(WEB1, WEB1_DATA)
    assert len(flaky.seen) == 1


def test_no_wait_runs_past_the_time_budget(cloud: tuple[FlakyCloud, EcsClient]) -> None:
    flaky, ecs = cloud
    flaky.script = [THROTTLED]  # Retry-After: 1 s, but only 0.5 s are left
    started = time.monotonic()
    with time_budget(0.5), pytest.raises(ApiError) as caught:
        ecs.show_job(JOB_ID)
    assert caught.value.status == 429
    assert time.monotonic() - started < 0.5
    assert len(flaky.seen) == 1
