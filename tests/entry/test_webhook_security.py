"""The router's answers to hostile and careless callers, on a runtime wired to the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handler.entry.runtime import Runtime, build_runtime
from handler.entry.webhooks import WebRequest, WebResponse
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings

AM_TOKEN, ALL_TOKEN = "tok-am-3c9e1f5a", "tok-all-7a2b5d8e"
SERVER, VOLUME = "1b3c5e7f-0000-4000-8000-00000000aaaa", "2c4d6e8f-0000-4000-8000-00000000bbbb"


@pytest.fixture
def scoped(tmp_path: Path, emulator: Emulator) -> Iterator[Runtime]:
    tokens: list[Any] = [{"secret": AM_TOKEN, "routes": ["/alertmanager"]}, ALL_TOKEN]
    settings = fast_settings(tmp_path, emulator.url, webhook_bearer_tokens=tokens)
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    yield runtime
    runtime.close()


def post(runtime: Runtime, path: str, body: object, **headers: str) -> WebResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = WebRequest("POST", path, {"content-type": "application/json", **headers}, raw)
    return runtime.router.handle(request)


def test_alertmanagers_token_cannot_post_a_ticket(scoped: Runtime, emulator: Emulator) -> None:
    ticket = {"issue": {"key": "OPS-1", "fields": {"server_id": SERVER, "volume_id": VOLUME}}}
    refused = post(scoped, "/tickets/jira", ticket, authorization=f"Bearer {AM_TOKEN}")
    assert refused.status == 403
    assert refused.body["detail"] == "this bearer credential may call /alertmanager, not /tickets/jira"
    assert AM_TOKEN not in json.dumps(refused.body)
    no_alerts = {"version": "4", "status": "firing", "alerts": []}
    assert post(scoped, "/alertmanager", no_alerts, authorization=f"Bearer {AM_TOKEN}").status == 200
    assert post(scoped, "/", {"server_id": "x"}, authorization=f"Bearer {AM_TOKEN}").status == 403
    assert emulator.admin("GET", "calls")["calls"] == []  # no cloud call for a refused request
