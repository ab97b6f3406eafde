"""The router's answers to hostile and careless callers, on a runtime wired to the emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler.entry.runtime import Runtime, build_runtime
from handler.entry.webhooks import WebRequest, WebResponse
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from handler.security import WebhookAuthConfig, WebhookAuthenticator
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.security.support import FORMS
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


def test_every_401_carries_a_challenge_over_real_http(scoped: Runtime) -> None:
    app = runtime_app(scoped)
    with BackgroundServer(app) as server:
        for path, headers in [
            ("/", {}),
            ("/alertmanager", {"Authorization": "Basic Zm9vOmJhcg=="}),
            ("/tickets/jira", {"Authorization": "Bearer wrong"}),
            ("/smn", {"X-Hub-Signature-256": "sha256=00"}),
        ]:
            answer = httpx.post(f"{server.url}{path}", json={}, headers=headers, timeout=10)
            assert answer.status_code == 401, answer.text
            challenge = answer.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="ecs-detach"')
            assert ("invalid_token" in challenge) == ("Bearer" in headers.get("Authorization", ""))
            assert ("SMN-Signature" in challenge) == (path == "/smn")
            assert ALL_TOKEN not in challenge
            assert AM_TOKEN not in challenge


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"bearer_tokens": ["t-1"]}, 'Bearer realm="ecs-detach"'),
        ({"basic_credentials": ["u:p"]}, 'Basic realm="ecs-detach", charset="UTF-8"'),
        ({"hmac_secrets": ["h-1"]}, 'HMAC-SHA256 realm="ecs-detach"'),
        ({"standard_webhooks_secrets": [FORMS["standard"].old]}, 'Standard-Webhooks realm="ecs-detach"'),
        ({"verify_smn": False}, 'Bearer realm="ecs-detach"'),  # nothing configured: still one
        (
            {"bearer_tokens": ["t-1"], "hmac_secrets": ["h-1"], "basic_credentials": ["u:p"]},
            'Bearer realm="ecs-detach", Basic realm="ecs-detach", charset="UTF-8", '
            'HMAC-SHA256 realm="ecs-detach"',
        ),
    ],
)
def test_the_challenge_names_the_configured_schemes(config: dict[str, Any], expected: str) -> None:
    auth = WebhookAuthenticator(WebhookAuthConfig.model_validate(config))
    assert auth.challenge("/grafana", {}) == expected
    assert auth.challenge("/smn", {}).endswith('SMN-Signature realm="ecs-detach"') == config.get(
        "verify_smn", True
    )


def test_only_an_authenticated_caller_learns_the_ticket_mappings(scoped: Runtime) -> None:
    unauthenticated = post(scoped, "/tickets/no-such-mapping", {})
    assert unauthenticated.status == 401
    assert "jira" not in json.dumps(unauthenticated.body)
    assert "servicenow" not in json.dumps(unauthenticated.body)
    authenticated = post(scoped, "/tickets/no-such-mapping", {}, authorization=f"Bearer {ALL_TOKEN}")
    assert authenticated.status == 404
    assert "known: jira, servicenow" in authenticated.body["detail"]
    unknown_route = post(scoped, "/admin", {})
    assert unknown_route.status == 404  # generic: names the routes every deployment has
    assert "jira" not in json.dumps(unknown_route.body)
