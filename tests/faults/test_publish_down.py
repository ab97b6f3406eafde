"""A jobs topic whose broker is really down (a closed port, or an instance of our own that is
killed): the detach call is made, its event cannot be published, and every entry answers so
the request comes back (503 with Retry-After, a raise for FunctionGraph's retry, a requeue for
the worker), never 500. When nobody comes back, the relay publishes the job once the broker
is: exactly one result."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from emulator.models import VolumeFault
from handler.entry import functiongraph
from handler.entry.runtime import Runtime, build_runtime
from handler.local._serve import BackgroundServer
from handler.local.http import runtime_app
from handler.local.worker import Worker, detach_request, poll_job, relay_worker
from handler.topics import open_topic, topic_url
from tests.conftest import AUTH, DEMO_CREDENTIALS, Emulator, fast_settings
from tests.faults.instances import INSTANCES, RedisInstance, available
from tests.flow.test_flow import attached, next_result
from tests.support import WEB1, WEB1_DATA

REQUEST = {"server_id": WEB1, "volume_id": WEB1_DATA}


def deletes(emulator: Emulator) -> list[str | None]:
    calls, _ = emulator.backend.ledger()
    return [c.volume_id for c in calls if c.method == "DELETE" and 200 <= c.status < 300]


@pytest.fixture
def closed_port_runtime(tmp_path: Path, emulator: Emulator) -> Iterator[Runtime]:
    """Jobs on a Redis of our own, killed once the runtime is built: its port is closed."""
    if not available("redis"):
        pytest.skip("no redis-server installed")
    broker = RedisInstance(tmp_path).start()
    jobs = topic_url(broker.url(), "jobs")
    runtime = build_runtime(fast_settings(tmp_path, emulator.url, jobs_topic=jobs), DEMO_CREDENTIALS)
    broker.kill()
    yield runtime
    runtime.close()


def test_the_webhook_answers_503_with_retry_after(closed_port_runtime: Runtime, emulator: Emulator) -> None:
    with BackgroundServer(runtime_app(closed_port_runtime)) as web:
        answer = httpx.post(f"{web.url}/", json=REQUEST, headers=AUTH, timeout=30)

    assert answer.status_code == 503, answer.text
    assert int(answer.headers["Retry-After"]) >= 1
    (record,) = answer.json()["records"]
    assert record["status"] == "retry"
    assert "jobs topic did not take job" in record["detail"]
    assert deletes(emulator) == [WEB1_DATA]  # the job runs: its event waits in the outbox


def test_functiongraph_answers_503_to_apig_and_raises_for_a_queue_trigger(
    closed_port_runtime: Runtime, emulator: Emulator
) -> None:
    # The job outlasts the test, so the DMS message finds the disk still detaching (with the
    # fixture's 0.4 s job it was sometimes found detached already, a success, not a retry).
    emulator.backend.set_volume_fault(WEB1_DATA, VolumeFault(job_duration_s=60.0))
    body = base64.b64encode(json.dumps(REQUEST).encode()).decode()
    apig = {
        "httpMethod": "POST",
        "path": "/",
        "headers": {"content-type": "application/json", "authorization": AUTH["Authorization"]},
        "queryStringParameters": {},
        "pathParameters": {},
        "requestContext": {"apiId": "a", "requestId": "r", "stage": "RELEASE"},
        "body": body,
        "isBase64Encoded": True,
    }
    answer = functiongraph.handle_event(closed_port_runtime, apig)
    assert answer["statusCode"] == 503, answer
    assert "Retry-After" in answer["headers"]

    queued = {
        "event_version": "v1.0",
        "trigger_type": "RABBITMQ",
        "region": "ap-southeast-1",
        "records": [{"messages": [json.dumps({**REQUEST, "idempotency_key": "dms-1"})], "exchange": "x"}],
    }
    with pytest.raises(functiongraph.RetryLater):  # the platform redelivers the batch
        functiongraph.handle_event(closed_port_runtime, queued)
    assert deletes(emulator) == [WEB1_DATA]  # one call: the DMS message is the same request


def test_the_worker_requeues_a_request_it_could_not_publish(
    closed_port_runtime: Runtime, emulator: Emulator, tmp_path: Path
) -> None:
    requests = open_topic(f"sqlite:///{tmp_path}/requests.db?topic=requests", default_name="requests")
    try:
        requests.publish(json.dumps(REQUEST))
        (delivery,) = requests.receive(1)

        assert detach_request(closed_port_runtime, requests)(delivery) == "retry"

        assert requests.pending() == 1  # it comes back after its delay, not dead-lettered
        assert deletes(emulator) == [WEB1_DATA]
    finally:
        requests.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "nats", "amqp"])
def test_a_job_published_while_the_broker_was_killed_is_relayed_once_it_is_back(
    kind: str, tmp_path: Path, emulator: Emulator
) -> None:
    """The sender is told 503 and never retries; the worker's relay publishes the job."""
    if not available(kind):
        pytest.skip(f"no {kind} server installed")
    broker = INSTANCES[kind](tmp_path).start()
    runtime = build_runtime(
        fast_settings(
            tmp_path,
            emulator.url,
            jobs_topic=topic_url(broker.url(), f"jobs-{uuid.uuid4().hex[:8]}"),
            relay_after_s=0.5,
            relay_every_s=0.2,
        ),
        DEMO_CREDENTIALS,
    )
    workers: list[Worker] = []
    relay = relay_worker(runtime)
    try:
        runtime.jobs.publish(json.dumps({"warm": "up"}))  # connected before the kill
        runtime.jobs.ack(runtime.jobs.receive(1, wait=5)[0])
        broker.kill()
        with BackgroundServer(runtime_app(runtime)) as web:
            answer = httpx.post(f"{web.url}/", json=REQUEST, headers=AUTH, timeout=60)
        assert answer.status_code == 503, answer.text
        assert "Retry-After" in answer.headers
        assert deletes(emulator) == [WEB1_DATA]

        broker.start()
        relay.start()
        workers.append(Worker(runtime.jobs, poll_job(runtime), wait_s=0.1).start())

        result = next_result(runtime, timeout=60)
        assert result.type == "ecs-detach.succeeded"
        assert result.data.volume_id == WEB1_DATA
        time.sleep(1.0)
        assert runtime.results.receive(1, wait=0.5) == []  # exactly one
        assert runtime.jobs.pending() == 0
        assert deletes(emulator) == [WEB1_DATA]
        assert WEB1_DATA not in attached(runtime, WEB1)
    finally:
        relay.stop()
        for worker in workers:
            worker.stop()
        runtime.close()
        broker.kill()
