"""The ``ecs-detach`` commands as a person runs them: real processes, real ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handler.cloud import EcsClient
from handler.core.followups import DetachResult
from handler.core.models import CloudEvent
from handler.topics import SqliteTopic
from tests.conftest import DEMO_CREDENTIALS
from tests.support import WEB1, WEB1_DATA

CLI = [sys.executable, "-m", "handler.local.cli"]


def _env() -> dict[str, str]:
    """The user's environment without cloud credentials or ecs-detach settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("HUAWEICLOUD_SDK_", "ECS_DETACH_"))}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_http(url: str, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")


def _run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def background(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.slow
def test_demo_runs_the_whole_flow_and_exits_zero(tmp_path: Path) -> None:
    done = _run("demo", "--job-duration", "1", cwd=Path.cwd())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepted by ECS" in done.stdout
    assert "poll #1" in done.stdout
    assert "result: succeeded" in done.stdout
    assert "ecs-detach.succeeded" in done.stdout


@pytest.mark.slow
def test_one_off_detach_waits_for_the_job(tmp_path: Path) -> None:
    done = _run("detach", "--server-id", WEB1, "--volume-id", WEB1_DATA, "--wait", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "using a local emulator" in done.stdout
    assert "result: succeeded" in done.stdout


@pytest.mark.slow
def test_one_off_detach_of_a_system_disk_fails_with_the_reason(tmp_path: Path) -> None:
    system_disk = "2c4d6e8f-0000-4000-8000-000000000001"
    done = _run("detach", "--server-id", WEB1, "--volume-id", system_disk, cwd=tmp_path)
    assert done.returncode == 1
    assert "rejected" in done.stdout
    assert "PolicySystemDisk" in done.stdout  # refused by the policy before any mutating call


def test_one_off_detach_refuses_bad_ids_with_the_field(tmp_path: Path) -> None:
    done = _run("detach", "--server-id", "web-1", "--volume-id", WEB1_DATA, cwd=tmp_path)
    assert done.returncode == 2
    assert "server_id" in done.stderr


def test_emulator_command_serves_signed_calls(
    tmp_path: Path, background: list[subprocess.Popen[str]]
) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [*CLI, "emulator", "--port", str(port)], env=_env(), stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    background.append(process)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == f"ECS emulator on http://127.0.0.1:{port}"
    assert "DEMOACCESSKEY0000000" in process.stdout.readline()
    _wait_for_http(f"http://127.0.0.1:{port}/_emulator/state")
    with EcsClient(f"http://127.0.0.1:{port}", DEMO_CREDENTIALS) as ecs:
        assert WEB1_DATA in {d.volume_id for d in ecs.list_block_devices(WEB1)}


@pytest.mark.slow
def test_up_serves_the_webhook_until_sigterm(tmp_path: Path, background: list[subprocess.Popen[str]]) -> None:
    port, emulator_port = _free_port(), _free_port()
    process = subprocess.Popen(
        [*CLI, "up", "--port", str(port), "--emulator-port", str(emulator_port), "--job-duration", "0.5"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    background.append(process)
    _wait_for_http(f"http://127.0.0.1:{port}/healthz")
    token = (tmp_path / ".ecs-detach" / "webhook-token").read_text().strip()
    assert (tmp_path / ".ecs-detach" / "webhook-token").stat().st_mode & 0o077 == 0  # owner only
    unauthenticated = httpx.post(
        f"http://127.0.0.1:{port}/", json={"server_id": WEB1, "volume_id": WEB1_DATA}
    )
    assert unauthenticated.status_code == 401
    answer = httpx.post(
        f"http://127.0.0.1:{port}/",
        json={"server_id": WEB1, "volume_id": WEB1_DATA},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 202, answer.text

    results = SqliteTopic(tmp_path / ".ecs-detach" / "topics.db", "results")
    try:
        deliveries = []
        deadline = time.monotonic() + 20
        while not deliveries and time.monotonic() < deadline:
            deliveries = results.receive(1, wait=0.5)
        assert deliveries, "no result event from the running stack"
        event = CloudEvent[DetachResult].model_validate_json(deliveries[0].body)
        assert [event.data.job_id] == answer.json()["job_ids"]
        assert event.type == "ecs-detach.succeeded"
    finally:
        results.close()
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0


@pytest.mark.slow
def test_invoke_runs_a_sample_to_its_result(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "events" / "alertmanager-firing.json"
    done = _run("invoke", str(sample), "--follow", "--job-duration", "0.5", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "POST /alertmanager" in done.stdout
    assert '"status": "accepted"' in done.stdout
    assert "result: succeeded" in done.stdout


def test_invoke_exits_nonzero_when_a_record_is_invalid(tmp_path: Path) -> None:
    sample = Path(__file__).resolve().parents[2] / "events" / "fg-rabbitmq-batch-one-bad.json"
    done = _run("invoke", str(sample), "--job-duration", "0.5", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "the FunctionGraph handler" in done.stdout
    assert "records[0].messages[1].volume_id" in done.stdout
