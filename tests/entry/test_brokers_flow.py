"""The whole flow on each real broker: `ecs-detach up --topics URL`, and `ecs-detach worker`
with a requests topic, health and metrics, drained by SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from handler.core.followups import DetachResult
from handler.core.models import CloudEvent
from handler.security import hash_password
from handler.topics import Topic, open_topic, topic_url
from tests.conftest import Emulator
from tests.entry.test_cli import CLI, _env, _free_port, _wait_for_http
from tests.support import DEMO_CREDENTIAL, WEB1, WEB1_DATA, WEB2, WEB2_DATA
from tests.topics.brokers import BACKENDS
from tests.topics.conftest import require_broker

BROKERS = ["redis", "nats", "amqp"]


@pytest.fixture
def namespace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(broker base URL naming a fresh topic prefix, prefix); the broker is cleaned afterwards."""
    kind = request.param
    require_broker(kind)
    backend = BACKENDS[kind](tmp_path)
    prefix = f"e{uuid.uuid4().hex[:10]}"
    yield backend.url(prefix), prefix
    for name in ("jobs", "results", "requests"):
        backend.cleanup(f"{prefix}-{name}", [])


def _result(results: Topic, timeout: float = 30.0) -> DetachResult:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for delivery in results.receive(1, wait=0.5):
            results.ack(delivery)
            return CloudEvent[DetachResult].model_validate_json(delivery.body).data
    raise AssertionError("no result event on the broker")


def _start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        env=env or _env(),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("namespace", BROKERS, indirect=True)
@pytest.mark.slow
def test_up_runs_the_flow_on_a_broker(tmp_path: Path, namespace: tuple[str, str]) -> None:
    base, _ = namespace
    port = _free_port()
    stack = _start(
        ["up", "--port", str(port), "--emulator-port", "0", "--job-duration", "0.5", "--topics", base],
        tmp_path,
    )
    results = open_topic(topic_url(base, "results"), default_name="results")
    try:
        try:
            _wait_for_http(f"http://127.0.0.1:{port}/healthz")
        except AssertionError:
            stack.kill()
            raise AssertionError(stack.communicate()[0]) from None
        token = (tmp_path / ".ecs-detach" / "webhook-token").read_text().strip()
        answer = httpx.post(
            f"http://127.0.0.1:{port}/",
            json={"server_id": WEB1, "volume_id": WEB1_DATA},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 202, answer.text
        result = _result(results)
        assert result.outcome.value == "succeeded"
        assert [result.job_id] == answer.json()["job_ids"]
    finally:
        results.close()
        stack.send_signal(signal.SIGTERM)
        output = stack.communicate(timeout=30)[0]
    assert stack.returncode == 0, output
    # no broker credential (RabbitMQ's guest:guest in the URL) in the banner or the log
    assert "guest@" not in output
    assert "password=" not in output


@pytest.mark.parametrize("namespace", ["redis"], indirect=True)
@pytest.mark.slow
def test_worker_consumes_requests_serves_health_and_metrics_and_drains(
    tmp_path: Path, namespace: tuple[str, str], emulator: Emulator
) -> None:
    base, _ = namespace
    health = _free_port()
    env = {
        **_env(),
        "ECS_DETACH_ECS_ENDPOINT": emulator.url,
        "ECS_DETACH_FIRST_POLL_S": "0.2",
        "ECS_DETACH_MIN_POLL_DELAY_S": "0.2",
        "HUAWEICLOUD_SDK_AK": DEMO_CREDENTIAL.access_key,
        "HUAWEICLOUD_SDK_SK": DEMO_CREDENTIAL.secret_key,
        "HUAWEICLOUD_SDK_PROJECT_ID": DEMO_CREDENTIAL.project_id,
        "ECS_DETACH_CONSOLE_USERS": json.dumps(
            [{"name": "ops", "password_hash": hash_password("ops-pw-0123")}]
        ),
    }
    worker = _start(
        [
            "worker",
            *("--jobs", topic_url(base, "jobs"), "--results", topic_url(base, "results")),
            *("--requests", topic_url(base, "requests"), "--health-port", str(health)),
        ],
        tmp_path,
        env,
    )
    requests = open_topic(topic_url(base, "requests"), default_name="requests")
    results = open_topic(topic_url(base, "results"), default_name="results")
    try:
        _wait_for_http(f"http://127.0.0.1:{health}/healthz")
        assert httpx.get(f"http://127.0.0.1:{health}/healthz").json() == {"status": "ok"}
        requests.publish(json.dumps({"server_id": WEB2, "volume_id": WEB2_DATA}))
        requests.publish("not json at all")
        result = _result(results)
        assert (result.outcome.value, result.server_id) == ("succeeded", WEB2)
        metrics = httpx.get(f"http://127.0.0.1:{health}/metrics").text
        assert 'ecs_detach_messages_out_total{outcome="succeeded",topic="' in metrics
        assert 'ecs_detach_messages_out_total{outcome="accepted",topic="' in metrics
        assert 'ecs_detach_dead_letters_total{topic="' in metrics
        # the web console beside them, showing what the worker did
        console = f"http://127.0.0.1:{health}/console"
        assert httpx.get(console).status_code == 401
        succeeded = '<span class="outcome succeeded">succeeded</span>'
        deadline = time.monotonic() + 10  # the history's writer is a moment behind the result
        while succeeded not in httpx.get(console, params={"q": WEB2}, auth=("ops", "ops-pw-0123")).text:
            assert time.monotonic() < deadline, "the console never showed the request"
            time.sleep(0.2)
        dead = open_topic(topic_url(base, "requests").replace("requests", "requests.dead"), default_name="x")
        try:
            (letter,) = dead.receive(1, wait=2)
            assert letter.body == "not json at all"
            dead.ack(letter)
        finally:
            dead.close()
    finally:
        requests.close()
        results.close()
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert worker.returncode == 0, output
    assert '"event": "worker.draining"' in output
    assert '"event": "worker.stopped"' in output
