"""Every sample in events/ through its real entrypoint to a result.

Webhook payloads are POSTed over loopback to the webhook of a local stack (emulator, webhook,
poll worker); FunctionGraph trigger events go to ``handler(event, context)`` with a context
that behaves like FunctionGraph's. Accepted jobs are followed to their result events.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import DEMO_CREDENTIAL, EmulatorConfig
from handler.core.followups import DetachResult
from handler.core.models import CloudEvent
from handler.entry import functiongraph
from handler.local.local import LocalStack, StackOptions
from handler.settings import Settings

EVENTS = Path(__file__).resolve().parents[2] / "events"

WEBHOOK_SAMPLES = [
    ("alertmanager-firing.json", "/alertmanager", 202, ["accepted"]),
    ("alertmanager-resolved.json", "/alertmanager", 200, ["ignored"]),
    ("alertmanager-batch-one-bad.json", "/alertmanager", 202, ["accepted", "accepted", "invalid"]),
    ("grafana-firing.json", "/grafana", 202, ["accepted", "ignored"]),
    ("smn-cloudeye-evs-alarm.json", "/smn", 202, ["accepted"]),
    ("ticket-jira.json", "/tickets/jira", 202, ["accepted"]),
    ("ticket-servicenow.json", "/tickets/servicenow", 202, ["accepted"]),
    ("cloudevent-binary.json", "/", 202, ["accepted"]),
    ("detach-request.json", "/", 202, ["accepted"]),
    ("detach-requested.cloudevent.json", "/", 202, ["accepted"]),
]
TRIGGER_SAMPLES = [
    ("fg-kafka.json", ["accepted", "accepted"]),
    ("fg-rabbitmq-batch-one-bad.json", ["accepted", "invalid", "accepted"]),
    ("fg-smn-trigger-cloudeye.json", ["accepted", "ignored", "invalid"]),
    ("fg-timer.json", ["accepted"]),
    ("detach-request.json", ["accepted"]),
    ("detach-requested.cloudevent.json", ["accepted"]),
]


class DemoContext:
    """FunctionGraph's context as the runtime hands it over, with the emulator's credentials."""

    def getSecurityAccessKey(self) -> str:
        return DEMO_CREDENTIAL.access_key

    def getSecuritySecretKey(self) -> str:
        return DEMO_CREDENTIAL.secret_key

    def getSecurityToken(self) -> str:
        return ""

    def getProjectID(self) -> str:
        return DEMO_CREDENTIAL.project_id


def _settings(tmp_path: Path, **extra: Any) -> Settings:
    db = f"sqlite:///{tmp_path}/topics.db"
    return Settings(
        jobs_topic=f"{db}?topic=jobs",
        results_topic=f"{db}?topic=results",
        store=f"sqlite:///{tmp_path}/store.db",
        first_poll_s=0.1,
        min_poll_delay_s=0.1,
        max_poll_delay_s=0.3,
        **extra,
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    options = StackOptions(http_port=0, emulator_config=EmulatorConfig(job_init_s=0.05, job_duration_s=0.3))
    # The samples' SMN signatures are placeholders: SMN messages are authenticated by the
    # generated bearer token here; signed SMN messages are tested against the emulator's SMN.
    settings = _settings(tmp_path, smn_confirm_hosts=["127.0.0.1"], webhook_verify_smn=False)
    with LocalStack(settings, options) as running:
        yield running


def _auth(stack: LocalStack) -> dict[str, str]:
    assert stack.webhook_token, "the local stack generates a webhook token when none is configured"
    return {"Authorization": f"Bearer {stack.webhook_token}"}


def _results(stack: LocalStack, job_ids: list[str], timeout: float = 20.0) -> dict[str, DetachResult]:
    found: dict[str, DetachResult] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(job_ids) and time.monotonic() < deadline:
        for delivery in stack.runtime.results.receive(5, wait=0.2):
            stack.runtime.results.ack(delivery)
            result = CloudEvent[DetachResult].model_validate_json(delivery.body).data
            found[result.job_id or ""] = result
    return found


def _assert_report(report: dict[str, Any], statuses: list[str], stack: LocalStack) -> None:
    assert [r["status"] for r in report["records"]] == statuses, report
    for record in report["records"]:
        if record["status"] == "invalid":
            assert record["errors"], record
            assert all(e["field"] and e["reason"] for e in record["errors"])
    job_ids = report["job_ids"]
    assert len(job_ids) == statuses.count("accepted")
    results = _results(stack, job_ids)
    assert sorted(results) == sorted(job_ids)
    assert {r.outcome.value for r in results.values()} <= {"succeeded"}
    ledger = httpx.get(f"{stack.emulator_url}/_emulator/calls", timeout=5).json()
    assert sorted(d["job_id"] for d in ledger["detaches"]) == sorted(job_ids)  # each detached once


@pytest.mark.parametrize(("sample", "route", "status", "statuses"), WEBHOOK_SAMPLES)
def test_webhook_sample(stack: LocalStack, sample: str, route: str, status: int, statuses: list[str]) -> None:
    event = json.loads((EVENTS / sample).read_text())
    request = event if set(event) == {"headers", "body"} else {"headers": {}, "body": event}
    answer = httpx.post(
        f"{stack.webhook_url}{route}",
        content=json.dumps(request["body"]).encode(),
        headers={"Content-Type": "application/json", **_auth(stack), **request["headers"]},
        timeout=30,
    )
    assert answer.status_code == status, answer.text
    _assert_report(answer.json(), statuses, stack)


@pytest.fixture
def function(stack: LocalStack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The FunctionGraph handler configured as a deployment would be, on the stack's topics."""
    monkeypatch.setenv("ECS_DETACH_ECS_ENDPOINT", stack.emulator_url or "")
    monkeypatch.setenv("ECS_DETACH_JOBS_TOPIC", stack.settings.jobs_topic)
    monkeypatch.setenv("ECS_DETACH_RESULTS_TOPIC", stack.settings.results_topic)
    monkeypatch.setenv("ECS_DETACH_STORE", stack.settings.store)
    monkeypatch.setenv("ECS_DETACH_HISTORY", f"sqlite:///{tmp_path}/history.db")  # not the code folder
    monkeypatch.setenv("ECS_DETACH_WEBHOOK_BEARER_TOKENS", json.dumps([stack.webhook_token]))
    monkeypatch.setattr(functiongraph, "_runtime", None)
    yield
    if functiongraph._runtime is not None:
        functiongraph._runtime.close()


@pytest.mark.parametrize(("sample", "statuses"), TRIGGER_SAMPLES)
@pytest.mark.usefixtures("function")
@pytest.mark.slow
def test_trigger_sample(stack: LocalStack, sample: str, statuses: list[str]) -> None:
    event = json.loads((EVENTS / sample).read_text())
    reply = functiongraph.handler(event, DemoContext())
    assert reply["status_code"] == 202, reply
    _assert_report(reply, statuses, stack)


@pytest.mark.usefixtures("function")
@pytest.mark.slow
def test_apig_sample_answers_in_the_apig_shape(stack: LocalStack) -> None:
    event = json.loads((EVENTS / "fg-apig.json").read_text())
    assert functiongraph.handler(event, DemoContext())["statusCode"] == 401  # APIG passes headers on
    event["headers"]["authorization"] = _auth(stack)["Authorization"]
    reply = functiongraph.handler(event, DemoContext())
    assert reply["statusCode"] == 202
    assert reply["isBase64Encoded"] is False
    assert reply["headers"]["Content-Type"] == "application/json"
    _assert_report(json.loads(reply["body"]), ["accepted"], stack)


class _SmnConfirmations(BaseHTTPRequestHandler):
    seen: list[str] = []  # noqa: RUF012 - collected across requests of one test

    def do_GET(self) -> None:
        self.seen.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"request_id": "r1", "subscription_urn": "urn:smn:x"}')

    def log_message(self, *_: object) -> None:
        pass


def test_smn_subscription_is_confirmed_on_an_allowed_host(stack: LocalStack) -> None:
    server = HTTPServer(("127.0.0.1", 0), _SmnConfirmations)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        body = json.loads((EVENTS / "smn-subscription-confirmation.json").read_text())
        body["subscribe_url"] = f"http://127.0.0.1:{server.server_port}/smn/subscription/confirm?token=t1"
        answer = httpx.post(f"{stack.webhook_url}/smn", json=body, headers=_auth(stack), timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["confirmed"] is True
        assert _SmnConfirmations.seen == ["/smn/subscription/confirm?token=t1"]
    finally:
        server.shutdown()


def test_smn_subscription_on_another_host_is_refused_without_fetching(stack: LocalStack) -> None:
    body = json.loads((EVENTS / "smn-subscription-confirmation.json").read_text())
    body["subscribe_url"] = "http://169.254.169.254/latest/meta-data"  # never fetched
    answer = httpx.post(f"{stack.webhook_url}/smn", json=body, headers=_auth(stack), timeout=10)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "subscribe_url"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/alertmanager", 405), ("POST", "/nowhere", 404), ("POST", "/tickets/unknown", 404)],
)
def test_routes_methods_and_mappings(stack: LocalStack, method: str, path: str, status: int) -> None:
    answer = httpx.request(method, f"{stack.webhook_url}{path}", json={}, headers=_auth(stack), timeout=10)
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    if status == 405:
        assert answer.headers["allow"] == "POST"


def test_an_all_bad_batch_says_so(stack: LocalStack) -> None:
    alerts = json.loads((EVENTS / "alertmanager-batch-one-bad.json").read_text())
    alerts["alerts"] = [alerts["alerts"][2]] * 2  # only the alert without a server label, twice
    answer = httpx.post(f"{stack.webhook_url}/alertmanager", json=alerts, headers=_auth(stack), timeout=10)
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["title"] == "No valid detach request"
    assert [r["status"] for r in problem["records"]] == ["invalid", "invalid"]


def test_a_user_mapping_file_adds_a_ticket_system(tmp_path: Path) -> None:
    mappings = tmp_path / "mappings.json"
    mappings.write_text(
        json.dumps(
            [
                {
                    "name": "desk",
                    "ticket": "ticket.id",
                    "when": "ticket.state == 'approved'",
                    "fields": {
                        "server_id": "ticket.custom.server",
                        "device": "ticket.custom.disk",
                        "reason": "ticket.title",
                        "idempotency_key": "join(':', ['desk', ticket.id])",
                    },
                }
            ]
        )
    )
    options = StackOptions(http_port=0, emulator_config=EmulatorConfig(job_init_s=0.05, job_duration_s=0.3))
    with LocalStack(_settings(tmp_path, ticket_mappings=mappings), options) as running:
        ticket = {
            "ticket": {
                "id": "D-7",
                "state": "approved",
                "title": "replace disk",
                "custom": {"server": "1b3c5e7f-0000-4000-8000-00000000a002", "disk": "vdb"},
            }
        }
        answer = httpx.post(
            f"{running.webhook_url}/tickets/desk", json=ticket, headers=_auth(running), timeout=10
        )
        assert answer.status_code == 202, answer.text
        (record,) = answer.json()["records"]
        assert record["volume_id"] == "2c4d6e8f-0000-4000-8000-00000000b002"  # resolved from vdb
        _assert_report(answer.json(), ["accepted"], running)
        pending = httpx.post(
            f"{running.webhook_url}/tickets/desk",
            json={"ticket": {**ticket["ticket"], "state": "new"}},
            headers=_auth(running),
        )
        assert pending.json()["records"][0]["status"] == "ignored"


def test_unauthenticated_webhooks_are_refused_before_any_cloud_call(stack: LocalStack) -> None:
    alert = json.loads((EVENTS / "alertmanager-firing.json").read_text())
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Basic dTpw"}):
        answer = httpx.post(f"{stack.webhook_url}/alertmanager", json=alert, headers=headers, timeout=10)
        assert answer.status_code == 401, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    ledger = httpx.get(f"{stack.emulator_url}/_emulator/calls", timeout=5).json()
    assert ledger["calls"] == []  # not one cloud call
