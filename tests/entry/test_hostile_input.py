"""What a hostile or careless caller sends through the webhook server, as ``up`` runs it: the
Starlette app on a loopback port, the router, the runtime, the emulator behind them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from handler.entry.runtime import Runtime
from handler.local._serve import BackgroundServer
from handler.local.http import create_app
from tests.conftest import AUTH, Emulator

DEPTH = 100_000
DEEP_ARRAY = b"[" * DEPTH + b"]" * DEPTH
DEEP_OBJECT = b'{"a":' * 40_000 + b"1" + b"}" * 40_000
ROUTES = ["/", "/alertmanager", "/grafana", "/smn", "/tickets/jira"]
JSON = {"Content-Type": "application/json", **AUTH}


@pytest.fixture
def webhook(runtime: Runtime) -> Iterator[str]:
    with BackgroundServer(
        create_app(runtime.router, max_body_bytes=runtime.settings.max_body_bytes)
    ) as server:
        yield server.url


def _problem(answer: httpx.Response, status: int) -> dict[str, object]:
    assert answer.status_code == status, answer.text[:500]
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = answer.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT], ids=["array", "object"])
def test_deeply_nested_json_is_a_400_on_every_route(
    webhook: str, emulator: Emulator, route: str, body: bytes
) -> None:
    problem = _problem(httpx.post(webhook + route, content=body, headers=JSON, timeout=30), 400)
    assert "nested too deeply" in json.dumps(problem)
    assert emulator.admin("GET", "calls")["calls"] == []


def test_a_deep_message_inside_an_smn_notification_is_a_4xx(webhook: str, emulator: Emulator) -> None:
    notification = {"type": "Notification", "message": DEEP_ARRAY.decode()}
    answer = httpx.post(f"{webhook}/smn", json=notification, headers=AUTH, timeout=30)
    assert answer.status_code in (400, 422), answer.text[:500]
    assert answer.headers["content-type"] == "application/problem+json"
    assert emulator.admin("GET", "calls")["calls"] == []
