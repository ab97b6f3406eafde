"""What a sender that retries meets: every 503 says when (``Retry-After``), and what it sends
again is answered as a duplicate for the records already accepted or queued."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from handler.entry.runtime import Runtime
from handler.local._serve import BackgroundServer
from handler.local.cli import EVENTS_DIR
from handler.local.http import runtime_app
from handler.local.worker import Worker, poll_job
from tests.conftest import AUTH, Emulator
from tests.support import WEB1, WEB1_DATA, WEB1_LOGS


@pytest.fixture
def webhook(runtime: Runtime) -> Iterator[str]:
    with BackgroundServer(runtime_app(runtime)) as server:
        yield server.url


def two_alerts() -> dict[str, Any]:
    """Alertmanager's sample with a second alert on another disk of the same server."""
    payload: dict[str, Any] = json.loads((EVENTS_DIR / "alertmanager-firing.json").read_text())
    first = payload["alerts"][0]
    second = copy.deepcopy(first)
    second["labels"] = {**first["labels"], "device": "", "volume_id": WEB1_LOGS}
    second["fingerprint"] = "c6a6d9f8b2e4a3d5"
    payload["alerts"] = [first, second]
    payload["commonLabels"] = {k: v for k, v in payload["commonLabels"].items() if k != "device"}
    return payload


def deletes(emulator: Emulator) -> list[str]:
    calls = emulator.admin("GET", "calls")["calls"]
    return [call["path"] for call in calls if call["method"] == "DELETE"]


def retry_after(answer: httpx.Response) -> int:
    assert answer.status_code == 503, answer.text
    seconds = int(answer.headers["Retry-After"])  # delay-seconds, RFC 9110 §10.2.3
    assert seconds >= 1
    return seconds


def test_an_alert_group_on_one_server_is_answered_202_once_and_resent_as_duplicates(
    runtime: Runtime, webhook: str, emulator: Emulator
) -> None:
    payload = two_alerts()

    def send() -> tuple[int, list[str]]:
        answer = httpx.post(f"{webhook}/alertmanager", json=payload, headers=AUTH, timeout=10)
        return answer.status_code, [record["status"] for record in answer.json()["records"]]

    assert send() == (202, ["accepted", "queued"])  # one detach per server at a time: the other waits
    assert send() == (202, ["duplicate", "duplicate"])  # the sender's retry: nothing twice, nothing lost
    assert len(deletes(emulator)) == 1

    worker = Worker(runtime.jobs, poll_job(runtime), concurrency=2, wait_s=0.1).start()
    try:
        deadline = time.monotonic() + 15
        while len(deletes(emulator)) < 2 and time.monotonic() < deadline:  # the first job still runs
            time.sleep(0.2)
    finally:
        worker.stop()
    assert [path.rsplit("/", 1)[-1] for path in deletes(emulator)] == [WEB1_DATA, WEB1_LOGS]
    assert send() == (202, ["duplicate", "duplicate"])


@pytest.mark.parametrize(
    "faults",
    [
        {"errors": [{"rate": 1, "status": 503, "code": "APIG.0201", "methods": ["DELETE"]}]},
        {"errors": [{"rate": 1, "status": 429, "methods": ["DELETE"], "retry_after_s": 1}]},
        {"drops": [{"rate": 1, "after_commit": False}]},
    ],
    ids=["cloud-503", "cloud-429", "no-answer"],
)
@pytest.mark.slow
def test_every_retry_answer_says_when(webhook: str, emulator: Emulator, faults: dict[str, Any]) -> None:
    emulator.admin("PUT", "faults", faults)
    body = {"server_id": WEB1, "volume_id": WEB1_DATA}
    answer = httpx.post(f"{webhook}/", json=body, headers=AUTH, timeout=60)
    retry_after(answer)
    assert answer.json()["records"][0]["status"] == "retry"
