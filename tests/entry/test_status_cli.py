"""``ecs-detach status``: what became of one request, read from the deployment's store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from handler.entry.runtime import Runtime, build_runtime
from handler.local.cli import main
from handler.local.worker import Worker, poll_job
from handler.sources import parse_request
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.flow.test_flow import next_result
from tests.support import PID, WEB1, WEB1_DATA, WEB1_LOGS


@pytest.fixture
def deployment(tmp_path: Path, emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Runtime]:
    settings = fast_settings(tmp_path, emulator.url)
    monkeypatch.setenv("ECS_DETACH_STORE", settings.store)
    monkeypatch.setenv("ECS_DETACH_ECS_ENDPOINT", emulator.url)
    monkeypatch.setenv("HUAWEICLOUD_SDK_AK", DEMO_CREDENTIALS.access_key)
    monkeypatch.setenv("HUAWEICLOUD_SDK_SK", DEMO_CREDENTIALS.secret_key.get_secret_value())
    monkeypatch.setenv("HUAWEICLOUD_SDK_PROJECT_ID", PID)
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    yield runtime
    runtime.close()


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["status", *args])
    return code, capsys.readouterr().out


def test_a_finished_request_shows_its_job_and_result(
    deployment: Runtime, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = deployment.detach(
        parse_request({"server_id": WEB1, "volume_id": WEB1_DATA, "idempotency_key": "a-1"})
    )
    worker = Worker(deployment.jobs, poll_job(deployment), wait_s=0.1).start()
    try:
        assert next_result(deployment).data.outcome.value == "succeeded"
    finally:
        worker.stop()

    code, out = status(capsys, "a-1")
    assert code == 0
    assert f"job       {outcome.job_id}" in out
    assert "result    succeeded" in out
    assert "polls     " in out

    by_job, same = status(capsys, str(outcome.job_id))  # the job id finds the same request
    assert by_job == 0
    assert "key       a-1" in same
    assert "result    succeeded" in same


def test_a_running_job_is_shown_as_the_cloud_sees_it(
    deployment: Runtime, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.admin("PATCH", f"volumes/{WEB1_DATA}", {"job_duration_s": 60.0})
    deployment.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))

    code, out = status(capsys, f"{PID}/{WEB1}/{WEB1_DATA}")
    assert code == 0
    assert "request   accepted" in out
    assert "job now   " in out
    assert "(no result yet)" in out

    _, raw = status(capsys, f"{PID}/{WEB1}/{WEB1_DATA}", "--json")
    shown = json.loads(raw)
    assert shown["state"] == "done"
    assert shown["job"]["status"] in ("INIT", "RUNNING")


def test_a_queued_request_says_so(deployment: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    deployment.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_DATA}))
    deployment.detach(parse_request({"server_id": WEB1, "volume_id": WEB1_LOGS, "idempotency_key": "q-1"}))

    code, out = status(capsys, "q-1", "--no-cloud")
    assert code == 0
    assert "request   queued behind another detach" in out


def test_an_unknown_request_exits_1(deployment: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = status(capsys, "never-sent")
    assert code == 1
    assert "no request known" in out
