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
from tests.support import PID, WEB1, WEB1_DATA

AM_TOKEN, ALL_TOKEN = "tok-am-3c9e1f5a", "tok-all-7a2b5d8e"


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
    ticket = {"issue": {"key": "OPS-1", "fields": {"server_id": WEB1, "volume_id": WEB1_DATA}}}
    refused = post(scoped, "/tickets/jira", ticket, authorization=f"Bearer {AM_TOKEN}")
    assert refused.status == 403
    assert refused.body["detail"] == "this bearer credential may call /alertmanager, not /tickets/jira"
    assert AM_TOKEN not in json.dumps(refused.body)
    no_alerts = {"version": "4", "status": "firing", "alerts": []}
    assert post(scoped, "/alertmanager", no_alerts, authorization=f"Bearer {AM_TOKEN}").status == 200
    assert post(scoped, "/", {"server_id": "x"}, authorization=f"Bearer {AM_TOKEN}").status == 403
    assert emulator.admin("GET", "calls")["calls"] == []  # no cloud call for a refused request


def forged_poll_push(runtime: Runtime) -> dict[str, Any]:
    """What the issue's attacker sent: a real accepted event's shape, naming a job nobody
    accepted, in an unsigned SMN Notification."""
    accepted = post(
        runtime, "/", {"server_id": WEB1, "volume_id": WEB1_DATA}, authorization=f"Bearer {ALL_TOKEN}"
    )
    assert accepted.status == 202, accepted.body
    (delivery,) = runtime.jobs.receive(1, wait=5)
    runtime.jobs.ack(delivery)
    event = json.loads(delivery.body)
    event["data"]["job_id"] = "ff000000000000000000000000000001"
    return {
        "type": "Notification",
        "message": json.dumps(event),
        "message_id": "m-forged-1",
        "timestamp": "2026-01-15T08:30:00Z",
        "topic_urn": f"urn:smn:ap-southeast-1:{PID}:jobs",
    }


def test_a_bearer_credential_cannot_hand_the_poll_function_an_event(
    scoped: Runtime, emulator: Emulator
) -> None:
    forged = forged_poll_push(scoped)
    for token in (ALL_TOKEN, AM_TOKEN):
        refused = post(scoped, "/smn", forged, authorization=f"Bearer {token}")
        assert refused.status == 403, refused.body
    polls = [c for c in emulator.admin("GET", "calls")["calls"] if "/jobs/" in c["path"]]
    assert polls == []  # the poll function never ran
    assert scoped.results.receive(10) == []  # no forged result was published
    assert scoped.jobs.receive(10) == []  # nor a continuation


def test_deep_json_on_smn_is_a_400_not_a_500(scoped: Runtime) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    answer = post(scoped, "/smn", deep, authorization=f"Bearer {ALL_TOKEN}")
    assert answer.status == 400, answer.body
