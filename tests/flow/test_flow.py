"""The whole flow over real loopback HTTP: webhook → detach → jobs topic → poll → result."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from handler.core.followups import DetachResult
from handler.core.models import CloudEvent, Outcome
from handler.core.outcomes import DetachStatus
from handler.entry.runtime import Runtime, build_runtime
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from handler.local.worker import Worker, poll_job
from handler.sources import parse_request
from tests.conftest import AUTH, DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS, WEB2, WEB2_DATA


def attached(runtime: Runtime, server_id: str) -> set[str]:
    return {device.volume_id for device in runtime.ecs.list_block_devices(server_id)}


def next_result(runtime: Runtime, timeout: float = 15.0) -> CloudEvent[DetachResult]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in runtime.results.receive(1, wait=0.2):
            runtime.results.ack(delivery)
            return CloudEvent[DetachResult].model_validate_json(delivery.body)
    raise AssertionError("no result event")


@pytest.fixture
def worker(runtime: Runtime) -> Iterator[Worker]:
    w = Worker(runtime.jobs, poll_job(runtime), concurrency=2, wait_s=0.1).start()
    yield w
    w.stop()


@pytest.fixture
def webhook(runtime: Runtime) -> Iterator[str]:
    with BackgroundServer(runtime_app(runtime)) as server:
        yield server.url


def test_happy_path_webhook_to_result(runtime: Runtime, worker: Worker, webhook: str) -> None:
    body = {"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "k1", "alert_id": "a1"}
    answer = httpx.post(f"{webhook}/", json=body, headers=AUTH, timeout=10)
    assert answer.status_code == 202, answer.text
    (record,) = answer.json()["records"]
    job_id = record["job_id"]
    assert answer.json()["job_ids"] == [job_id]
    assert (record["status"], record["server_id"], record["volume_id"]) == ("accepted", WEB1, WEB1_DATA)
    assert WEB1_DATA in attached(runtime, WEB1)  # accepted is not detached

    event = next_result(runtime)
    assert event.type == "ecs-detach.succeeded"
    assert event.subject == f"{WEB1}/{WEB1_DATA}"
    result = event.data
    assert (result.outcome, result.job_id, result.status) == (Outcome.SUCCEEDED, job_id, "SUCCESS")
    assert (result.idempotency_key, result.alert_id) == ("k1", "a1")
    assert result.request_id  # X-Request-Id of the detach call, for the audit chain
    assert result.polls >= 1
    assert result.duration_s is not None
    assert result.duration_s >= 0.4
    assert WEB1_DATA not in attached(runtime, WEB1)
    deadline = time.monotonic() + 5
    while runtime.jobs.pending() and time.monotonic() < deadline:  # acked just after the publish
        time.sleep(0.05)
    assert runtime.jobs.pending() == 0


def test_a_failing_job_reports_its_error(runtime: Runtime, worker: Worker, emulator: Emulator) -> None:
    emulator.admin(
        "PATCH",
        f"volumes/{WEB1_DATA}",
        {"detach_fails_with": {"error_code": "Ecs.1000", "fail_reason": "Nova timed out"}},
    )
    outcome = runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))
    assert outcome.status is DetachStatus.ACCEPTED
    result = next_result(runtime)
    assert result.type == "ecs-detach.failed"
    assert (result.data.status, result.data.error_code) == ("FAIL", "Ecs.1000")
    assert "Nova timed out" in (result.data.fail_reason or "")
    assert WEB1_DATA in attached(runtime, WEB1)


def test_a_job_that_outlives_the_deadline_times_out(tmp_path: Path, emulator: Emulator) -> None:
    emulator.admin("PATCH", f"volumes/{WEB1_DATA}", {"job_duration_s": 30.0})
    slow = build_runtime(fast_settings(tmp_path, emulator.url, poll_timeout_s=1.0), DEMO_CREDENTIALS)
    worker = Worker(slow.jobs, poll_job(slow), concurrency=1, wait_s=0.1).start()
    try:
        outcome = slow.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))
        assert outcome.status is DetachStatus.ACCEPTED
        result = next_result(slow)
    finally:
        worker.stop()
        slow.close()
    assert result.type == "ecs-detach.timed_out"
    assert result.data.status in ("INIT", "RUNNING")
    assert result.data.error_code == "PollDeadline"
    assert result.data.polls >= 2


def test_a_second_detach_on_a_busy_server_is_queued_then_made(
    runtime: Runtime, worker: Worker, webhook: str, emulator: Emulator
) -> None:
    first = httpx.post(
        f"{webhook}/", json={"server_id": WEB1, "volume_id": WEB1_DATA}, headers=AUTH, timeout=10
    )
    assert first.status_code == 202
    second = httpx.post(
        f"{webhook}/", json={"server_id": WEB1, "volume_id": WEB1_LOGS}, headers=AUTH, timeout=10
    )
    assert second.status_code == 202, second.text
    (record,) = second.json()["records"]
    assert record["status"] == "queued"
    assert "another detach on server" in record["detail"]  # our lock, before the cloud refuses
    again = httpx.post(
        f"{webhook}/", json={"server_id": WEB1, "volume_id": WEB1_LOGS}, headers=AUTH, timeout=10
    )
    assert again.status_code == 202
    assert again.json()["records"][0] | {"detail": ""} == {
        "ref": "(root)",
        "status": "duplicate",
        "original": "queued",
        "server_id": WEB1,
        "volume_id": WEB1_LOGS,
        "detail": "",
    }
    results = {next_result(runtime).data.volume_id: "done" for _ in range(2)}
    assert results == {WEB1_DATA: "done", WEB1_LOGS: "done"}
    assert not {WEB1_DATA, WEB1_LOGS} & attached(runtime, WEB1)
    calls = emulator.admin("GET", "calls")["calls"]
    assert [c["method"] for c in calls].count("DELETE") == 2  # one per disk, the second after the first
    assert runtime.results.receive(1, wait=0.5) == []  # exactly one result each


def test_a_volume_not_attached_to_the_server_is_already_detached(
    runtime: Runtime, webhook: str, worker: Worker
) -> None:
    first = httpx.post(
        f"{webhook}/", json={"server_id": WEB1, "volume_id": WEB1_DATA}, headers=AUTH, timeout=10
    )
    assert first.status_code == 202
    assert next_result(runtime).type == "ecs-detach.succeeded"  # the job ended: locks are free
    again = httpx.post(
        f"{webhook}/",
        json={"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "another-request"},
        headers=AUTH,
        timeout=10,
    )
    assert again.status_code == 200
    assert again.json()["records"][0]["status"] == "already_detached"
    result = next_result(runtime)
    assert result.type == "ecs-detach.already_detached"
    assert result.data.error_code == "VolumeNotAttached"  # settled by reading, not by a second DELETE


def test_a_disk_of_another_server_is_refused_naming_where_it_is(
    runtime: Runtime, webhook: str, emulator: Emulator
) -> None:
    answer = httpx.post(
        f"{webhook}/", json={"server_id": WEB1, "volume_id": WEB2_DATA}, headers=AUTH, timeout=10
    )
    assert answer.status_code == 409
    (record,) = answer.json()["records"]
    assert (record["status"], record["error_code"]) == ("rejected", "VolumeNotAttached")
    assert WEB2 in record["detail"]
    calls = emulator.admin("GET", "calls")["calls"]
    assert [c["method"] for c in calls].count("DELETE") == 0
    assert WEB2_DATA in attached(runtime, WEB2)


def test_a_duplicate_gets_the_original_job_and_makes_no_call(
    runtime: Runtime, webhook: str, emulator: Emulator
) -> None:
    body = {"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "alert-42"}
    first = httpx.post(f"{webhook}/", json=body, headers=AUTH, timeout=10)
    again = httpx.post(f"{webhook}/", json=body, headers=AUTH, timeout=10)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["records"][0]["status"] == "duplicate"
    assert again.json()["job_ids"] == first.json()["job_ids"]
    changed = httpx.post(f"{webhook}/", json={**body, "volume_id": WEB1_LOGS}, headers=AUTH, timeout=10)
    assert changed.status_code == 409
    assert changed.json()["records"][0]["error_code"] == "IdempotencyConflict"
    calls = emulator.admin("GET", "calls")["calls"]
    assert [c["method"] for c in calls].count("DELETE") == 1


def test_an_unknown_server_is_rejected_with_the_cloud_error(runtime: Runtime, webhook: str) -> None:
    unknown = "1b3c5e7f-0000-4000-8000-0000deadbeef"
    answer = httpx.post(
        f"{webhook}/", json={"server_id": unknown, "volume_id": WEB1_DATA}, headers=AUTH, timeout=10
    )
    assert answer.status_code == 409
    assert answer.json()["records"][0]["error_code"] == "Ecs.0114"
    result = next_result(runtime)
    assert result.type == "ecs-detach.rejected"
    assert result.data.server_id == unknown


@pytest.mark.parametrize(
    ("content", "content_type", "status", "field"),
    [
        (b'{"server_id": "x"}', "application/json", 422, "server_id"),
        (b"{broken", "application/json", 400, "(root)"),
        (b"server_id=x", "application/x-www-form-urlencoded", 415, None),
    ],
)
def test_bad_input_gets_a_problem_document(
    webhook: str, content: bytes, content_type: str, status: int, field: str | None
) -> None:
    answer = httpx.post(f"{webhook}/", content=content, headers={"Content-Type": content_type, **AUTH})
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["status"] == status
    if field:
        errors = problem.get("errors") or problem["records"][0]["errors"]
        assert field in {e["field"] for e in errors}


def test_oversized_and_wrong_method(webhook: str) -> None:
    big = httpx.post(
        f"{webhook}/", content=b"x" * 300_000, headers={"Content-Type": "application/json", **AUTH}
    )
    assert big.status_code == 413
    assert httpx.get(f"{webhook}/").status_code == 405


def test_the_clouds_busy_answer_is_retried_later_too(runtime: Runtime) -> None:
    # Someone else (the console, another tool) is detaching a disk of the server right now.
    runtime.ecs.detach_volume(WEB1, WEB1_DATA)
    busy = runtime.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_LOGS}))
    assert busy.status is DetachStatus.RETRY
    assert busy.retry_after_s == runtime.settings.busy_retry_s
    assert "Ecs.0603" in busy.reason
    assert runtime.store.peek(f"{PID}/{WEB1}/{WEB1_LOGS}") is None  # the retry finds the key free


def test_a_standard_webhooks_retry_is_a_duplicate(tmp_path: Path, emulator: Emulator) -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
    settings = fast_settings(tmp_path, emulator.url, webhook_standard_secrets=[secret])
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    app = runtime_app(runtime)
    body = json.dumps({"server_id": WEB1, "volume_id": WEB1_DATA})

    def send(url: str, message_id: str) -> httpx.Response:
        now = datetime.now(timezone.utc)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(secret).sign(message_id, now, body),
        }
        return httpx.post(f"{url}/", content=body, headers=headers, timeout=10)

    try:
        with BackgroundServer(app) as server:
            first = send(server.url, "msg_1")
            other = send(server.url, "msg_2")  # another message about the same disk: its own key
            retried = send(server.url, "msg_1")  # the sender retries message 1: a duplicate
    finally:
        runtime.close()
    assert first.status_code == 202
    assert (other.status_code, other.json()["records"][0]["status"]) == (202, "queued")  # waits for the lock
    assert retried.json()["records"][0]["status"] == "duplicate"
    assert retried.json()["job_ids"] == first.json()["job_ids"]
    calls = emulator.admin("GET", "calls")["calls"]
    assert [c["method"] for c in calls].count("DELETE") == 1
