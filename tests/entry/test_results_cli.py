"""``ecs-detach results`` on every backend, against the real brokers, with result events that a
real flow published: it prints them and the deployment's consumer still gets every one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from handler.core.followups import DetachResult
from handler.core.models import CloudEvent, DetachRequest
from handler.entry.runtime import build_runtime
from handler.functions.detach import DetachStatus
from handler.local.cli import main
from handler.local.results import parse_since
from tests.conftest import DEMO_CREDENTIALS, Emulator, fast_settings
from tests.results_support import Deployment, deployed
from tests.support import WEB1, WEB1_DATA
from tests.topics.brokers import BACKENDS, Backend
from tests.topics.conftest import require_broker

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "redis", "nats"])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, emulator: Emulator) -> Iterator[Deployment]:
    require_broker(request.param)
    backend: Backend = BACKENDS[request.param](tmp_path)
    name = f"results-{uuid.uuid4().hex[:10]}"
    try:
        with deployed(tmp_path, emulator, backend.url(name)) as deployment:
            yield deployment
    finally:
        backend.cleanup(name, [])


def result_of(line: str) -> CloudEvent[DetachResult]:
    return CloudEvent[DetachResult].model_validate_json(line)


@pytest.mark.slow
def test_results_prints_each_event_and_leaves_it_to_the_consumer(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    job_id = deployment.detach()
    deployment.wait_for_result()

    assert main(["results", "--topic", deployment.results_url, "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    event = result_of(line)
    assert (event.type, event.data.job_id, event.subject) == (
        "ecs-detach.succeeded",
        job_id,
        f"{WEB1}/{WEB1_DATA}",
    )

    assert main(["results", "--topic", deployment.results_url]) == 0
    (text,) = capsys.readouterr().out.splitlines()
    assert "succeeded" in text
    assert f"{WEB1}/{WEB1_DATA}" in text
    assert f"job {job_id}" in text

    assert main(["results", "--topic", deployment.results_url, "--since", "10m"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    later = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()
    assert main(["results", "--topic", deployment.results_url, "--since", later]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "no result events in the topic\n")

    assert deployment.consume() == [line]  # the consumer still gets it, first delivery


@pytest.mark.slow
def test_results_follow_prints_events_as_they_come(deployment: Deployment) -> None:
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Ctrl-C's handler installed even when this suite runs with SIGINT ignored (a background job
    # of a shell without job control): the follower would inherit that and never stop.
    program = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from handler.local.cli import main; sys.exit(main())"
    )
    command = [sys.executable, "-c", program]
    follower = subprocess.Popen(
        [*command, "results", "--topic", deployment.results_url, "--follow", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
        cwd=ROOT,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout or []))
    reader.start()
    try:
        time.sleep(2.0)  # the follower is reading (it printed nothing: the topic is empty)
        assert lines == []
        job_id = deployment.detach()
        deadline = time.monotonic() + 20
        while not lines and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lines, "the follower printed nothing"
        assert result_of(lines[0]).data.job_id == job_id
        assert [json.loads(body) for body in deployment.consume()] == [json.loads(lines[0])]
    finally:
        follower.send_signal(signal.SIGINT)
        code = follower.wait(15)
        reader.join(5)
    assert code == 130, follower.stderr.read() if follower.stderr else ""
    assert len(lines) == 1


def test_an_approval_request_is_shown_as_one_not_as_an_unknown_message(
    tmp_path: Path, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = fast_settings(
        tmp_path, emulator.url, approval_mode="always", approval_base_url="https://detach.example.com"
    )
    runtime = build_runtime(settings, DEMO_CREDENTIALS)
    try:
        origin = {"source": "alertmanager", "credential": "alerts"}
        outcome = runtime.detach(DetachRequest(server_id=WEB1, volume_id=WEB1_DATA, origin=origin))
    finally:
        runtime.close()
    assert outcome.status is DetachStatus.PENDING_APPROVAL

    assert main(["results", "--topic", settings.results_topic]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert "not a result event" not in line
    assert line.split()[1:3] == ["approval_requested", f"{WEB1}/{WEB1_DATA}"]
    assert f"approval {outcome.approval_id}" in line
    assert "asked by alerts" in line
    assert f"https://detach.example.com/approvals/{outcome.approval_id}" in line


def test_a_rabbitmq_results_topic_says_what_to_do_instead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_broker("amqp")
    backend = BACKENDS["amqp"](tmp_path)
    name = f"results-{uuid.uuid4().hex[:10]}"
    try:
        assert main(["results", "--topic", backend.url(name)]) == 1
    finally:
        backend.cleanup(name, [])
    error = capsys.readouterr().err
    assert "RabbitMQ cannot show the messages" in error
    assert "docs/examples/amqp_consumer.py" in error


def test_a_push_results_topic_says_where_its_events_go(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--topic", "https://hooks.example.com/results?token=secret"]) == 1
    error = capsys.readouterr().err
    assert "push topic" in error
    assert "secret" not in error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", 910.0),
        ("10m", 400.0),
        ("0.5h", -800.0),
        ("1d", 1000.0 - 86400),
        ("2024-01-15T08:30:00Z", 1705307400.0),
    ],
)
def test_since_takes_a_duration_or_an_iso_time(text: str, expected: float) -> None:
    assert parse_since(text, now=1000.0) == expected


@pytest.mark.parametrize("text", ["yesterday", "10", "2024-01-15T08:30:00", "-5m"])
def test_since_refuses_anything_else(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["results", "--topic", "sqlite:///unused.db", f"--since={text}"]) == 2
    assert "--since" in capsys.readouterr().err
