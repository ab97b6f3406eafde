"""``ecs-detach approvals`` as a person runs it: real processes on the deployment's store and
topics (files here), while the functions run in this process against the emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handler.core.models import DetachRequest
from handler.core.outcomes import DetachStatus
from handler.entry.runtime import Runtime, build_runtime
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.support import WEB1, WEB1_DATA

CLI = [sys.executable, "-m", "handler.local.cli", "approvals"]
SECRET = "link-secret-0123456789-0123456789-abcdef"


@pytest.fixture
def deployment(tmp_path: Path, emulator: Emulator) -> Iterator[tuple[Runtime, dict[str, str]]]:
    settings = fast_settings(tmp_path, emulator.url, approval_mode="always", approval_link_secret=SECRET)
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "ECS_DETACH_"))}
    env |= {
        "ECS_DETACH_STORE": settings.store,
        "ECS_DETACH_JOBS_TOPIC": settings.jobs_topic,
        "ECS_DETACH_RESULTS_TOPIC": settings.results_topic,
        "ECS_DETACH_APPROVAL_MODE": "always",
        "ECS_DETACH_APPROVAL_LINK_SECRET": SECRET,
    }
    yield runtime, env
    runtime.close()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False)


def pending(runtime: Runtime) -> str:
    origin = {"source": "alertmanager", "credential": "alerts"}
    outcome = runtime.detach(DetachRequest(server_id=WEB1, volume_id=WEB1_DATA, origin=origin, reason="full"))
    assert outcome.status is DetachStatus.PENDING_APPROVAL
    assert outcome.approval_id is not None
    return outcome.approval_id


def results(runtime: Runtime, *, until: float = 10.0) -> list[dict[str, object]]:
    """Consume the jobs topic as the worker does until a result is published; the results."""
    deadline = time.monotonic() + until
    found: list[dict[str, object]] = []
    while time.monotonic() < deadline and not found:
        for delivery in runtime.jobs.receive(10, wait=0.2):
            runtime.job_event(delivery.body)
            runtime.jobs.ack(delivery)
        for delivery in runtime.results.receive(10, wait=0.1):
            event = json.loads(delivery.body)
            runtime.results.ack(delivery)
            if event["type"] != "ecs-detach.approval_requested":
                found.append(event["data"])
    return found


def test_list_show_refuse_the_requester_then_approve(deployment: tuple[Runtime, dict[str, str]]) -> None:
    runtime, env = deployment
    approval_id = pending(runtime)

    listed = cli(env)
    assert listed.returncode == 0, listed.stderr
    assert approval_id in listed.stdout
    assert "web-1 /dev/vdb" in listed.stdout
    shown = cli(env, "show", approval_id, "--json")
    assert json.loads(shown.stdout)["preview"]["size_gb"] == 100

    own = cli(env, "approve", approval_id, "--as", "alerts")
    assert own.returncode == 1
    assert "four eyes" in own.stderr
    link = cli(env, "link", approval_id, "--for", "carol")
    assert link.stdout.startswith(f"/approvals/{approval_id}/link/")

    approved = cli(env, "approve", approval_id, "--as", "alice", "--comment", "looked at it")
    assert approved.returncode == 0, approved.stderr
    assert "approved" in approved.stdout
    again = cli(env, "approve", approval_id, "--as", "alice")
    assert again.returncode == 0
    assert "approved by alice" in again.stdout

    (result,) = results(runtime)
    assert result["outcome"] == "succeeded"
    after = cli(env, "list", "--all", "--json")
    (line,) = after.stdout.splitlines()
    assert json.loads(line) | {
        "state": "approved",
        "decided_by": "alice",
        "comment": "looked at it",
    } == json.loads(line)


def test_deny_by_the_person_at_the_terminal(deployment: tuple[Runtime, dict[str, str]]) -> None:
    runtime, env = deployment
    approval_id = pending(runtime)

    denied = cli(env, "deny", approval_id, "--comment", "wrong disk")

    assert denied.returncode == 0, denied.stderr
    (result,) = results(runtime)
    assert result["error_code"] == "ApprovalDenied"
    assert str(result["fail_reason"]).startswith("denied by cli:")
    assert cli(env).stdout.strip() == "no approval is waiting"


def test_unknown_ids_and_approvals_off(deployment: tuple[Runtime, dict[str, str]]) -> None:
    _, env = deployment

    unknown = cli(env, "approve", "f" * 32)
    assert (unknown.returncode, unknown.stderr.strip()) == (1, f"ecs-detach: no approval {'f' * 32}")
    off = cli({k: v for k, v in env.items() if k != "ECS_DETACH_APPROVAL_MODE"})
    assert off.returncode == 2
    assert "approvals are off" in off.stderr


def test_the_demo_waits_for_an_approval_given_by_its_link() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "ECS_DETACH_"))}
    demo = subprocess.Popen(
        [sys.executable, "-m", "handler.local.cli", "demo", "--approve", "--job-duration", "1"],
        env=env | {"COLUMNS": "400"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert demo.stdout is not None
        seen: list[str] = []
        for line in demo.stdout:
            seen.append(line)
            if "/link/" in line:
                break
        link = seen[-1].strip()
        assert link.startswith("http://127.0.0.1:"), "".join(seen)
        command = demo.stdout.readline() + demo.stdout.readline()
        assert "ecs-detach approvals approve" in command
        assert "waiting for an approval" in "".join(seen)
        assert httpx.get(link, timeout=10).status_code == 200
        assert httpx.post(link, data={"decision": "approve"}, timeout=10).status_code == 200
        rest = demo.communicate(timeout=60)[0]
        assert demo.returncode == 0, rest
        assert "ecs-detach.succeeded" in rest
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
