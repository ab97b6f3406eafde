"""The whole flow with a person in it, over real loopback HTTP and the real worker threads: an
Alertmanager alert → pending approval → a Slack message with buttons → a click signed as Slack
signs it → the detach → the success message; and the other endings (deny, expiry, self-approval
refused, the disk detached meanwhile by someone else)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from handler.core.models import DetachRequest
from handler.entry.runtime import Runtime, build_runtime
from handler.functions.channel_config import OUTCOMES
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from handler.local.worker import Worker, notify_event, poll_job
from tests.conftest import AUTH, DEMO_CREDENTIALS, Emulator, fast_settings
from tests.entry.test_chat_callbacks import SLACK_SECRET, slack_click, slack_headers
from tests.support import PID, WEB1, WEB1_DATA, Receiver

EVENTS = Path(__file__).resolve().parents[2] / "events"


@dataclass
class Flow:
    runtime: Runtime
    url: str
    receiver: Receiver

    def wait_for(
        self, what: Callable[[list[dict[str, Any]]], bool], timeout: float = 15.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = list(self.receiver.received.get("slack", []))
            if what(seen):
                return seen
            time.sleep(0.05)
        raise AssertionError(f"not seen in {timeout} s: {self.receiver.received.get('slack')}")


def flow(tmp_path: Path, emulator: Emulator, receiver: Receiver, **overrides: Any) -> Iterator[Flow]:
    settings = fast_settings(
        tmp_path,
        emulator.url,
        approval_mode="rules",
        approval_server_tags=["env=demo"],
        slack_signing_secret=SLACK_SECRET,
        chat_approvers={"slack:C0CHAN": {"U0ALICE": "alice", "U0AM": "ecs-detach"}},
        notify_channels=[{"name": "ops", "kind": "slack", "url": f"{receiver.url}/slack"}],
        notify_outcomes=[*OUTCOMES],  # already_detached too
        **overrides,
    )
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    workers = [
        Worker(runtime.jobs, poll_job(runtime), retry_delay_s=0.1, wait_s=0.1).start(),
        Worker(
            runtime.results, notify_event(runtime, runtime.results), retry_delay_s=0.1, wait_s=0.1
        ).start(),
    ]
    try:
        with BackgroundServer(runtime_app(runtime)) as server:
            yield Flow(runtime, server.url, receiver)
    finally:
        for worker in workers:
            worker.stop()
        runtime.close()


@pytest.fixture
def running(tmp_path: Path, emulator: Emulator, receiver: Receiver) -> Iterator[Flow]:
    yield from flow(tmp_path, emulator, receiver)


def alert(flow: Flow) -> str:
    """Send the sample Alertmanager alert; the approval its Slack message asks for."""
    body = (EVENTS / "alertmanager-firing.json").read_bytes()
    answer = httpx.post(
        f"{flow.url}/alertmanager",
        content=body,
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 202, answer.text
    assert answer.json()["records"][0]["status"] == "pending_approval"
    (message,) = flow.wait_for(lambda seen: len(seen) == 1)
    assert message["text"].startswith("Approval needed: detach /dev/vdb from web-1")
    approve = message["blocks"][-1]["elements"][0]
    assert approve["action_id"] == "ecs-detach.approve"
    return str(approve["value"])


def click(flow: Flow, approval_id: str, *, user: str = "U0ALICE", action: str = "ecs-detach.approve") -> str:
    body = slack_click(approval_id, user=user, action=action)
    answer = httpx.post(f"{flow.url}/chat/slack", content=body, headers=slack_headers(body), timeout=3)
    assert answer.status_code == 200
    return str(answer.json()["text"])


def test_alert_approval_click_detach_success_message(running: Flow, emulator: Emulator) -> None:
    approval_id = alert(running)
    assert WEB1_DATA in {v.volume.id for v in emulator.backend.get_server(PID, WEB1).volumes}

    said = click(running, approval_id)

    assert "approved" in said
    seen = running.wait_for(lambda seen: len(seen) == 2)
    assert seen[1]["text"] == f"Detached: {WEB1_DATA} from {WEB1}"
    assert WEB1_DATA not in {v.volume.id for v in emulator.backend.get_server(PID, WEB1).volumes}


def test_a_denial_from_chat_ends_in_a_rejection_message(running: Flow, emulator: Emulator) -> None:
    approval_id = alert(running)

    click(running, approval_id, action="ecs-detach.deny")

    seen = running.wait_for(lambda seen: len(seen) == 2)
    assert seen[1]["text"].startswith("Detach refused")
    assert "ApprovalDenied: denied by alice" in seen[1]["blocks"][1]["text"]["text"]
    assert WEB1_DATA in {v.volume.id for v in emulator.backend.get_server(PID, WEB1).volumes}


def test_the_alerts_own_receiver_cannot_approve_from_chat(running: Flow) -> None:
    approval_id = alert(running)

    said = click(running, approval_id, user="U0AM")  # mapped to "ecs-detach", the alert's receiver

    assert "four eyes" in said
    time.sleep(0.5)
    assert len(running.receiver.received["slack"]) == 1  # nothing ended


def test_an_approval_after_someone_else_detached_the_disk(running: Flow, emulator: Emulator) -> None:
    approval_id = alert(running)
    emulator.backend.detach_volume(PID, WEB1, WEB1_DATA)
    deadline = time.monotonic() + 5
    while WEB1_DATA in {v.volume.id for v in emulator.backend.get_server(PID, WEB1).volumes}:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    click(running, approval_id)

    seen = running.wait_for(lambda seen: len(seen) == 2)
    assert seen[1]["text"].startswith("Nothing to detach")


def test_nobody_deciding_ends_in_an_expiry_message(
    tmp_path: Path, emulator: Emulator, receiver: Receiver
) -> None:
    for running in flow(tmp_path, emulator, receiver, approval_expiry_s=1.0):
        request = DetachRequest(server_id=WEB1, volume_id=WEB1_DATA, origin={"source": "test"})
        assert running.runtime.detach(request).approval_id is not None

        seen = running.wait_for(lambda seen: len(seen) == 2)

        assert seen[1]["text"].startswith("Detach refused")
        assert "ApprovalExpired" in seen[1]["blocks"][1]["text"]["text"]
        assert json.dumps(seen).count("ecs-detach.approve") == 1  # buttons only on the request
